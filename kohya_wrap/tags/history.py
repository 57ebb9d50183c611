"""The caption history behind `tags undo`: before an edit rewrites captions, the old bytes of every
file about to change go into a snapshot under `.kohya-wrap/caption-history/<id>/`, whose
`snapshot.json` is written last (a snapshot without it is incomplete and is never restored); only then
is each caption rewritten atomically, each one checked first against the bytes the edit read (a file
another program changed meanwhile is left as it is, and dropped from the snapshot). `undo_last` restores
the newest complete snapshot: a file still holding its old bytes (an edit killed before it got there)
is recognised as untouched, and the temporary files a killed rewrite leaves are removed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import time
from dataclasses import dataclass, field
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


def _current(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _what_to_do(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free some space there"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "make that folder writable"
    return "fix that"


def _failed_at(exc: OSError, path: Path) -> str:
    """`path: what went wrong` (the path the user knows: a temporary file's name would mean nothing)."""
    return f"{path}: {exc.strerror or exc}"


@dataclass
class Applied:
    """What `apply_changes` did: the snapshot `tags undo` restores (None: nothing was rewritten) and
    the files left alone because something else changed them after the edit read them."""

    snapshot: str | None
    left: list[str] = field(default_factory=list)


def apply_changes(root: Path, changes: Sequence[Rewrite], command: str, command_line: str) -> Applied:
    """Snapshot, then rewrite each caption atomically, each one only if it still holds the bytes the
    edit read. The caller holds the project's dataset lock. An OSError (disk full, read-only folder)
    becomes a KohyaWrapError that says what `tags undo` puts back."""
    if not changes:
        return Applied(None)
    try:
        snapshot = _new_snapshot(root, command)
    except OSError as exc:
        raise KohyaWrapError(
            f"{_failed_at(exc, history_dir(root))}: cannot save the snapshot an edit needs; no caption was changed",
            f"{_what_to_do(exc)}, then run the edit again",
        ) from None
    try:
        meta = _save_snapshot(snapshot, changes, command_line)
    except OSError as exc:
        _discard(snapshot)
        raise KohyaWrapError(
            f"{_failed_at(exc, snapshot)}: cannot save the snapshot an edit needs; no caption was changed",
            f"{_what_to_do(exc)}, then run the edit again",
        ) from None
    written, left = 0, []
    try:
        for change in changes:
            if _current(change.path) != change.before:  # changed since the edit read it: not ours to overwrite
                left.append(change.rel)
                continue
            write_bytes_atomic(change.path, change.after)
            _chmod(change.path, change.mode)
            written += 1
    except KeyboardInterrupt:
        _forget_quietly(snapshot, meta, left)
        raise EditInterrupted(snapshot.name, written, len(changes)) from None
    except OSError as exc:
        _forget_quietly(snapshot, meta, left)
        undo = f"kohya-wrap tags undo {shlex.quote(str(root))}"
        raise KohyaWrapError(
            f"{_failed_at(exc, change.path)}: the edit stopped after rewriting {written} of {len(changes)} caption "
            "file(s); each is either old or new",
            f"{_what_to_do(exc)}, then `{undo}` puts back the old ones (snapshot {snapshot.name})",
        ) from None
    if left:
        _forget(snapshot, meta, left)
        if not written:
            _discard(snapshot)
            return Applied(None, left)
    return Applied(snapshot.name, left)


def _save_snapshot(snapshot: Path, changes: Sequence[Rewrite], command_line: str) -> dict[str, Any]:
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
    return meta


def _forget(snapshot: Path, meta: dict[str, Any], relatives: list[str]) -> None:
    """Drop files the edit left alone from its snapshot, so `undo` never overwrites another program's edit."""
    for relative in relatives:
        stored = meta["files"].pop(relative, None)
        for key in ("mtimes", "modes", "after"):
            meta[key].pop(relative, None)
        if stored and stored != "created":
            (snapshot / stored).unlink(missing_ok=True)
    write_text_atomic(snapshot / SNAPSHOT_FILE, json.dumps(meta, ensure_ascii=False, indent=1))


def _forget_quietly(snapshot: Path, meta: dict[str, Any], relatives: list[str]) -> None:
    """`_forget` on the way out of a stopped edit; if even that fails (a full disk), `undo` lists those
    files as edited since."""
    if relatives:
        try:
            _forget(snapshot, meta, relatives)
        except OSError:
            pass


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
    untouched: list[str] = field(default_factory=list)  # never rewritten: the edit was stopped before them
    temporaries: int = 0  # temporary files a killed rewrite had left, removed

    def as_dict(self) -> dict[str, Any]:
        """What `tags undo --json` prints."""
        return {
            "undone": self.id,
            "command": self.command,
            "restored": self.restored,
            "deleted": self.deleted,
            "changed_since": self.changed_since,
            "not_rewritten": self.untouched,
            "temporary_files_removed": self.temporaries,
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


# fsutil's atomic writes go through tempfile.mkstemp(prefix=".<name>.", suffix=".tmp"): 8 random characters
_TEMPORARY = re.compile(r"^\.(.+)\.[a-z0-9_]{8}\.tmp$")


def _remove_temporaries(targets: list[Path]) -> int:
    """Remove the temporary files an atomic write of these files left when it was killed (SIGKILL, power
    loss) before renaming; the caller holds the dataset lock, so no write of ours is under way."""
    names: dict[Path, set[str]] = {}
    for target in targets:
        names.setdefault(target.parent, set()).add(target.name)
    removed = 0
    for folder, wanted in names.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            match = _TEMPORARY.match(entry.name)
            if match and match.group(1) in wanted and entry.is_file(follow_symlinks=False):
                try:
                    os.unlink(entry.path)
                    removed += 1
                except OSError:
                    pass
    return removed


def undo_last(root: Path) -> UndoResult | None:
    """Restore the newest complete snapshot byte for byte (and its files' modification times), delete
    the files it created, then remove it. A file that still holds its old bytes was never rewritten (the
    edit was stopped first) and is left as it is. Incomplete snapshots met on the way are removed. None
    when there is nothing to undo. Takes no lock: `undo` does."""
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
        targets = {relative: _safe_target(root, relative, snapshot) for relative in files}
        restored, deleted, changed, untouched = [], [], [], []
        where = snapshot
        try:
            for relative, stored in files.items():
                where = targets[relative]
                _undo_file(snapshot, meta, relative, stored, where, restored, deleted, changed, untouched)
        except OSError as exc:
            done = len(restored) + len(deleted) + len(untouched)
            raise KohyaWrapError(
                f"{_failed_at(exc, where)}: undo of {snapshot.name} stopped with {done} of {len(files)} file(s) "
                "back as they were; the snapshot is kept",
                f"{_what_to_do(exc)}, then run `kohya-wrap tags undo {shlex.quote(str(root))}` again",
            ) from None
        temporaries = _remove_temporaries(list(targets.values()))
        _discard(snapshot)
        remaining = sum((p / SNAPSHOT_FILE).is_file() for p in snapshots)
        command = str(meta.get("command", ""))
        return UndoResult(
            snapshot.name, command, restored, deleted, changed, cleaned, remaining, untouched, temporaries
        )
    return None


def _undo_file(
    snapshot: Path,
    meta: dict[str, Any],
    relative: str,
    stored: str,
    target: Path,
    restored: list[str],
    deleted: list[str],
    changed: list[str],
    untouched: list[str],
) -> None:
    """Put one file of a snapshot back, and say which list it belongs to."""
    after = meta.get("after", {}).get(relative)
    current = _current(target)
    if stored == "created":
        if current is None:
            untouched.append(relative)  # never created
            return
        if after is not None and _sha256(current) != after:
            changed.append(relative)
        target.unlink()
        deleted.append(relative)
        return
    data = (snapshot / stored).read_bytes()
    if current == data:
        untouched.append(relative)  # still the old bytes: never rewritten (or put back already)
        return
    if current is not None and after is not None and _sha256(current) != after:
        changed.append(relative)  # another edit since: restored all the same, and listed
    write_bytes_atomic(target, data)
    mode = meta.get("modes", {}).get(relative)
    if mode is not None:
        _chmod(target, int(mode))
    mtime = meta.get("mtimes", {}).get(relative)
    if mtime is not None and target.stat().st_mtime_ns != mtime:
        os.utime(target, ns=(target.stat().st_atime_ns, int(mtime)))
    restored.append(relative)


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
