"""Drawing of an annotated comparison grid with Pillow, on the geometry of grid_layout.

Fonts and colours come from the caller (in the WebUI: its grid font and grid colour settings),
so this module needs nothing from the WebUI and draws the same way in tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from .grid_layout import Box, GridLayout

FontLoader = Callable[[int], ImageFont.ImageFont]
SMALLEST_FONT = 8
ELLIPSIS = "..."


@dataclass(frozen=True)
class GridTexts:
    """Every text written on one grid."""

    caption: tuple[str, str]
    x_title: str
    x_labels: tuple[str, ...]
    y_title: str = ""
    y_labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class GridColors:
    """Background, text, and the dimmer text for cells without an image."""

    background: str = "#ffffff"
    text: str = "#000000"
    inactive: str = "#999999"


def draw_grid(
    cells: Sequence[Image.Image | str],
    layout: GridLayout,
    texts: GridTexts,
    font_loader: FontLoader,
    colors: GridColors = GridColors(),
) -> Image.Image:
    """The grid image: `cells` row by row; a string cell is a placeholder with that text."""
    if len(cells) != layout.cols * layout.rows:
        raise ValueError(f"{len(cells)} cells for a {layout.cols}x{layout.rows} grid")
    grid = Image.new("RGB", (layout.width, layout.height), colors.background)
    pen = _Pen(ImageDraw.Draw(grid), font_loader, layout)
    for index, cell in enumerate(cells):
        box = layout.cell(index % layout.cols, index // layout.cols)
        if isinstance(cell, Image.Image):
            grid.paste(_fit(cell, box, colors.background), (box.x, box.y))
        else:
            pen.lines(box, cell, colors.inactive, max_lines=3)
    for i, line in enumerate(texts.caption):
        pen.line(layout.caption_line(i), line, colors.text)
    pen.line(layout.x_title(), texts.x_title, colors.text)
    for col, label in enumerate(texts.x_labels):
        pen.line(layout.column_label(col), label, colors.text)
    if layout.left_w:
        pen.line(layout.y_title(), texts.y_title, colors.text)
        for row, label in enumerate(texts.y_labels):
            pen.lines(layout.row_label(row), label, colors.text, max_lines=4)
    return grid


def _fit(image: Image.Image, box: Box, background: str) -> Image.Image:
    image = image.convert("RGB")
    if image.size == (box.w, box.h):
        return image
    # a cell of another size (e.g. hires fix on some cells only) is centred on the background
    canvas = Image.new("RGB", (box.w, box.h), background)
    image = image.copy()
    image.thumbnail((box.w, box.h))
    canvas.paste(image, ((box.w - image.width) // 2, (box.h - image.height) // 2))
    return canvas


class _Pen:
    """Writes centred text into boxes, shrinking the font (then cutting the text) to fit."""

    def __init__(self, draw: ImageDraw.ImageDraw, font_loader: FontLoader, layout: GridLayout):
        self.draw = draw
        self.font_loader = font_loader
        self.layout = layout
        self.fonts: dict[int, ImageFont.ImageFont] = {}

    def font(self, size: int) -> ImageFont.ImageFont:
        if size not in self.fonts:
            self.fonts[size] = self.font_loader(size)
        return self.fonts[size]

    def width(self, text: str, font: ImageFont.ImageFont) -> int:
        left, _, right, _ = self.draw.textbbox((0, 0), text, font=font)
        return right - left

    def line(self, box: Box, text: str, fill: str) -> None:
        self.lines(box, text, fill, max_lines=1)

    def lines(self, box: Box, text: str, fill: str, *, max_lines: int) -> None:
        """`text` word-wrapped into at most `max_lines` lines, centred in `box`."""
        if not text or box.w <= 0:
            return
        size, rows = self._fit(text, box, max_lines)
        font = self.font(size)
        line_h = size * 5 // 4
        top = box.y + (box.h - line_h * len(rows)) // 2
        ref = self.draw.textbbox((0, 0), "Ag", font=font)
        for i, row in enumerate(rows):
            x = box.x + (box.w - self.width(row, font)) // 2
            y = top + i * line_h + (line_h - (ref[3] - ref[1])) // 2 - ref[1]
            self.draw.text((x, y), row, font=font, fill=fill)

    def _fit(self, text: str, box: Box, max_lines: int) -> tuple[int, list[str]]:
        size = self.layout.font_size
        while True:
            font = self.font(size)
            fits = max(1, min(max_lines, box.h // (size * 5 // 4)))
            rows = self._wrap(text, font, box.w)
            if len(rows) <= fits and all(self.width(r, font) <= box.w for r in rows):
                return size, rows
            if size <= SMALLEST_FONT:
                return size, [self._cut(r, font, box.w) for r in rows[: fits - 1]] + [
                    self._cut(" ".join(rows[fits - 1 :]), font, box.w)
                ]
            size -= 1

    def _wrap(self, text: str, font: ImageFont.ImageFont, width: int) -> list[str]:
        rows = [""]
        for word in text.split():
            candidate = f"{rows[-1]} {word}".strip()
            if rows[-1] and self.width(candidate, font) > width:
                rows.append(word)
            else:
                rows[-1] = candidate
        return rows

    def _cut(self, text: str, font: ImageFont.ImageFont, width: int) -> str:
        if self.width(text, font) <= width:
            return text
        while text and self.width(text + ELLIPSIS, font) > width:
            text = text[:-1]
        return text + ELLIPSIS if text else ""
