"""Geometry of an annotated comparison grid: bands for the caption and axis labels, cells.

  +--------------------------------------------+
  | caption (LoRA names; seed and fixed settings) |  caption_h = 2 lines + 2 pads
  +-----------+--------------------------------+
  |           |        X axis title            |  header_h = 2 lines + 2 pads
  |  Y title  |  x label | x label | x label   |
  +-----------+----------+---------+-----------+
  |  y label  |   cell   |  cell   |   cell    |  rows of cell_h, `gap` px apart
  +-----------+----------+---------+-----------+
  left_w: 0 without a Y axis, else max(3/4 of a cell, 6 font sizes)

The font size follows the WebUI's grids ((cell width + height) / 25), at least MIN_FONT_SIZE.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_FONT_SIZE = 12
CAPTION_LINES = 2
HEADER_LINES = 2


@dataclass(frozen=True)
class Box:
    """A rectangle in grid pixels."""

    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class GridLayout:
    """Sizes of every band of one grid image; all in pixels."""

    cell_w: int
    cell_h: int
    cols: int
    rows: int
    gap: int
    font_size: int
    line_h: int
    pad: int
    caption_h: int
    header_h: int
    left_w: int

    @property
    def width(self) -> int:
        return self.left_w + self.cols * self.cell_w + (self.cols - 1) * self.gap

    @property
    def height(self) -> int:
        top = self.caption_h + self.header_h
        return top + self.rows * self.cell_h + (self.rows - 1) * self.gap

    def cell(self, col: int, row: int) -> Box:
        x = self.left_w + col * (self.cell_w + self.gap)
        y = self.caption_h + self.header_h + row * (self.cell_h + self.gap)
        return Box(x, y, self.cell_w, self.cell_h)

    def caption_line(self, index: int) -> Box:
        return Box(self.pad, self.pad + index * self.line_h, self.width - 2 * self.pad, self.line_h)

    def x_title(self) -> Box:
        x = self.left_w
        return Box(x, self.caption_h + self.pad, self.width - x, self.line_h)

    def column_label(self, col: int) -> Box:
        cell = self.cell(col, 0)
        return Box(cell.x, self.caption_h + self.pad + self.line_h, cell.w, self.line_h)

    def y_title(self) -> Box:
        return Box(
            self.pad,
            self.caption_h + self.pad + self.line_h,
            self.left_w - 2 * self.pad,
            self.line_h,
        )

    def row_label(self, row: int) -> Box:
        cell = self.cell(0, row)
        return Box(self.pad, cell.y, self.left_w - 2 * self.pad, cell.h)


def plan_layout(
    cell_w: int, cell_h: int, cols: int, rows: int, *, gap: int = 0, row_axis: bool = True
) -> GridLayout:
    """The layout of a cols x rows grid of cell_w x cell_h images, `gap` px apart."""
    if min(cell_w, cell_h, cols, rows) < 1 or gap < 0:
        raise ValueError(f"bad grid geometry: {cell_w}x{cell_h} cells, {cols}x{rows}, gap {gap}")
    font_size = max(MIN_FONT_SIZE, (cell_w + cell_h) // 25)
    line_h = font_size * 5 // 4
    pad = font_size // 2
    return GridLayout(
        cell_w=cell_w,
        cell_h=cell_h,
        cols=cols,
        rows=rows,
        gap=gap,
        font_size=font_size,
        line_h=line_h,
        pad=pad,
        caption_h=CAPTION_LINES * line_h + 2 * pad,
        header_h=HEADER_LINES * line_h + 2 * pad,
        left_w=max(cell_w * 3 // 4, 6 * font_size) if row_axis else 0,
    )
