"""What sd-scripts will make of each training image, read once per file and cached per project.

sd-scripts v0.10.1 reads an image's size from its header with imagesize (library/train_util.py:1478
`get_image_size`; requirements.txt:24 pins imagesize==1.4.1, which reads the size as stored and never
the EXIF orientation) and its pixels with `Image.open(path)` then `convert("RGB")` (train_util.py:2948
`load_image`): no `exif_transpose`, so a photo stored sideways trains sideways, and the alpha channel is
dropped, so transparent areas train as whatever colour is stored under them. It decodes the images only
after the model has loaded, minutes in, so a damaged file must be found before. Per image:

- `size`: (width, height) as stored, as sd-scripts' imagesize reads it (Pillow where the header reader
  fails, as sd-scripts falls back too); None when neither reads it;
- `damage`: why the file would fail to decode (truncated, corrupt), as one clean line;
- `orientation`: the EXIF orientation, 1 when upright or absent;
- `alpha`: "" without an alpha channel, "opaque" when it has one that is fully opaque (dropping it
  changes nothing), else what sd-scripts makes of the transparent parts: "black", "white" or "other"
  (the colours stored under them, often the background an editor removed).

`read_facts` opens each file once (a JPEG with its end marker is not decoded; PNG and WebP chunks are
verified; only images with an alpha channel are decoded in full). `facts_for` keeps the results in
`<project>/.kohya-wrap/cache/images.json` keyed by path, size and modification time, so a second `check`
opens no image, and reads new or changed files on every core (threads: Pillow releases the GIL).
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from kohya_wrap.fsutil import write_text_atomic
from kohya_wrap.workers import worker_count

CACHE_VERSION = 1  # bump when what is stored, or how it is read, changes: older caches are rebuilt
ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
ALPHA_KINDS = frozenset({"", "opaque", "black", "white", "other"})
JPEG_END_WINDOW = 1024  # bytes at the end of a JPEG searched for its end-of-image marker


@dataclass(frozen=True)
class ImageFacts:
    size: tuple[int, int] | None
    damage: str | None = None
    orientation: int = 1
    alpha: str = ""


# ---------------------------------------------------------------------------------------------- one image


@lru_cache(maxsize=1)
def _imagesize_rotates() -> bool:
    """imagesize ≥ 2 applies the EXIF orientation unless told not to; 1.4 (sd-scripts' pin) never does."""
    import inspect

    import imagesize

    return "exif_rotation" in inspect.signature(imagesize.get).parameters


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) as sd-scripts reads it: the stored size, the EXIF orientation not applied (its
    pinned imagesize 1.4.1 does not read it), Pillow's when the header reader fails; None when neither
    reader understands the file."""
    import imagesize

    try:
        if _imagesize_rotates():
            width, height = imagesize.get(str(path), exif_rotation=False)
        else:
            width, height = imagesize.get(str(path))
    except Exception:  # imagesize raises on some malformed headers; sd-scripts then falls back too
        width, height = -1, -1
    if width > 0 and height > 0:
        return int(width), int(height)
    try:
        from PIL import Image

        with Image.open(path) as image:
            return image.size
    except Exception:
        return None


def orientation_of(image) -> int:
    """The EXIF orientation of an open Pillow image (1: upright or none). For a PNG only an eXIf chunk
    before the image data counts: Pillow's getexif() on a PNG decodes the whole image to look for a late
    one (55 ms on a 2048² PNG)."""
    try:
        if image.format == "PNG" and "exif" not in image.info:
            return 1
        value = int(image.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block is not a broken image
        return 1
    return value if 1 <= value <= 8 else 1


_OBJECT_REPR = re.compile(r"<[^<>]*? object at 0x[0-9a-fA-F]+>")
_BYTES_REPR = re.compile(r"\bb'([^']*)'")
_BOMB = re.compile(r"\((\d+) pixels\) exceeds limit of (\d+) pixels")


def failure(exc: BaseException) -> str:
    """Why Pillow (or libvips) could not read an image, as one line a user can act on: no object reprs
    (`<_io.BytesIO object at 0x…>`), no file paths, no byte-string quotes."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return "not an image Pillow can read"
    message = " ".join(str(exc).split())
    if isinstance(exc, Image.DecompressionBombError):
        bomb = _BOMB.search(message)
        if bomb:
            pixels, limit = int(bomb[1]), int(bomb[2])
            return f"too many pixels: {pixels:,}, over Pillow's limit of {limit:,} (sd-scripts stops on it)"
        return "too many pixels for Pillow (sd-scripts stops on it)"
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"unreadable: {exc.strerror or type(exc).__name__}"
    message = _BYTES_REPR.sub(r"\1", _OBJECT_REPR.sub("the file", message)).strip()
    lowered = message.lower()
    if "truncated" in lowered or "premature end" in lowered:
        return "truncated: the file ends before its image data does"
    if lowered == "could not create decoder object":  # Pillow's WebP plugin on a cut or damaged file
        return "corrupt or truncated: the decoder rejects it"
    return f"corrupt: {message}" if message else f"corrupt ({type(exc).__name__})"


def _jpeg_has_end(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - JPEG_END_WINDOW))
        return b"\xff\xd9" in handle.read()


def _transparency(image) -> str:
    """Decode an image with an alpha channel: "opaque", or what convert("RGB") leaves where it is (mostly)
    transparent."""
    from PIL import ImageStat

    image.load()
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    alpha = rgba.getchannel("A")
    lowest = alpha.getextrema()[0]
    if lowest == 255:
        return "opaque"
    mask = alpha.point(lambda a: 255 if a < 128 else 0)
    if mask.getbbox() is None:  # only translucent pixels: look at those
        mask = alpha.point(lambda a: 255 if a < 255 else 0)
    extrema = ImageStat.Stat(rgba.convert("RGB"), mask).extrema
    if all(high <= 24 for _, high in extrema):
        return "black"
    if all(low >= 231 for low, _ in extrema):
        return "white"
    return "other"


def read_facts(path: Path) -> ImageFacts:
    """Everything below, read with one open of the file (two for images with an alpha channel)."""
    size = image_size(path)
    if size is None:
        return ImageFacts(None)
    from PIL import Image

    try:
        with Image.open(path) as image:
            orientation = orientation_of(image)
            has_alpha = image.mode in ALPHA_MODES or "transparency" in image.info
            if image.format in ("JPEG", "MPO"):
                if not _jpeg_has_end(path):  # cut short, or data after the marker: decode to be sure
                    image.load()
            else:
                image.verify()  # PNG chunk checksums, WebP/BMP structure
        alpha = ""
        if has_alpha:
            with Image.open(path) as image:
                alpha = _transparency(image)
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for broken files
        return ImageFacts(size, failure(exc))
    return ImageFacts(size, None, orientation, alpha)


# ---------------------------------------------------------------------------------------------- the cache


def _encode(stat: os.stat_result, facts: ImageFacts) -> list:
    width, height = facts.size if facts.size is not None else (None, None)
    return [stat.st_size, stat.st_mtime_ns, width, height, facts.damage, facts.orientation, facts.alpha]


def _decode(entry: object, stat: os.stat_result) -> ImageFacts | None:
    """The cached facts when the entry is well-formed and the file unchanged, else None (read again)."""
    if not isinstance(entry, list) or len(entry) != 7:
        return None
    size, mtime, width, height, damage_, orientation, alpha = entry
    if size != stat.st_size or mtime != stat.st_mtime_ns or not isinstance(alpha, str) or alpha not in ALPHA_KINDS:
        return None
    if not (damage_ is None or isinstance(damage_, str)) or not (_count(orientation) and 1 <= orientation <= 8):
        return None
    if width is None and height is None:
        return ImageFacts(None, damage_, orientation, alpha)
    if not (_count(width) and _count(height) and width > 0 and height > 0):
        return None
    return ImageFacts((width, height), damage_, orientation, alpha)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def cache_file(root: Path) -> Path:
    return root / ".kohya-wrap" / "cache" / "images.json"


def _load(file: Path) -> dict[str, object]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("images"), dict):
        return {}
    return data["images"]


def facts_for(paths: list[Path], root: Path | None = None, folder: Path | None = None) -> list[ImageFacts]:
    """The facts of each path, in order. With a project `root`: from its cache where the file is unchanged,
    the rest read on every core and stored (entries of `folder` not among `paths` are dropped, as are those
    of folders that no longer exist). Without one: all read, nothing stored."""
    if root is None:
        return _read_all(paths)
    file = cache_file(root)
    entries = _load(file)
    found: list[ImageFacts | None] = []
    stale: list[tuple[int, Path, os.stat_result | None]] = []
    for index, path in enumerate(paths):
        try:
            stat = path.stat()
        except OSError:
            stat = None
        known = _decode(entries.get(str(path)), stat) if stat is not None else None
        found.append(known)
        if known is None:
            stale.append((index, path, stat))
    fresh = _read_all([path for _, path, _ in stale])
    changed = bool(stale)
    for (index, path, stat), facts in zip(stale, fresh, strict=True):
        found[index] = facts
        if stat is not None:
            entries[str(path)] = _encode(stat, facts)
    if folder is not None:
        keep, here, exists = {str(p) for p in paths}, str(folder), {}
        for key in list(entries):
            parent = os.path.dirname(key)
            if parent == here and key not in keep:
                del entries[key]
                changed = True
            elif parent != here:
                if parent not in exists:
                    exists[parent] = os.path.isdir(parent)
                if not exists[parent]:
                    del entries[key]
                    changed = True
    if changed:
        try:
            write_text_atomic(file, json.dumps({"version": CACHE_VERSION, "images": entries}))
        except OSError:
            pass  # a read-only project is still checked; it just reads the images again next time
    return found  # type: ignore[return-value]


def _read_all(paths: list[Path]) -> list[ImageFacts]:
    if len(paths) <= 1:
        return [read_facts(path) for path in paths]
    with ThreadPoolExecutor(worker_count(len(paths)), thread_name_prefix="facts") as pool:
        return list(pool.map(read_facts, paths))
