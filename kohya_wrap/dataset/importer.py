"""Copy a user's photos (and their same-stem captions) into a concept folder. Sources are only read;
existing files in the project are never overwritten."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from kohya_wrap.dataset.scan import CAPTION_LIKE_SUFFIXES, IMAGE_LIKE_SUFFIXES, SD_SCRIPTS_IMAGE_EXTENSIONS
from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.fsutil import copy_file_atomic

LOWER_READABLE = {ext for ext in SD_SCRIPTS_IMAGE_EXTENSIONS if ext == ext.lower()}


@dataclass
class ImportResult:
    copied: int = 0
    captions: int = 0
    unchanged: int = 0  # already there with the same size and time
    conflicts: list[Path] = field(default_factory=list)  # a different file already has that name
    unsupported: list[Path] = field(default_factory=list)  # images sd-scripts cannot read


def _same_file(a: Path, b: Path) -> bool:
    sa, sb = a.stat(), b.stat()
    return sa.st_size == sb.st_size and int(sa.st_mtime) == int(sb.st_mtime)


def import_images(source: Path, target: Path) -> ImportResult:
    """Top-level images of `source` whose format sd-scripts reads, extension lower-cased (sd-scripts
    skips `photo.Jpg`), plus caption sidecars of the same stem."""
    if not source.is_dir():
        raise KohyaWrapError(f"{source}: not a folder", "give the folder that holds your photos")
    if source.resolve() == target.resolve():
        return ImportResult()
    target.mkdir(parents=True, exist_ok=True)
    result = ImportResult()
    names = sorted(e.name for e in os.scandir(source) if e.is_file() and not e.name.startswith("."))
    image_stems = set()
    plan: list[tuple[Path, Path, bool]] = []
    for name in names:
        stem, suffix = os.path.splitext(name)
        if suffix.lower() in LOWER_READABLE:
            image_stems.add(stem)
            plan.append((source / name, target / (stem + suffix.lower()), False))
        elif suffix.lower() in IMAGE_LIKE_SUFFIXES:
            result.unsupported.append(source / name)
    for name in names:
        stem, suffix = os.path.splitext(name)
        if suffix.lower() in CAPTION_LIKE_SUFFIXES and stem in image_stems:
            plan.append((source / name, target / name, True))
    for src, dst, is_caption in plan:
        if dst.exists():
            if _same_file(src, dst):
                result.unchanged += 1
            else:
                result.conflicts.append(dst)
            continue
        copy_file_atomic(src, dst)
        if is_caption:
            result.captions += 1
        else:
            result.copied += 1
    return result
