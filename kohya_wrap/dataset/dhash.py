"""Difference hashes: near-duplicate images found by a 64-bit hash of their gradients, and a cache of
them per project so a second `lint` decodes nothing."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kohya_wrap.fsutil import write_text_atomic
from kohya_wrap.workers import worker_count


def dhash(image) -> int:
    """64-bit difference hash: 9×8 greyscale, one bit per horizontally adjacent pair."""
    small = image.convert("L").resize((9, 8))
    pixels = small.tobytes()
    bits = 0
    for row in range(8):
        for col in range(8):
            bits = (bits << 1) | (pixels[row * 9 + col] > pixels[row * 9 + col + 1])
    return bits


def hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


class HashCache:
    """Difference hashes of training images, kept in `.kohya-wrap/cache/dhash.json` keyed by path,
    size and modification time, so a second lint decodes nothing. New images are hashed on every
    core (threads: Pillow releases the GIL while it decodes)."""

    def __init__(self, root: Path) -> None:
        self.file = root / ".kohya-wrap" / "cache" / "dhash.json"
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            data = {}
        # entries of another shape (a damaged or foreign file) are as good as absent: hashed again
        self.entries: dict[str, list] = (
            {key: entry for key, entry in data.items() if _well_formed(entry)} if isinstance(data, dict) else {}
        )
        self.seen: set[str] = set()
        self.changed = False

    def hashes(self, paths: list[Path]) -> dict[Path, int]:
        stale = []
        for path in paths:
            try:
                stat = path.stat()
            except OSError:
                continue
            self.seen.add(str(path))
            entry = self.entries.get(str(path))
            if not (entry and entry[0] == stat.st_size and entry[1] == stat.st_mtime_ns):
                stale.append((path, stat))
        if stale:
            with ThreadPoolExecutor(worker_count(len(stale))) as pool:
                for (path, stat), value in zip(stale, pool.map(image_dhash, [p for p, _ in stale]), strict=True):
                    self.entries[str(path)] = [
                        stat.st_size,
                        stat.st_mtime_ns,
                        f"{value:016x}" if value is not None else "",
                    ]
            self.changed = True
        found = {}
        for path in paths:
            entry = self.entries.get(str(path))
            if entry and entry[2]:
                found[path] = int(entry[2], 16)
        return found

    def save(self) -> None:
        """Write the cache (only the images seen this time: deleted ones drop out)."""
        if not self.changed and self.seen == set(self.entries):
            return
        try:
            write_text_atomic(
                self.file, json.dumps({key: self.entries[key] for key in sorted(self.seen) if key in self.entries})
            )
        except OSError:
            pass  # a read-only project still lints; it just hashes again next time


def _well_formed(entry: object) -> bool:
    """[size, mtime_ns, 16 hex digits or "" (not an image)], as HashCache writes it."""
    if not (isinstance(entry, list) and len(entry) == 3):
        return False
    size, mtime, value = entry
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in (size, mtime)) or not isinstance(value, str):
        return False
    if value == "":
        return True
    try:
        return len(value) <= 16 and int(value, 16) >= 0
    except ValueError:
        return False


def image_dhash(path: Path) -> int | None:
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            image.draft("L", (64, 64))  # JPEG: decode at 1/8 scale; a no-op for other formats
            return dhash(ImageOps.exif_transpose(image))
    except Exception:  # noqa: BLE001 - unreadable images are check's finding, not lint's
        return None
