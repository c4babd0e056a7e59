"""Geometry and drawing of the annotated grid, without the WebUI."""

from __future__ import annotations

import pytest
from PIL import Image, ImageFont

from lora_trainer.webui.grid_draw import GridColors, GridTexts, draw_grid
from lora_trainer.webui.grid_layout import MIN_FONT_SIZE, plan_layout


def font(size):
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default()


def texts(cols, rows, **changes):
    values = dict(
        caption=("mine", "Seed 1, 20 steps"),
        x_title="LoRA weight",
        x_labels=tuple(str(i) for i in range(cols)),
        y_title="Sampler",
        y_labels=tuple(f"row {i}" for i in range(rows)),
    )
    values.update(changes)
    return GridTexts(**values)


def test_layout_of_small_and_large_cells():
    small = plan_layout(64, 64, 5, 4)
    assert small.font_size == MIN_FONT_SIZE == 12
    assert (small.line_h, small.pad, small.caption_h, small.header_h, small.left_w) == (
        15,
        6,
        42,
        42,
        72,
    )
    assert (small.width, small.height) == (72 + 320, 84 + 256)
    large = plan_layout(512, 768, 3, 2, gap=10)
    assert large.font_size == (512 + 768) // 25 == 51  # the WebUI's grid text size
    assert large.left_w == 384  # 3/4 of a cell
    assert large.width == 384 + 3 * 512 + 2 * 10
    assert large.height == 2 * (2 * 63 + 2 * 25) + 2 * 768 + 10
    assert large.cell(2, 1).x == 384 + 2 * 522 and large.cell(2, 1).y == 352 + 778
    assert plan_layout(64, 64, 3, 1, row_axis=False).left_w == 0
    with pytest.raises(ValueError):
        plan_layout(64, 64, 0, 1)


def test_cells_and_placeholders_are_drawn_in_place():
    layout = plan_layout(64, 48, 3, 2, gap=4)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (9, 9, 9), (200, 100, 0)]
    cells = [Image.new("RGB", (64, 48), c) for c in colours] + ["skipped"]
    grid = draw_grid(cells, layout, texts(3, 2), font)
    assert grid.size == (layout.width, layout.height)
    for i, colour in enumerate(colours):
        box = layout.cell(i % 3, i // 3)
        assert grid.getpixel((box.x + 1, box.y + 1)) == colour
        assert grid.getpixel((box.x + 63, box.y + 47)) == colour
    last = layout.cell(2, 1)
    placeholder = grid.crop((last.x, last.y, last.x + 64, last.y + 48))
    assert placeholder.getpixel((0, 0)) == (255, 255, 255)
    assert placeholder.getcolors(64 * 48)[-1][0] < 64 * 48  # the note is written
    gap = grid.getpixel((layout.cell(1, 0).x - 2, layout.cell(1, 0).y + 5))
    assert gap == (255, 255, 255)
    header = grid.crop((0, 0, layout.width, layout.caption_h + layout.header_h))
    assert len(header.getcolors(1 << 16)) > 1  # captions and labels are drawn


def test_colours_long_labels_and_a_bitmap_font():
    layout = plan_layout(64, 64, 2, 1)
    labels = texts(
        2, 1, x_labels=("a very long label that cannot fit in one cell", "1"), y_labels=("x " * 40,)
    )
    colors = GridColors(background="#202020", text="#ffffff", inactive="#808080")
    cells = [Image.new("RGB", (64, 64), "red"), Image.new("RGB", (32, 32), "blue")]
    grid = draw_grid(cells, layout, labels, lambda size: ImageFont.load_default(), colors)
    assert grid.getpixel((0, grid.height - 1)) == (32, 32, 32)
    small = layout.cell(1, 0)  # a smaller image is centred in its cell
    assert grid.getpixel((small.x + 32, small.y + 32)) == (0, 0, 255)
    assert grid.getpixel((small.x + 1, small.y + 1)) == (32, 32, 32)
    with pytest.raises(ValueError, match="3 cells for a 2x1 grid"):
        draw_grid([*cells, "x"], layout, labels, font)
