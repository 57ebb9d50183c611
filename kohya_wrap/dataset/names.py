"""Which files `prep` reads from a source folder, and the names their training images get: stable (the
same sources always give the same names) and never colliding."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from kohya_wrap.dataset.images import SOURCE_SUFFIXES


def list_sources(source: Path, exclude: Path | None = None) -> list[Path]:
    """Images under `source`, recursively, hidden files and folders left out, in a stable order.
    `exclude` (a resolved folder, the project when it lies inside the source) is not entered."""
    found = []
    for folder, dirs, files in os.walk(source):
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".") and (exclude is None or Path(os.path.realpath(os.path.join(folder, d))) != exclude)
        )
        found += [
            Path(folder) / f for f in files if not f.startswith(".") and Path(f).suffix.lower() in SOURCE_SUFFIXES
        ]
    return sorted(found, key=lambda p: p.relative_to(source).as_posix())


def output_names(source: Path, sources: list[Path], suffix: str) -> dict[Path, str]:
    """Deterministic names that never collide: the path below the source folder with / → _, the source's
    own extension added where two sources would otherwise share a name (a.jpg and a.png), and where a
    name is still taken (a/b.jpg and a_b.jpg; a_b.jpg, a_b.png and a_b_jpg.png; A.jpg and a.jpg on a
    case-insensitive disk) a number, _2, _3, … for all but the first by path. Names that collided with
    nothing are the same as they always were (prep.json and earlier outputs rely on them)."""
    ordered = sorted(sources, key=lambda p: p.relative_to(source).as_posix())
    stems = {p: _short(p.relative_to(source).with_suffix("").as_posix().replace("/", "_")) for p in ordered}
    counts: dict[str, int] = {}
    for stem in stems.values():
        counts[stem] = counts.get(stem, 0) + 1
    wanted = {p: stem if counts[stem] == 1 else f"{stem}_{p.suffix.lstrip('.').lower()}" for p, stem in stems.items()}
    folded: dict[str, int] = {}
    for stem in stems.values():
        if counts[stem] == 1:
            folded[stem.casefold()] = folded.get(stem.casefold(), 0) + 1

    def tier(p: Path) -> int:  # who keeps a name first: a plain name no other plain name folds to, then plain
        plain = counts[stems[p]] == 1
        return 0 if plain and folded[stems[p].casefold()] == 1 else 1 if plain else 2

    taken: set[str] = set()
    names: dict[Path, str] = {}
    for p in sorted(ordered, key=tier):  # stable: in path order within a tier
        name, number = wanted[p], 1
        while name.casefold() in taken:
            number += 1
            name = f"{wanted[p]}_{number}"
        taken.add(name.casefold())
        names[p] = name + suffix
    return {p: names[p] for p in sources}


NAME_BYTES = 200  # a longer stem (photos deep in folders) is cut: file systems allow 255 bytes a name, and
# the atomic write's temporary file (`.<name>.XXXXXXXX.tmp`), the number and the suffix need room


def _short(stem: str) -> str:
    """`stem` as it is when short enough, else its start and 8 hex digits of its hash (still one name per
    path: the same long path always gives the same name)."""
    if len(stem.encode("utf-8", "surrogateescape")) <= NAME_BYTES:
        return stem
    digest = hashlib.sha256(stem.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    head = stem.encode("utf-8", "surrogateescape")[: NAME_BYTES - 9].decode("utf-8", "ignore")
    return f"{head}_{digest}"
