"""Atomic writes (a crash or Ctrl-C never leaves a half-written config, caption or copy behind), file
hashes, and the locks that keep two kohya-wrap processes from editing the same files at once."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from kohya_wrap.errors import KohyaWrapError

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux: /proc; os.umask() can
    only be read by setting it, a moment in which another thread's new file would get mode 0666)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _new_file_mode(path: Path) -> int:
    """The mode a plain open() would leave: a replaced file keeps its own, a new one gets 0666 less the
    umask. (mkstemp's temporary file is 0600, which left every caption, config and training image
    unreadable to sd-scripts run as another user or in a container.)"""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _replace_from_temp(path: Path, fill) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
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


OWNER_WAIT_S = 1.0  # how long a refused command waits for the lock holder's record, to name it


def free_name(folder: Path, stem: str, suffix: str = "") -> str:
    """`stem` + `suffix`, else `stem-2`, `stem-3`… + `suffix`: the first name not taken in `folder` (run,
    sweep and grid folders named by their start time: two in the same second get -2)."""
    name, n = stem + suffix, 1
    while (folder / name).exists():
        n += 1
        name = f"{stem}-{n}{suffix}"
    return name


def utc_stamp() -> str:
    """The current UTC time as kohya-wrap names records by it: 20261130-043005."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime())


def _live_holder(owner: Path) -> str:
    """The lock holder's record ("pid N: kohya-wrap …"), or "" while there is none or its pid is gone (the
    record of a killed holder, read before the new holder wrote its own)."""
    try:
        holder = owner.read_text(encoding="utf-8").strip()
    except OSError:
        return ""
    try:
        os.kill(int(holder.split(":", 1)[0].removeprefix("pid ")), 0)  # signal 0: is it alive?
    except ProcessLookupError:
        return ""
    except (OSError, ValueError, OverflowError):  # another user's process, or a record not of this form
        pass
    return holder


@contextmanager
def exclusive_lock(path: Path, busy: str, hint: str) -> Iterator[None]:
    """Hold an OS file lock (filelock) at `path` for the block, or fail at once with `busy` (plus the
    holder's pid and command, which the holder writes just after it takes the lock: a refused command
    waits up to OWNER_WAIT_S for it). The OS releases it when the holder dies, even by SIGKILL, so a lock
    is never stale; the `.owner` record a killed holder leaves behind is only shown while its pid lives."""
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    owner = path.with_name(path.name + ".owner")
    lock = FileLock(str(path), timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        # the holder writes its record just after it takes the lock: give it that moment
        deadline = time.monotonic() + OWNER_WAIT_S
        while not (holder := _live_holder(owner)) and time.monotonic() < deadline:
            time.sleep(0.02)
        raise KohyaWrapError(f"{busy} ({holder})" if holder else busy, hint) from None
    try:
        owner.write_text(f"pid {os.getpid()}: kohya-wrap {' '.join(sys.argv[1:])}".strip() + "\n", encoding="utf-8")
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


def dataset_lock(root: Path, command: str):
    """The lock every command that writes a project's training images or captions holds (prep, caption,
    tags), so two of them never edit the same files at once."""
    return exclusive_lock(
        root / ".kohya-wrap" / "dataset.lock",
        f"{root}: another kohya-wrap command is changing this project's images or captions",
        f"wait for it to finish, then run `kohya-wrap {command}` again",
    )
