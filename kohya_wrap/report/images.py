"""Images for the report: files → data: URIs (downscaled with Pillow), so the page opens from disk with
no server and no network. One unreadable or missing file becomes a placeholder, never an error."""

from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

THUMB_SIDE = 256  # training-image thumbnails, long side in px
SAMPLE_SIDE = 512  # sample images (256 when a run saved very many)
GRID_SIDE = 1024  # grid pages: a grid of several images is unreadable at 512 px
RAW_EMBED_BYTES = 200_000  # a small PNG/JPEG/GIF/WebP within the size limit is embedded as it is


def image_data_uri(path: Path, max_side: int) -> tuple[str, int, int] | None:
    """A data: URI of the image (downscaled to `max_side` on the long side: JPEG, or PNG where there is
    transparency; a small PNG/JPEG/GIF/WebP is embedded unchanged), with its size; None if unreadable."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            width, height = image.size
            kind = image.format
            raw = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}.get(kind or "")
            orientation = image.getexif().get(0x0112, 1) if kind in ("JPEG", "WEBP", "PNG") else 1
            if (
                raw
                and max(width, height) <= max_side
                and path.stat().st_size <= RAW_EMBED_BYTES
                and orientation in (1, None)
            ):
                return f"data:{raw};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}", width, height
            if kind == "JPEG":
                image.draft("RGB", (max_side, max_side))  # decode big JPEGs at a fraction of their size
            image.load()
            picture = ImageOps.exif_transpose(image) or image
            alpha = picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info)
            picture = picture.convert("RGBA" if alpha else "RGB")
            picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            buffer = io.BytesIO()
            if alpha:
                picture.save(buffer, "PNG", optimize=True)
                mime = "image/png"
            else:
                picture.save(buffer, "JPEG", quality=85, optimize=True)
                mime = "image/jpeg"
            encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
            return f"data:{mime};base64,{encoded}", picture.width, picture.height
    # any file a user left in a folder: unreadable, truncated, a decompression bomb — one image must not stop the report
    except Exception:
        return None


@dataclass(frozen=True)
class Picture:
    """An image as the page shows it: embedded (uri set) or a placeholder saying why not; linked to
    the file where it exists (href relative to the report)."""

    path: Path
    css_class: str
    alt: str
    uri: str | None = None
    width: int = 0
    height: int = 0
    href: str | None = None

    @property
    def reason(self) -> str:
        return "missing" if not self.path.exists() else "unreadable"


def picture(path: Path, max_side: int, alt: str, css_class: str, run_dir: Path) -> Picture:
    found = image_data_uri(path, max_side) if path.is_file() else None
    href = link(path, run_dir)
    if found is None:
        return Picture(path, css_class, alt, href=href)
    uri, width, height = found
    return Picture(path, css_class, alt, uri, width, height, href)


def link(target: Path, run_dir: Path) -> str | None:
    """A relative link from the report to a file of the project (works from disk while the project
    is where it was; the page itself needs none of them); None where the file is gone."""
    if not target.is_file():
        return None
    try:
        relative = os.path.relpath(target, run_dir)
    except ValueError:  # another drive on Windows
        return None
    return quote(Path(relative).as_posix())
