"""Fake of modules/images.py (A1111 v1.10.1): grid helpers, fonts, saving with infotext.

Real:
- `get_font(fontsize)`: ImageFont.truetype(opts.font or the bundled Roboto-Regular.ttf);
- `image_grid(imgs, batch_size=1, rows=None)`: rows from opts.n_rows (-1: about sqrt),
  cells pasted on opts.grid_background_color;
- `GridAnnotation(text='', is_active=True)` and `draw_grid_annotations(im, width, height,
  hor_texts, ver_texts, margin=0)`: labels above the columns and left of the rows (used by
  the X/Y/Z plot);
- `save_image(image, path, basename, seed=None, prompt=None, extension='png', info=None,
  short_filename=False, no_prompt=False, grid=False, pnginfo_section_name='parameters',
  p=None, existing_info=None, forced_filename=None, suffix="", save_to_dirs=None)` ->
  (fullfn, txt_fullfn): a sub-folder from opts.directories_filename_pattern when
  opts.save_to_dirs (opts.grid_save_to_dirs for grids), a running number from
  get_next_sequence_number, a name from opts.samples_filename_pattern ("[seed]" or
  "[seed]-[prompt_spaces]" by default; none with short_filename), the infotext in the PNG
  "parameters" text chunk (opts.enable_pnginfo), a .txt beside it when opts.save_txt,
  and `image.already_saved_as`.
Reduced: the filename pattern knows [seed], [prompt_spaces], [prompt] and [date] only;
the directory pattern [date] only; PNG is the only format that carries infotext (the real
one writes EXIF for JPEG/WebP through piexif); the before/after image-saved callbacks are
not called; no Roboto file ships here, so get_font uses DejaVu Sans when the system has
it, else Pillow's built-in bitmap font. `saved` records every call for tests.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import re

from PIL import Image, ImageColor, ImageDraw, ImageFont, PngImagePlugin

from modules.shared import opts

saved: list[dict] = []


def get_font(fontsize: int):
    for name in (opts.font, "DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, fontsize)
        except Exception:
            continue
    return ImageFont.load_default()


def image_grid(imgs, batch_size=1, rows=None):
    if rows is None:
        if opts.n_rows > 0:
            rows = opts.n_rows
        elif opts.n_rows == 0:
            rows = batch_size
        elif opts.grid_prevent_empty_spots:
            rows = math.floor(math.sqrt(len(imgs)))
            while len(imgs) % rows != 0:
                rows -= 1
        else:
            rows = math.sqrt(len(imgs))
            rows = round(rows)
    if rows > len(imgs):
        rows = len(imgs)

    cols = math.ceil(len(imgs) / rows)

    w, h = map(max, zip(*(img.size for img in imgs)))
    grid_background_color = ImageColor.getcolor(opts.grid_background_color, "RGB")
    grid = Image.new("RGB", size=(cols * w, rows * h), color=grid_background_color)

    for i, img in enumerate(imgs):
        img_w, img_h = img.size
        w_offset, h_offset = (
            0 if img_w == w else (w - img_w) // 2,
            0 if img_h == h else (h - img_h) // 2,
        )
        grid.paste(img, box=(i % cols * w + w_offset, i // cols * h + h_offset))

    return grid


class GridAnnotation:
    def __init__(self, text="", is_active=True):
        self.text = text
        self.is_active = is_active
        self.size = None


def draw_grid_annotations(im, width, height, hor_texts, ver_texts, margin=0):
    """The real layout (pad_left = 3/4 width, pad_top from the text heights), one text line."""
    color_active = ImageColor.getcolor(opts.grid_text_active_color, "RGB")
    color_background = ImageColor.getcolor(opts.grid_background_color, "RGB")

    fontsize = (width + height) // 25
    line_spacing = fontsize // 2
    fnt = get_font(fontsize)

    pad_left = (
        0
        if sum([sum([len(line.text) for line in lines]) for lines in ver_texts]) == 0
        else width * 3 // 4
    )
    cols = im.width // width
    rows = im.height // height
    assert cols == len(hor_texts), (
        f"bad number of horizontal texts: {len(hor_texts)}; must be {cols}"
    )
    assert rows == len(ver_texts), f"bad number of vertical texts: {len(ver_texts)}; must be {rows}"

    calc_d = ImageDraw.Draw(Image.new("RGB", (1, 1), color_background))
    for texts in hor_texts + ver_texts:
        for line in texts:
            bbox = calc_d.multiline_textbbox((0, 0), line.text, font=fnt)
            line.size = (bbox[2] - bbox[0], bbox[3] - bbox[1])

    hor_text_heights = [
        sum([line.size[1] + line_spacing for line in lines]) - line_spacing for lines in hor_texts
    ]
    pad_top = 0 if sum(hor_text_heights) == 0 else max(hor_text_heights) + line_spacing * 2

    result = Image.new(
        "RGB",
        (im.width + pad_left + margin * (cols - 1), im.height + pad_top + margin * (rows - 1)),
        color_background,
    )
    for row in range(rows):
        for col in range(cols):
            cell = im.crop((width * col, height * row, width * (col + 1), height * (row + 1)))
            result.paste(
                cell, (pad_left + (width + margin) * col, pad_top + (height + margin) * row)
            )

    d = ImageDraw.Draw(result)
    for col in range(cols):
        x = pad_left + (width + margin) * col + width / 2
        for line in hor_texts[col]:
            d.text(
                (x - line.size[0] / 2, pad_top / 2 - line.size[1] / 2),
                line.text,
                font=fnt,
                fill=color_active,
            )
    for row in range(rows):
        y = pad_top + (height + margin) * row + height / 2
        for line in ver_texts[row]:
            d.text(
                (pad_left / 2 - line.size[0] / 2, y - line.size[1] / 2),
                line.text,
                font=fnt,
                fill=color_active,
            )
    return result


def sanitize_filename_part(text, replace_spaces=True):
    if text is None:
        return None
    if replace_spaces:
        text = text.replace(" ", "_")
    text = text.translate({ord(x): "_" for x in '<>:"/\\|?*\n\r\t'})
    text = text.lstrip()[:128]
    return text.rstrip(". ")


def _apply_pattern(pattern, seed, prompt):
    values = {
        "seed": str(seed) if seed is not None else "",
        "prompt_spaces": sanitize_filename_part(prompt or "", replace_spaces=False),
        "prompt": sanitize_filename_part(prompt or ""),
        "date": datetime.date.today().isoformat(),
    }
    return re.sub(r"\[(\w+)\]", lambda m: values.get(m[1], m[0]), pattern)


def get_next_sequence_number(path, basename):
    result = -1
    if basename != "":
        basename = f"{basename}-"

    prefix_length = len(basename)
    for p in os.listdir(path):
        if p.startswith(basename):
            parts = os.path.splitext(p[prefix_length:])[0].split("-")
            with contextlib.suppress(ValueError):
                result = max(int(parts[0]), result)

    return result + 1


def save_image_with_geninfo(
    image,
    geninfo,
    filename,
    extension=None,
    existing_pnginfo=None,
    pnginfo_section_name="parameters",
):
    if extension is None:
        extension = os.path.splitext(filename)[1]

    image_format = Image.registered_extensions()[extension]

    if extension.lower() == ".png":
        existing_pnginfo = existing_pnginfo or {}
        if opts.enable_pnginfo:
            existing_pnginfo[pnginfo_section_name] = geninfo
            pnginfo_data = PngImagePlugin.PngInfo()
            for k, v in (existing_pnginfo or {}).items():
                pnginfo_data.add_text(k, str(v))
        else:
            pnginfo_data = None

        image.save(filename, format=image_format, quality=opts.jpeg_quality, pnginfo=pnginfo_data)
    else:
        if image.mode == "RGBA":
            image = image.convert("RGB")
        image.save(filename, format=image_format, quality=opts.jpeg_quality)


def save_image(
    image,
    path,
    basename,
    seed=None,
    prompt=None,
    extension="png",
    info=None,
    short_filename=False,
    no_prompt=False,
    grid=False,
    pnginfo_section_name="parameters",
    p=None,
    existing_info=None,
    forced_filename=None,
    suffix="",
    save_to_dirs=None,
):
    if save_to_dirs is None:
        save_to_dirs = (grid and opts.grid_save_to_dirs) or (
            not grid and opts.save_to_dirs and not no_prompt
        )

    if save_to_dirs:
        dirname = _apply_pattern(
            opts.directories_filename_pattern or "[prompt_words]", seed, prompt
        )
        path = os.path.join(path, dirname.lstrip(" ").rstrip("\\ /"))

    os.makedirs(path, exist_ok=True)

    if forced_filename is None:
        if short_filename or seed is None:
            file_decoration = ""
        elif opts.save_to_dirs:
            file_decoration = opts.samples_filename_pattern or "[seed]"
        else:
            file_decoration = opts.samples_filename_pattern or "[seed]-[prompt_spaces]"

        file_decoration = _apply_pattern(file_decoration, seed, prompt) + suffix

        add_number = opts.save_images_add_number or file_decoration == ""

        if file_decoration != "" and add_number:
            file_decoration = f"-{file_decoration}"

        if add_number:
            basecount = get_next_sequence_number(path, basename)
            fullfn = None
            for i in range(500):
                fn = f"{basecount + i:05}" if basename == "" else f"{basename}-{basecount + i:04}"
                fullfn = os.path.join(path, f"{fn}{file_decoration}.{extension}")
                if not os.path.exists(fullfn):
                    break
        else:
            fullfn = os.path.join(path, f"{file_decoration}.{extension}")
    else:
        fullfn = os.path.join(path, f"{forced_filename}.{extension}")

    pnginfo = existing_info or {}
    if info is not None:
        pnginfo[pnginfo_section_name] = info

    fullfn_without_extension, extension = os.path.splitext(fullfn)
    temp_file_path = f"{fullfn_without_extension}.tmp"
    save_image_with_geninfo(
        image,
        info,
        temp_file_path,
        extension,
        existing_pnginfo=pnginfo,
        pnginfo_section_name=pnginfo_section_name,
    )
    os.replace(temp_file_path, fullfn)

    image.already_saved_as = fullfn

    if opts.save_txt and info is not None:
        txt_fullfn = f"{fullfn_without_extension}.txt"
        with open(txt_fullfn, "w", encoding="utf8") as file:
            file.write(f"{info}\n")
    else:
        txt_fullfn = None

    saved.append({"path": fullfn, "info": info, "grid": grid, "basename": basename, "seed": seed})
    return fullfn, txt_fullfn
