"""The edit behind each editing `tags` command (add, remove, replace, dedupe, prune, trigger, sort) as
a `TagEdit`, with the checks on its arguments, so Python callers get exactly what the CLI does:
`edit_captions(loaded, add_tags(["white background"]), dry_run=True)`.

A `--regex` is matched under a time limit (tags/pattern.py).
"""

from __future__ import annotations

from typing import Iterable

from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.tags.captions import ConceptCaptions, tag_counts
from kohya_wrap.tags.edit import LineEditFor, TagEdit
from kohya_wrap.tags.items import (
    dedupe_items,
    insert_items,
    item_key,
    remove_items,
    replace_items,
    sort_items,
    trigger_first,
)
from kohya_wrap.tags.pattern import TagPattern


def clean_tags(values: Iterable[str]) -> list[str]:
    """The tags given, as keys, repeats dropped; an empty one or one with a comma is an error."""
    found: list[str] = []
    for value in values:
        key = item_key(value)
        if not key:
            raise KohyaWrapError(f"tag {value!r} is empty", 'give the tag text, e.g. "white background"')
        if "," in key:
            raise KohyaWrapError(
                f"tag {value!r} contains a comma, which separates tags", "pass each tag as its own argument"
            )
        if key not in found:
            found.append(key)
    return found


def compile_pattern(pattern: str) -> TagPattern:
    return TagPattern(pattern)


def _same_for_all(edit):
    return lambda concepts: lambda concept: edit


def add_tags(values: Iterable[str], front: bool = False, create: bool = False) -> TagEdit:
    """Add tags to every caption line that lacks them (an empty caption gets them as its only items)."""
    new = clean_tags(values)
    return TagEdit("add", _same_for_all(lambda line: insert_items(line, new, front)), fill=new, create=create)


def remove_tags(values: Iterable[str], regex: bool = False) -> TagEdit:
    """Remove tags (exact match of the key; or each value a regular expression matching a whole tag)."""
    if regex:
        patterns = [compile_pattern(v) for v in values]

        def drop(key: str) -> bool:
            return any(p.fullmatch(key) for p in patterns)
    else:
        wanted = {item_key(v) for v in values}

        def drop(key: str) -> bool:
            return key in wanted

    return TagEdit("remove", _same_for_all(lambda line: remove_items(line, drop)))


def replace_tag(old: str, new: str, regex: bool = False) -> TagEdit:
    """Replace a tag with another (an empty `new` removes it); with `regex`, `new` may use \\1 or \\g<name>."""
    if "," in new:
        raise KohyaWrapError(
            f"NEW {new!r} contains a comma, which separates tags",
            "replace with one tag, then `kohya-wrap tags add` the others",
        )
    if regex:
        pattern = compile_pattern(old)

        def change(key: str) -> str | None:
            match = pattern.fullmatch(key)
            return None if match is None else pattern.expand(match, new)
    else:
        old_key = item_key(old)
        if not old_key:
            raise KohyaWrapError("OLD is empty", "give the tag to replace")

        def change(key: str) -> str | None:
            return new if key == old_key else None

    return TagEdit("replace", _same_for_all(lambda line: replace_items(line, change)))


def dedupe_tags() -> TagEdit:
    """Drop later repeats of a tag within each caption line."""
    return TagEdit("dedupe", _same_for_all(dedupe_items))


def prune_tags(min_count: int) -> TagEdit:
    """Drop tags found in fewer than `min_count` captions of the chosen concepts (never a trigger token)."""
    if min_count < 1:
        raise KohyaWrapError(
            f"--min-count {min_count}: must be 1 or more", "e.g. --min-count 2 drops tags that only one caption has"
        )

    def make(concepts: list[ConceptCaptions]) -> LineEditFor:
        counts = tag_counts(concepts)
        protected = {c.token for c in concepts if c.token}

        def edit(line: str) -> str:
            return remove_items(line, lambda key: key not in protected and counts[key] < min_count)

        return lambda concept: edit

    return TagEdit("prune", make)


def trigger_tag(word: str, create: bool = False) -> TagEdit:
    """`word` first in every caption line (other occurrences removed); regularization concepts are left
    out: their captions must not carry your trigger word."""
    (word,) = clean_tags([word])

    def notes(concepts: list[ConceptCaptions]) -> list[str]:
        found = []
        for c in concepts:
            if c.token and c.token != word:
                found.append(f'concept {c.label}: its token is "{c.token}", not "{word}"')
            if c.shuffle and c.keep_tokens < 1:
                found.append(
                    f"concept {c.label}: shuffle_caption is on and keep_tokens is 0, so sd-scripts will "
                    f'shuffle "{word}" away from the front — set dataset.keep_tokens = 1'
                )
        return found

    return TagEdit(
        "trigger",
        _same_for_all(lambda line: trigger_first(line, word)),
        fill=[word],
        create=create,
        skip_reg=True,
        notes=notes,
    )


SORT_ORDERS = ("frequency", "alpha")


def sort_tags(by: str = "frequency") -> TagEdit:
    """Sort each caption line's items (frequency: most common over the chosen concepts first, ties
    alphabetical; alpha: alphabetical); the items sd-scripts keeps in place when shuffling stay."""
    if by not in SORT_ORDERS:
        raise KohyaWrapError(f"--by {by}: unknown order", f"use one of: {', '.join(SORT_ORDERS)}")

    def make(concepts: list[ConceptCaptions]) -> LineEditFor:
        counts = tag_counts(concepts)
        if by == "alpha":

            def key(k: str):
                return (k.casefold(), k)
        else:

            def key(k: str):
                return (-counts[k], k.casefold(), k)

        return lambda concept: lambda line: sort_items(line, key, concept.keep_count(line))

    def notes(concepts: list[ConceptCaptions]) -> list[str]:
        return [
            f"concept {c.label}: shuffle_caption is on, so sd-scripts reorders the items after the first "
            f"{c.keep_tokens} at every step anyway"
            for c in concepts
            if c.shuffle
        ]

    return TagEdit("sort", make, notes=notes)
