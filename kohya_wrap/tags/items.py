"""One caption line as ordered comma-separated items, and the edits on it (remove, replace, dedupe,
insert, trigger word first, sort) that change only the items they touch: every other byte stays.

A line splits on "," only (the fullwidth "，" is part of an item), each segment keeping its surrounding
whitespace, so joining the segments with "," gives the line back exactly. An item's identity (its key)
is its trimmed text with inner runs of whitespace collapsed to one space.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Iterable

DEFAULT_SEPARATOR = ("", " ")  # ", ": whitespace before and after the comma


def item_key(text: str) -> str:
    """An item's identity: trimmed, inner whitespace runs collapsed to one space."""
    return " ".join(text.split())


def _lead(segment: str) -> str:
    return segment[: len(segment) - len(segment.lstrip())]


def _trail(segment: str) -> str:
    return segment[len(segment.rstrip()) :]


def line_keys(line: str) -> list[str]:
    """The keys of a line's items, empty items included (as "")."""
    return [item_key(s) for s in line.split(",")]


def separator_style(segments: list[str]) -> tuple[str, str]:
    """The whitespace (before, after) the comma used most between two non-empty items of a line."""
    styles = Counter(
        (_trail(a), _lead(b)) for a, b in zip(segments, segments[1:], strict=False) if a.strip() and b.strip()
    )
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
    for index, (segment, action) in enumerate(zip(segments, actions, strict=True)):
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
    return ",".join(segments[:last] + [segment.rstrip() + before] + tail + segments[last + 1 :])


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
    for slot, text in zip(slots, texts, strict=True):
        out[slot] = _lead(segments[slot]) + text + _trail(segments[slot])
    return ",".join(out)
