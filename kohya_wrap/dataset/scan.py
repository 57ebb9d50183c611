"""See a concept folder the way sd-scripts will: the same files, the same sizes, the same captions.

sd-scripts lists `<dir>/*<ext>` for an exact-case extension list (so `photo.Jpg` is silently skipped),
reads sizes with the `imagesize` package (EXIF-rotated for JPEG, raw for WebP) with a Pillow fallback,
and looks for `<image stem><caption_extension>` next to each image. Matching it exactly is what makes
our step math equal to its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kohya_wrap.spec.settings import ConceptSettings

# sd-scripts v0.10.1 library/train_util.py IMAGE_EXTENSIONS (avif/jxl only with optional plugins there).
SD_SCRIPTS_IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png",
    ".jpg",
    ".jpeg",
    ".webp",
    ".bmp",
    ".PNG",
    ".JPG",
    ".JPEG",
    ".WEBP",
    ".BMP",
)
# Files that look like images but that sd-scripts will not read (wrong case, or a format it skips).
IMAGE_LIKE_SUFFIXES = {
    ".png",
    ".jpg",
    ".jpeg",
    ".webp",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".avif",
    ".heic",
    ".heif",
    ".jxl",
}
# Sidecar extensions captioners and taggers write; used to spot a caption_extension mismatch.
CAPTION_LIKE_SUFFIXES = (".txt", ".caption", ".tags", ".tag", ".cap")


@dataclass(frozen=True)
class ImageEntry:
    path: Path
    size: tuple[int, int] | None  # None: the header could not be read
    damage: str | None = None  # why the file would fail to decode (truncated, corrupt), if it would

    @property
    def stem_path(self) -> str:
        return os.path.splitext(str(self.path))[0]


@dataclass(frozen=True)
class FolderScan:
    folder: Path
    exists: bool
    images: tuple[ImageEntry, ...]
    skipped: tuple[Path, ...]  # image-like files sd-scripts ignores
    sidecars: tuple[Path, ...]  # caption-like files of any extension

    def captions_with(self, extension: str) -> dict[Path, Path]:
        """Image → its caption file for one caption extension, as sd-scripts pairs them."""
        found = {str(p) for p in self.sidecars}
        pairs = {}
        for image in self.images:
            candidate = image.stem_path + extension
            if candidate in found or (extension not in CAPTION_LIKE_SUFFIXES and os.path.isfile(candidate)):
                pairs[image.path] = Path(candidate)
        return pairs


def is_sd_scripts_image(name: str) -> bool:
    return not name.startswith(".") and name.endswith(SD_SCRIPTS_IMAGE_EXTENSIONS)


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) as sd-scripts reads it, or None when neither reader understands the file."""
    import imagesize

    try:
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


def damage(path: Path) -> str | None:
    """A fast integrity check for a readable header: sd-scripts decodes images only after loading the
    model (minutes in), so a truncated file must be found here. Pillow's verify() checks PNG/WebP
    chunks; a JPEG without its end marker is decoded in full to be sure (rare, so cheap overall)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.format == "JPEG":
                with open(path, "rb") as handle:
                    handle.seek(max(0, path.stat().st_size - 1024))
                    if b"\xff\xd9" in handle.read():
                        return None
                image.load()
            else:
                image.verify()
    except Exception as exc:  # Pillow raises many kinds for broken files
        return str(exc) or type(exc).__name__
    return None


def scan_folder(folder: Path, read_sizes: bool = True) -> FolderScan:
    """The folder as sd-scripts lists it; `read_sizes=False` skips the image headers and the integrity
    check (for work on captions, which needs only the names)."""
    if not folder.is_dir():
        return FolderScan(folder, False, (), (), ())
    images, skipped, sidecars = [], [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            if not entry.is_file():
                continue
            name = entry.name
            suffix = os.path.splitext(name)[1]
            if is_sd_scripts_image(name):
                images.append(Path(entry.path))
            elif suffix.lower() in IMAGE_LIKE_SUFFIXES and not name.startswith("."):
                skipped.append(Path(entry.path))
            elif suffix.lower() in CAPTION_LIKE_SUFFIXES:
                sidecars.append(Path(entry.path))
    images.sort(key=str)  # sd-scripts sorts path strings; the order decides which reg images are used
    entries_ = []
    for path in images:
        size = image_size(path) if read_sizes else None
        entries_.append(ImageEntry(path, size, damage(path) if size is not None else None))
    return FolderScan(folder, True, tuple(entries_), tuple(sorted(skipped)), tuple(sorted(sidecars)))


@dataclass(frozen=True)
class ConceptScan:
    """A concept and its folder as sd-scripts will read it."""

    concept: "ConceptSettings"
    scan: FolderScan

    @property
    def folder(self) -> Path:
        return self.concept.folder
