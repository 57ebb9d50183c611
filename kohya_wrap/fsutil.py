"""Atomic writes: a crash or Ctrl-C never leaves a half-written config, caption or copy behind."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path


def _replace_from_temp(path: Path, fill) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    _replace_from_temp(path, lambda handle: handle.write(text.encode("utf-8")))


def copy_file_atomic(source: Path, target: Path) -> None:
    """Copy bytes (source opened read-only) and keep the source's modification time."""

    def fill(handle) -> None:
        with open(source, "rb") as src:
            shutil.copyfileobj(src, handle, 1024 * 1024)

    _replace_from_temp(target, fill)
    stat = source.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    _replace_from_temp(path, lambda handle: handle.write(data))


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks (checkpoints and base models are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
