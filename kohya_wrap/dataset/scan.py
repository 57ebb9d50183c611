"""See a concept folder the way sd-scripts will: the same files, the same sizes, the same captions.

sd-scripts lists `<dir>/*<ext>` for an exact-case extension list (so `photo.Jpg` is silently skipped),
reads sizes with the `imagesize` package it pins (1.4.1: the stored size, EXIF orientation not applied)
with a Pillow fallback, and looks for `<image stem><caption_extension>` next to each image. Matching it
exactly is what makes our step math equal to its own. What else it gets wrong silently about each image
(orientation, transparency) and whether the file decodes at all is read in dataset/facts.py, cached.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kohya_wrap.dataset.facts import facts_for
from kohya_wrap.paths import SPEC_FILENAME

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
    size: tuple[int, int] | None  # as stored (sd-scripts ignores the EXIF orientation); None: unreadable header
    damage: str | None = None  # why the file would fail to decode (truncated, corrupt), if it would
    orientation: int = 1  # EXIF orientation, which sd-scripts does not apply
    alpha: str = ""  # "", "opaque", or what its transparent parts train as: "black", "white", "other"

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


def _is_file(entry: os.DirEntry) -> bool:
    """A file as sd-scripts' glob lists it: a symbolic link that leads nowhere (dangling, or a loop) is
    listed too, and then fails to open (check reports it as an unreadable image), never a crash here."""
    try:
        return entry.is_file() or (entry.is_symlink() and not os.path.isdir(entry.path))
    except OSError:  # ELOOP and the like, on the link's target
        return entry.is_symlink()


def is_sd_scripts_image(name: str) -> bool:
    return not name.startswith(".") and name.endswith(SD_SCRIPTS_IMAGE_EXTENSIONS)


def project_of(folder: Path) -> Path | None:
    """The project a concept folder belongs to: `image/<name>` or `reg/<name>` in a folder that holds a
    kohya-wrap.toml; None for any other folder."""
    parent = folder.parent
    if parent.name in ("image", "reg") and (parent.parent / SPEC_FILENAME).is_file():
        return parent.parent
    return None


def scan_folder(folder: Path, read_sizes: bool = True, root: Path | None = None) -> FolderScan:
    """The folder as sd-scripts lists it. Each image's size, integrity, EXIF orientation and alpha come
    from the project's cache (`root`, else the project the folder is in; dataset/facts.py) where the file
    is unchanged, and are read on every core where not. `read_sizes=False` reads no image at all (for work
    on captions, which needs only the names)."""
    if not folder.is_dir():
        return FolderScan(folder, False, (), (), ())
    images, skipped, sidecars = [], [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            if not _is_file(entry):
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
    if read_sizes:
        facts = facts_for(images, root if root is not None else project_of(folder), folder)
        entries_ = [ImageEntry(p, f.size, f.damage, f.orientation, f.alpha) for p, f in zip(images, facts, strict=True)]
    else:
        entries_ = [ImageEntry(path, None) for path in images]
    return FolderScan(folder, True, tuple(entries_), tuple(sorted(skipped)), tuple(sorted(sidecars)))


@dataclass(frozen=True)
class ConceptScan:
    """A concept and its folder as sd-scripts will read it."""

    concept: "ConceptSettings"
    scan: FolderScan

    @property
    def folder(self) -> Path:
        return self.concept.folder
