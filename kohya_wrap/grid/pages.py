"""The grid pictures: labelled pages (a title, column and row labels, each cell's image, grey where a
cell failed), the cell images, and grid.json describing every cell and each page's geometry."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path
from typing import Any, Callable

from kohya_wrap.fsutil import copy_file_atomic, write_bytes_atomic, write_text_atomic
from kohya_wrap.grid.cells import AXES, SCRIPT_SAMPLER, Cell, GridRequest
from kohya_wrap.sdscripts.naming import safe_name

MAX_SIDE = 6144  # a grid image larger than this is scaled down
MIN_CELL = 160  # cells smaller than this (tiny test renders) are shown enlarged


def _font(size: int):
    from PIL import ImageFont

    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "Arial.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size)  # Pillow ≥ 10.1 with FreeType: scalable
    except TypeError:
        return ImageFont.load_default()


def axis_label(axis: str, value: Any) -> str:
    if axis == "weight":
        return f"weight {value:g}" + (" (base)" if value == 0 else "")
    if axis == "checkpoint":
        return str(value) if value is not None else "base model"
    if axis == "seed":
        return f"seed {value}"
    if axis == "cfg":
        return f"cfg {value:g}"
    if axis == "steps":
        return f"{value} steps"
    if axis == "sampler" and value == SCRIPT_SAMPLER:
        return "the script's own sampler"
    if axis == "prompt":
        text = str(value)
        return text if len(text) <= 60 else text[:57] + "…"
    return str(value)


def _wrap(draw, text: str, font, width: int) -> list[str]:
    """Words onto as many lines as the width needs (the title says every fixed setting)."""
    lines, line = [], ""
    for word in text.split(" "):
        candidate = f"{line} {word}".strip()
        if line and draw.textlength(candidate, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return (lines + [line])[:6]


def _fit(draw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def compose_page(
    title: str,
    x_axis: str,
    x_values: list,
    y_axis: str,
    y_values: list,
    image_for: Callable[[Any, Any], Path | None],
    cell_size: tuple[int, int],
):
    """A labelled grid: a title, column labels on top, row labels on the left, missing cells grey with
    a note. Cells are scaled down so the whole image stays within MAX_SIDE pixels."""
    from PIL import Image, ImageDraw

    columns, rows = len(x_values), len(y_values)
    scale = min(1.0, (MAX_SIDE - 240) / (columns * cell_size[0]), (MAX_SIDE - 160) / (rows * cell_size[1]))
    scale = max(scale, MIN_CELL / min(cell_size))  # small test renders are shown at a readable size
    cw, ch = max(32, int(cell_size[0] * scale)), max(32, int(cell_size[1] * scale))
    font_size = max(13, min(28, cw // 12))
    font, title_font = _font(font_size), _font(font_size + 3)
    label_w = max(120, min(360, cw))
    width = label_w + columns * cw
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    title_lines = _wrap(probe, title, title_font, width - 16)
    title_h, header_h = (font_size + 8) * len(title_lines) + 12, font_size * 2 + 8
    canvas = Image.new("RGB", (width, title_h + header_h + rows * ch), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for index, line in enumerate(title_lines):
        draw.text((8, 6 + index * (font_size + 8)), line, fill=(0, 0, 0), font=title_font)
    for c, xv in enumerate(x_values):
        text = _fit(draw, axis_label(x_axis, xv), font, cw - 8)
        draw.text(
            (label_w + c * cw + (cw - draw.textlength(text, font=font)) / 2, title_h + 4),
            text,
            fill=(0, 0, 0),
            font=font,
        )
    for r, yv in enumerate(y_values):
        top = title_h + header_h + r * ch
        text = _fit(draw, axis_label(y_axis, yv), font, label_w - 12)
        draw.text((6, top + ch / 2 - font_size / 2), text, fill=(0, 0, 0), font=font)
        for c, xv in enumerate(x_values):
            left = label_w + c * cw
            path = image_for(xv, yv)
            if path is not None and path.is_file():
                with Image.open(path) as cell:
                    canvas.paste(cell.convert("RGB").resize((cw, ch), Image.Resampling.LANCZOS), (left, top))
            else:
                draw.rectangle((left + 1, top + 1, left + cw - 2, top + ch - 2), fill=(200, 200, 200))
                draw.text((left + 8, top + ch / 2 - font_size / 2), "not rendered", fill=(90, 0, 0), font=font)
    canvas.info["geometry"] = {"origin": [label_w, title_h + header_h], "cell": [cw, ch]}
    return canvas


def is_black(path: Path) -> bool:
    """A cell that is black all over: sd-scripts' gen_img.py writes one when the decoded image is NaN
    (numpy's "invalid value encountered in cast"), which a file that exists does not show."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return all(high == 0 for _, high in image.convert("RGB").getextrema())
    except (OSError, ValueError):
        return False


def write_grid(
    folder: Path,
    request: GridRequest,
    keys: dict[Cell, str],
    cache: Path,
    x: str,
    y: str,
    pages: list[str],
    title: str,
    failed: dict[str, str],
    meta: dict[str, Any],
) -> dict[str, Any]:
    """Grid page images, the cell images, and grid.json describing every cell."""
    values = request.axis_values()
    cells_dir = folder / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    by_values = dict(request.combinations())  # values in AXES order → cell
    fixed = {a: values[a][0] for a in AXES if len(values[a]) == 1 and a not in (x, y)}
    page_entries, cell_entries, seen = [], [], set()
    for page_values in itertools.product(*[values[a] for a in pages]) if pages else [()]:
        chosen = dict(zip(pages, page_values, strict=True))
        label = ", ".join(axis_label(a, v) for a, v in chosen.items()) or "grid"

        def image_for(xv, yv, chosen=chosen):
            coords = {**{a: values[a][0] for a in AXES}, **chosen, x: xv, y: yv}
            cell = by_values[tuple(coords[a] for a in AXES)]
            return cache / f"{keys[cell]}.png"

        fixed_text = ", ".join(axis_label(a, v) for a, v in fixed.items())
        page_title = " · ".join(t for t in (title, label if pages else "", fixed_text) if t)
        image = compose_page(page_title, x, values[x], y, values[y], image_for, (request.width, request.height))
        buffer = io.BytesIO()
        image.save(buffer, "PNG", compress_level=3)
        name = f"grid-{safe_name(label, '-')[:60] or 'page'}.png" if pages else "grid.png"
        write_bytes_atomic(folder / name, buffer.getvalue())
        page_entries.append({"label": label, "image": name, "values": chosen, **image.info["geometry"]})
    for cell, key in keys.items():
        if key in seen:
            continue
        seen.add(key)
        source = cache / f"{key}.png"
        entry = {
            "key": key,
            "checkpoint": cell.checkpoint.name if cell.checkpoint else None,
            "checkpoint_label": cell.checkpoint.label if cell.checkpoint else "base model",
            "checkpoint_sha256": cell.checkpoint.sha256 if cell.checkpoint else None,
            "weight": cell.weight,
            "prompt": cell.prompt.text,
            "negative": cell.prompt.negative,
            "seed": cell.seed,
            "cfg": cell.cfg,
            "steps": cell.steps,
            "sampler": cell.sampler,
            "width": cell.width,
            "height": cell.height,
        }
        if source.is_file():
            copy_file_atomic(source, cells_dir / f"{key}.png")
            entry.update(status="ok", image=f"cells/{key}.png")
            if is_black(source):
                entry["black"] = True
        else:
            entry.update(status="failed", error=failed.get(key, "not rendered"))
        cell_entries.append(entry)
    data = {
        "title": title,
        **meta,
        "black": sum(1 for entry in cell_entries if entry.get("black")),
        "axes": {"x": x, "y": y, "pages": pages},
        "values": values,
        "fixed": fixed,
        "pages": page_entries,
        "cells": cell_entries,
    }
    write_text_atomic(folder / "grid.json", json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return data
