"""Caption tag tools: a caption as ordered comma-separated items, edited without touching anything else.

A caption file is UTF-8 (a leading BOM is kept), split into lines on CRLF / LF / CR (each line ending
kept as it was); every non-empty line is one item list (sd-scripts' wildcard captions put alternatives
on separate lines). A line splits on "," only (the fullwidth "，" is part of an item), each segment
keeping its surrounding whitespace, so joining the segments with "," gives the line back exactly. An
item's identity (its key) is its trimmed text with inner runs of whitespace collapsed to one space.

Edits are planned first (nothing written), then applied: the old bytes of every file about to change
go into a snapshot under `.kohya-wrap/caption-history/<id>/`, whose `snapshot.json` is written last;
only then is each caption rewritten atomically. `undo_last` restores the newest complete snapshot.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
import shutil
import stat
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from kohya_wrap.dataset.scan import scan_folder
from kohya_wrap.dataset.tokens import token_pattern
from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.fsutil import write_bytes_atomic, write_text_atomic

if TYPE_CHECKING:
    from kohya_wrap.spec.load import LoadedSpec

HISTORY_DIR = (".kohya-wrap", "caption-history")
SNAPSHOT_FILE = "snapshot.json"
NOT_UTF8 = "not UTF-8, left untouched"
DEFAULT_SEPARATOR = ("", " ")  # ", ": whitespace before and after the comma

_LINE_BREAK = re.compile(r"(\r\n|\n|\r)")
_SNAPSHOT_NAME = re.compile(r"^(\d{8}T\d{6})-(\d{6})-")

# ---------------------------------------------------------------------------------------------- items


def item_key(text: str) -> str:
    """An item's identity: trimmed, inner whitespace runs collapsed to one space."""
    return " ".join(text.split())


def _lead(segment: str) -> str:
    return segment[: len(segment) - len(segment.lstrip())]


def _trail(segment: str) -> str:
    return segment[len(segment.rstrip()):]


def line_keys(line: str) -> list[str]:
    """The keys of a line's items, empty items included (as "")."""
    return [item_key(s) for s in line.split(",")]


def separator_style(segments: list[str]) -> tuple[str, str]:
    """The whitespace (before, after) the comma used most between two non-empty items of a line."""
    styles = Counter((_trail(a), _lead(b)) for a, b in zip(segments, segments[1:]) if a.strip() and b.strip())
    return styles.most_common(1)[0][0] if styles else DEFAULT_SEPARATOR


class _Drop:
    pass


DROP = _Drop()  # an action: remove this item


def _rebuild(segments: list[str], actions: list[Any]) -> str:
    """Apply one action per segment: None keeps it, DROP removes it, a string replaces its text
    (its surrounding whitespace stays). A removed item takes the comma before it with it (the one
    after it for the first item); the line's own leading and trailing whitespace stays in place."""
    out: list[str] = []
    kept: list[int] = []
    for index, (segment, action) in enumerate(zip(segments, actions)):
        if action is DROP:
            continue
        out.append(segment if action is None else _lead(segment) + action + _trail(segment))
        kept.append(index)
    if not out:
        return ""
    if kept[0] != 0:
        out[0] = _lead(segments[0]) + out[0].lstrip()
    if kept[-1] != len(segments) - 1:
        out[-1] = out[-1].rstrip() + _trail(segments[-1])
    return ",".join(out)


def map_items(line: str, action: Callable[[str, int], Any]) -> str:
    """`action(key, index)` for each non-empty item → None (keep), DROP, or its new text."""
    segments = line.split(",")
    actions = [action(item_key(s), n) if s.strip() else None for n, s in enumerate(segments)]
    if all(a is None for a in actions):
        return line
    return _rebuild(segments, actions)


def remove_items(line: str, drop: Callable[[str], bool]) -> str:
    return map_items(line, lambda key, _: DROP if drop(key) else None)


def replace_items(line: str, change: Callable[[str], str | None]) -> str:
    """`change(key)` → the item's new text, or None to leave it; a new text that is empty removes it."""
    def action(key: str, _: int):
        new = change(key)
        if new is None or new == key:
            return None
        return new.strip() if new.strip() else DROP
    return map_items(line, action)


def dedupe_items(line: str) -> str:
    seen: set[str] = set()

    def action(key: str, _: int):
        if key in seen:
            return DROP
        seen.add(key)
        return None
    return map_items(line, action)


def insert_items(line: str, tags: Iterable[str], front: bool) -> str:
    """Add the tags a line does not have yet, at the front or after its last non-empty item, with the
    line's most used separator; a blank line becomes the tags alone."""
    segments = line.split(",")
    present = {item_key(s) for s in segments}
    new: list[str] = []
    for tag in tags:
        if tag not in present and tag not in new:
            new.append(tag)
    if not new:
        return line
    if not line.strip():
        return ", ".join(new)
    before, after = separator_style(segments)
    filled = [n for n, s in enumerate(segments) if s.strip()]
    if front or not filled:
        first = segments[0]
        head = [(_lead(first) if n == 0 else after) + tag + before for n, tag in enumerate(new)]
        return ",".join(head + [after + first.lstrip()] + segments[1:])
    last = filled[-1]
    segment = segments[last]
    tail = [after + tag + before for tag in new]
    tail[-1] = tail[-1][: len(tail[-1]) - len(before)] + _trail(segment)
    return ",".join(segments[:last] + [segment.rstrip() + before] + tail + segments[last + 1:])


def trigger_first(line: str, word: str) -> str:
    """`word` as the line's first item, any other occurrence removed."""
    keys = line_keys(line)
    if keys[0] == word and word not in keys[1:]:
        return line
    return insert_items(remove_items(line, lambda key: key == word), [word], front=True)


def sort_items(line: str, key: Callable[[str], Any], keep: int) -> str:
    """Reorder the non-empty items after the first `keep` segments; each slot keeps its whitespace."""
    segments = line.split(",")
    slots = [n for n in range(keep, len(segments)) if segments[n].strip()]
    texts = sorted((segments[n].strip() for n in slots), key=lambda text: key(item_key(text)))
    out = list(segments)
    for slot, text in zip(slots, texts):
        out[slot] = _lead(segments[slot]) + text + _trail(segments[slot])
    return ",".join(out)


# ---------------------------------------------------------------------------------------------- captions


@dataclass
class Caption:
    """A decoded caption: lines with their own line endings, and whether it started with a BOM."""

    lines: list[str]
    breaks: list[str]  # the ending after each line; "" after the last
    bom: bool = False

    @classmethod
    def parse(cls, text: str, bom: bool = False) -> "Caption":
        parts = _LINE_BREAK.split(text)
        return cls(parts[0::2], parts[1::2] + [""], bom)

    @classmethod
    def decode(cls, data: bytes) -> "Caption":
        """Raises UnicodeDecodeError for bytes that are not UTF-8."""
        bom = data.startswith(codecs.BOM_UTF8)
        return cls.parse(data[len(codecs.BOM_UTF8):].decode("utf-8") if bom else data.decode("utf-8"), bom)

    @property
    def text(self) -> str:
        return "".join(line + end for line, end in zip(self.lines, self.breaks))

    def encode(self) -> bytes:
        return (codecs.BOM_UTF8 if self.bom else b"") + self.text.encode("utf-8")

    @property
    def is_empty(self) -> bool:
        return not any(line.strip() for line in self.lines)

    def keys(self) -> set[str]:
        """Every non-empty item key in the caption (any line)."""
        return {k for line in self.lines if line.strip() for k in line_keys(line) if k}

    def edited(self, edit: Callable[[str], str], fill: list[str] | None = None) -> "Caption":
        """`edit` applied to each non-empty line; an empty caption gets `fill` (if any) as its only items."""
        if self.is_empty:
            if not fill:
                return self
            return Caption([", ".join(fill)] + self.lines[1:], list(self.breaks), self.bom)
        return Caption([edit(line) if line.strip() else line for line in self.lines], list(self.breaks), self.bom)


def key_diff(before: Caption | None, after: Caption) -> tuple[int, int]:
    """(items added, items removed), line by line, by key."""
    added = removed = 0
    old_lines = before.lines if before is not None else []
    for n in range(max(len(old_lines), len(after.lines))):
        old = Counter(k for k in line_keys(old_lines[n]) if k) if n < len(old_lines) else Counter()
        new = Counter(k for k in line_keys(after.lines[n]) if k) if n < len(after.lines) else Counter()
        added += sum((new - old).values())
        removed += sum((old - new).values())
    return added, removed


# ---------------------------------------------------------------------------------------------- concepts


@dataclass
class CaptionFile:
    image: Path
    path: Path  # where its caption is (or would be)
    data: bytes | None = None  # None: no caption file
    caption: Caption | None = None  # None: none, or it does not decode
    error: str | None = None
    mtime_ns: int = 0
    mode: int = 0o644  # permission bits, kept on rewrite

    @property
    def exists(self) -> bool:
        return self.data is not None or self.error is not None


@dataclass
class ConceptCaptions:
    label: str
    folder: Path
    token: str | None  # the trigger token; regularization concepts have none
    extension: str
    shuffle: bool
    keep_tokens: int
    keep_separator: str
    is_reg: bool = False
    files: list[CaptionFile] = field(default_factory=list)

    @property
    def readable(self) -> list[CaptionFile]:
        return [f for f in self.files if f.caption is not None]

    @property
    def missing(self) -> list[CaptionFile]:
        return [f for f in self.files if not f.exists]

    @property
    def unreadable(self) -> list[CaptionFile]:
        return [f for f in self.files if f.error is not None]

    def keep_count(self, line: str) -> int:
        """How many leading items sd-scripts holds in place when shuffling (and `sort` leaves alone)."""
        keys = line_keys(line)
        keep = max(self.keep_tokens, 1 if self.token and keys[0] == self.token else 0)
        if self.keep_separator:
            for n, segment in enumerate(line.split(",")):
                if self.keep_separator in segment:
                    keep = max(keep, n + 1)
                    break
        return keep


def read_captions(folder: Path, extension: str) -> list[CaptionFile]:
    scan = scan_folder(folder, read_sizes=False)
    paired = scan.captions_with(extension)
    files = []
    for image in scan.images:
        path = paired.get(image.path)
        item = CaptionFile(image.path, path if path is not None else Path(image.stem_path + extension))
        if path is not None:
            try:
                item.data = path.read_bytes()
                info = path.stat()
                item.mtime_ns, item.mode = info.st_mtime_ns, stat.S_IMODE(info.st_mode)
                item.caption = Caption.decode(item.data)
            except UnicodeDecodeError:
                item.error = NOT_UTF8
            except OSError as exc:
                item.data, item.error = None, f"cannot be read ({exc.strerror}), left untouched"
        files.append(item)
    return files


def load_concepts(loaded: "LoadedSpec", concept_name: str | None) -> list[ConceptCaptions]:
    """The chosen concepts (all without a name) with their captions and caption settings."""
    return [ConceptCaptions(
        label=item.label, folder=item.folder, token=item.concept.token or None, extension=item.caption_extension,
        shuffle=item.shuffle_caption, keep_tokens=item.keep_tokens, keep_separator=item.keep_tokens_separator,
        is_reg=item.is_reg, files=read_captions(item.folder, item.caption_extension))
        for item in loaded.settings.select_concepts(concept_name, loaded.layout.spec_file)]


def tag_counts(concepts: Iterable[ConceptCaptions]) -> Counter:
    """Tag → the number of (readable) captions that contain it, over the concepts given."""
    counts: Counter = Counter()
    for concept in concepts:
        for item in concept.readable:
            counts.update(item.caption.keys())  # type: ignore[union-attr]
    return counts


# ---------------------------------------------------------------------------------------------- planning


@dataclass
class Change:
    path: Path
    rel: str
    before: bytes | None  # None: the file is created
    after: bytes
    mtime_ns: int
    mode: int
    added: int
    removed: int
    example: tuple[str, str]  # the first line that changes, before → after


@dataclass
class ConceptPlan:
    label: str
    folder: str
    changes: list[Change] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (relative path, why)
    missing: list[str] = field(default_factory=list)  # images without a caption file, left so

    @property
    def added(self) -> int:
        return sum(c.added for c in self.changes)

    @property
    def removed(self) -> int:
        return sum(c.removed for c in self.changes)

    @property
    def created(self) -> int:
        return sum(c.before is None for c in self.changes)


def rel(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _example(before: Caption | None, after: Caption) -> tuple[str, str]:
    old_lines = before.lines if before is not None else []
    for n, line in enumerate(after.lines):
        old = old_lines[n] if n < len(old_lines) else ""
        if line != old:
            return old, line
    return "", ""


LineEditFor = Callable[[ConceptCaptions], Callable[[str], str]]


def plan_edit(root: Path, concepts: list[ConceptCaptions], edit_for: LineEditFor, fill: list[str] | None = None,
              create: bool = False) -> list[ConceptPlan]:
    """What an edit would change, per concept; nothing is written. `fill`: the items an empty caption
    gets; with `create`, images without a caption get a new file holding them."""
    plans = []
    seen: set[Path] = set()
    for concept in concepts:
        plan = ConceptPlan(concept.label, rel(root, concept.folder))
        edit = edit_for(concept)
        for item in concept.files:
            if item.path in seen:
                continue
            seen.add(item.path)
            if item.error is not None:
                plan.unreadable.append((rel(root, item.path), item.error))
                continue
            if item.caption is None:
                if create and fill:
                    after = Caption([", ".join(fill)], [""])
                    added, removed = key_diff(None, after)
                    plan.changes.append(Change(item.path, rel(root, item.path), None, after.encode(), 0, _new_file_mode(), added, removed,
                                               ("", after.lines[0])))
                else:
                    plan.missing.append(rel(root, item.image))
                continue
            after = item.caption.edited(edit, fill)
            data = after.encode()
            if data == item.data:
                continue
            added, removed = key_diff(item.caption, after)
            plan.changes.append(Change(item.path, rel(root, item.path), item.data, data, item.mtime_ns, item.mode, added, removed,
                                       _example(item.caption, after)))
        plans.append(plan)
    return plans


# ---------------------------------------------------------------------------------------------- history


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


def _new_file_mode() -> int:
    """What a plain `open(path, "w")` would give a new file under the current umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


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
    from kohya_wrap import fsutil

    fsutil.write_bytes_atomic(path, data)


def apply_changes(root: Path, changes: list[Change], command: str, command_line: str) -> str | None:
    """Snapshot, then rewrite each caption atomically; returns the snapshot id (None: nothing to do)."""
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
    meta = {"version": 1, "id": snapshot.name, "command": command_line, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": files, "mtimes": mtimes, "modes": modes, "after": after}
    write_text_atomic(snapshot / SNAPSHOT_FILE, json.dumps(meta, ensure_ascii=False, indent=1))  # last: the snapshot is complete
    written = 0
    try:
        for change in changes:
            write_bytes_atomic(change.path, change.after)
            _chmod(change.path, change.mode)
            written += 1
    except KeyboardInterrupt:
        raise EditInterrupted(snapshot.name, written) from None
    return snapshot.name


class EditInterrupted(KeyboardInterrupt):
    """Ctrl-C while captions were rewritten: each is old or new, and the snapshot is complete."""

    def __init__(self, snapshot: str, written: int) -> None:
        super().__init__(snapshot)
        self.snapshot, self.written = snapshot, written


@dataclass
class UndoResult:
    id: str
    command: str
    restored: list[str]
    deleted: list[str]
    changed_since: list[str]  # files edited after the change (restored anyway)
    cleaned: int  # incomplete snapshots removed
    remaining: int  # changes that can still be undone


def _safe_target(root: Path, relative: str, snapshot: Path) -> Path:
    parts = Path(relative).parts
    if Path(relative).is_absolute() or ".." in parts or not parts:
        raise KohyaWrapError(f"{snapshot / SNAPSHOT_FILE}: '{relative}' is not a path inside the project", "delete that snapshot folder")
    return root / relative


def _discard(snapshot: Path) -> None:
    (snapshot / SNAPSHOT_FILE).unlink(missing_ok=True)  # first: a half-deleted snapshot is never taken as complete
    shutil.rmtree(snapshot, ignore_errors=True)


def undo_last(root: Path) -> UndoResult | None:
    """Restore the newest complete snapshot byte for byte (and its files' modification times), delete
    the files it created, then remove it. Incomplete snapshots met on the way are removed. None when
    there is nothing to undo."""
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
            raise KohyaWrapError(f"{meta_file}: unreadable snapshot ({exc})", "delete that snapshot folder to undo past it") from None
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
