"""The caption history behind `tags undo`: before an edit rewrites captions, the old bytes of every
file about to change go into a snapshot under `.kohya-wrap/caption-history/<id>/`, whose
`snapshot.json` is written last (a snapshot without it is incomplete and is never restored); only then
is each caption rewritten atomically. `undo_last` restores the newest complete snapshot.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

from kohya_wrap import fsutil
from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.fsutil import dataset_lock, write_bytes_atomic, write_text_atomic

HISTORY_DIR = (".kohya-wrap", "caption-history")
SNAPSHOT_FILE = "snapshot.json"

_SNAPSHOT_NAME = re.compile(r"^(\d{8}T\d{6})-(\d{6})-")


class Rewrite(Protocol):
    """One caption file about to be rewritten (a planned `tags.edit.Change`)."""

    path: Path
    rel: str  # relative to the project root, as the snapshot records it
    before: bytes | None  # None: the file is created
    after: bytes
    mtime_ns: int
    mode: int


def history_dir(root: Path) -> Path:
    return root.joinpath(*HISTORY_DIR)


def _snapshots(root: Path) -> list[Path]:
    """Snapshot folders, oldest first."""
    folder = history_dir(root)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and _SNAPSHOT_NAME.match(p.name)), key=lambda p: p.name)


def _new_snapshot(root: Path, command: str) -> Path:
    existing = _snapshots(root)
    seq, stamp = 0, ""
    for path in existing:
        match = _SNAPSHOT_NAME.match(path.name)
        assert match is not None
        seq, stamp = max(seq, int(match.group(2))), max(stamp, match.group(1))
    now = max(time.strftime("%Y%m%dT%H%M%S", time.gmtime()), stamp)  # ids sort in order even if the clock steps back
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", command) or "edit"
    for attempt in range(1000):
        path = history_dir(root) / f"{now}-{seq + 1 + attempt:06d}-{name}"
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise KohyaWrapError(f"{history_dir(root)}: cannot create a snapshot folder", "remove old snapshots there")


def _chmod(path: Path, mode: int) -> None:
    """The atomic write makes a private (0600) file; give it the permissions the caption had."""
    try:
        if stat.S_IMODE(path.stat().st_mode) != mode:
            os.chmod(path, mode)
    except OSError:
        pass  # a file system without Unix permissions


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _store(path: Path, data: bytes) -> None:
    """A snapshot copy (kept apart from `write_bytes_atomic`, which rewrites the captions)."""
    fsutil.write_bytes_atomic(path, data)


def apply_changes(root: Path, changes: Sequence[Rewrite], command: str, command_line: str) -> str | None:
    """Snapshot, then rewrite each caption atomically; returns the snapshot id (None: nothing to do).
    The caller holds the project's dataset lock."""
    if not changes:
        return None
    snapshot = _new_snapshot(root, command)
    files: dict[str, str] = {}
    mtimes: dict[str, int] = {}
    modes: dict[str, int] = {}
    after: dict[str, str] = {}
    for number, change in enumerate(changes, 1):
        if change.before is None:
            files[change.rel] = "created"
        else:
            copy = f"{number:06d}.bak"
            _store(snapshot / copy, change.before)
            files[change.rel] = copy
            mtimes[change.rel] = change.mtime_ns
            modes[change.rel] = change.mode
        after[change.rel] = _sha256(change.after)
    meta = {
        "version": 1,
        "id": snapshot.name,
        "command": command_line,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": files,
        "mtimes": mtimes,
        "modes": modes,
        "after": after,
    }
    # last: the snapshot is complete
    write_text_atomic(snapshot / SNAPSHOT_FILE, json.dumps(meta, ensure_ascii=False, indent=1))
    written = 0
    try:
        for change in changes:
            write_bytes_atomic(change.path, change.after)
            _chmod(change.path, change.mode)
            written += 1
    except KeyboardInterrupt:
        raise EditInterrupted(snapshot.name, written, len(changes)) from None
    return snapshot.name


class EditInterrupted(KeyboardInterrupt):
    """Ctrl-C while captions were rewritten: each is old or new, and the snapshot is complete."""

    def __init__(self, snapshot: str, written: int, total: int) -> None:
        super().__init__(snapshot)
        self.snapshot, self.written, self.total = snapshot, written, total


@dataclass
class UndoResult:
    id: str
    command: str
    restored: list[str]
    deleted: list[str]
    changed_since: list[str]  # files edited after the change (restored anyway)
    cleaned: int  # incomplete snapshots removed
    remaining: int  # changes that can still be undone

    def as_dict(self) -> dict[str, Any]:
        """What `tags undo --json` prints."""
        return {
            "undone": self.id,
            "command": self.command,
            "restored": self.restored,
            "deleted": self.deleted,
            "changed_since": self.changed_since,
            "remaining": self.remaining,
        }


def _safe_target(root: Path, relative: str, snapshot: Path) -> Path:
    parts = Path(relative).parts
    if Path(relative).is_absolute() or ".." in parts or not parts:
        raise KohyaWrapError(
            f"{snapshot / SNAPSHOT_FILE}: '{relative}' is not a path inside the project", "delete that snapshot folder"
        )
    return root / relative


def _discard(snapshot: Path) -> None:
    (snapshot / SNAPSHOT_FILE).unlink(missing_ok=True)  # first: a half-deleted snapshot is never taken as complete
    shutil.rmtree(snapshot, ignore_errors=True)


def undo_last(root: Path) -> UndoResult | None:
    """Restore the newest complete snapshot byte for byte (and its files' modification times), delete
    the files it created, then remove it. Incomplete snapshots met on the way are removed. None when
    there is nothing to undo. Takes no lock: `undo` does."""
    cleaned = 0
    snapshots = _snapshots(root)
    while snapshots:
        snapshot = snapshots.pop()
        meta_file = snapshot / SNAPSHOT_FILE
        if not meta_file.is_file():
            shutil.rmtree(snapshot, ignore_errors=True)
            cleaned += 1
            continue
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            files: dict[str, str] = meta["files"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KohyaWrapError(
                f"{meta_file}: unreadable snapshot ({exc})", "delete that snapshot folder to undo past it"
            ) from None
        mtimes, modes, after = meta.get("mtimes", {}), meta.get("modes", {}), meta.get("after", {})
        restored, deleted, changed = [], [], []
        for relative, stored in files.items():
            target = _safe_target(root, relative, snapshot)
            try:
                current = target.read_bytes()
            except FileNotFoundError:
                current = None
            if current is not None and relative in after and _sha256(current) != after[relative]:
                changed.append(relative)
            if stored == "created":
                if current is not None:
                    target.unlink()
                    deleted.append(relative)
                continue
            data = (snapshot / stored).read_bytes()
            if current != data:
                write_bytes_atomic(target, data)
            if relative in modes:
                _chmod(target, int(modes[relative]))
            mtime = mtimes.get(relative)
            if mtime is not None and target.stat().st_mtime_ns != mtime:
                os.utime(target, ns=(target.stat().st_atime_ns, int(mtime)))
            restored.append(relative)
        _discard(snapshot)
        remaining = sum((p / SNAPSHOT_FILE).is_file() for p in snapshots)
        return UndoResult(snapshot.name, str(meta.get("command", "")), restored, deleted, changed, cleaned, remaining)
    return None


def undo(root: Path) -> UndoResult:
    """`tags undo`: the newest edit undone (see `undo_last`) while holding the project's dataset lock;
    a KohyaWrapError when there is nothing to undo."""
    with dataset_lock(root, "tags undo"):
        result = undo_last(root)
    if result is None:
        raise KohyaWrapError(
            f"nothing to undo: no tag edits recorded in {Path(*HISTORY_DIR)} of {root}",
            "`kohya-wrap tags add/remove/replace/dedupe/prune/trigger/sort` record one each",
        )
    return result
