"""Tag edits as data: plan what an edit changes in each chosen concept (nothing written), then, holding
the project's dataset lock from reading the captions to the last rewrite, snapshot and apply it.
`edit_captions` is the core of every editing `tags` command; the CLI only parses and prints.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.fsutil import dataset_lock
from kohya_wrap.paths import relative
from kohya_wrap.tags.captions import Caption, ConceptCaptions, key_diff, load_concepts
from kohya_wrap.tags.history import apply_changes

if TYPE_CHECKING:
    from kohya_wrap.spec.load import LoadedSpec

EXAMPLES = 3  # before → after lines shown per concept (--dry-run, --json)

LineEditFor = Callable[[ConceptCaptions], Callable[[str], str]]  # a concept → the edit of one caption line


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

    @property
    def examples(self) -> list[Change]:
        return self.changes[:EXAMPLES]

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "folder": self.folder,
            "files_changed": len(self.changes),
            "created": self.created,
            "items_added": self.added,
            "items_removed": self.removed,
            "changed": [c.rel for c in self.changes],
            "unreadable": [{"file": p, "reason": why} for p, why in self.unreadable],
            "missing_caption": self.missing,
            "examples": [
                {"file": c.rel, "before": c.example[0] if c.before is not None else None, "after": c.example[1]}
                for c in self.examples
            ],
        }


def _example(before: Caption | None, after: Caption) -> tuple[str, str]:
    old_lines = before.lines if before is not None else []
    for n, line in enumerate(after.lines):
        old = old_lines[n] if n < len(old_lines) else ""
        if line != old:
            return old, line
    return "", ""


def _new_file_mode() -> int:
    """What a plain `open(path, "w")` would give a new file under the current umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def plan_edit(
    root: Path,
    concepts: list[ConceptCaptions],
    edit_for: LineEditFor,
    fill: list[str] | None = None,
    create: bool = False,
) -> list[ConceptPlan]:
    """What an edit would change, per concept; nothing is written. `fill`: the items an empty caption
    gets; with `create`, images without a caption get a new file holding them."""
    plans = []
    seen: set[Path] = set()
    for concept in concepts:
        plan = ConceptPlan(concept.label, relative(concept.folder, root))
        edit = edit_for(concept)
        for item in concept.files:
            if item.path in seen:
                continue
            seen.add(item.path)
            if item.error is not None:
                plan.unreadable.append((relative(item.path, root), item.error))
                continue
            if item.caption is None:
                if create and fill:
                    after = Caption([", ".join(fill)], [""])
                    added, removed = key_diff(None, after)
                    plan.changes.append(
                        Change(
                            item.path,
                            relative(item.path, root),
                            None,
                            after.encode(),
                            0,
                            _new_file_mode(),
                            added,
                            removed,
                            ("", after.lines[0]),
                        )
                    )
                else:
                    plan.missing.append(relative(item.image, root))
                continue
            after = item.caption.edited(edit, fill)
            data = after.encode()
            if data == item.data:
                continue
            added, removed = key_diff(item.caption, after)
            plan.changes.append(
                Change(
                    item.path,
                    relative(item.path, root),
                    item.data,
                    data,
                    item.mtime_ns,
                    item.mode,
                    added,
                    removed,
                    _example(item.caption, after),
                )
            )
        plans.append(plan)
    return plans


@dataclass(frozen=True)
class TagEdit:
    """What one editing command does (see `tags.commands`): `make` sees the chosen concepts (for counts
    over all of them) and gives each concept's line edit; `fill` is what an empty caption gets (and,
    with `create`, an image without a caption file); `skip_reg` leaves regularization concepts out;
    `notes` warns about the settings the edit meets."""

    command: str  # add, remove, …: names the snapshot and the lock's hint
    make: Callable[[list[ConceptCaptions]], LineEditFor]
    fill: list[str] | None = None
    create: bool = False
    skip_reg: bool = False
    notes: Callable[[list[ConceptCaptions]], list[str]] | None = None


@dataclass
class EditResult:
    command: str
    dry_run: bool
    plans: list[ConceptPlan]
    warnings: list[str]
    snapshot: str | None = None  # the snapshot `tags undo` restores; None: dry run, or nothing changed
    left: list[str] = field(default_factory=list)  # changed by another program after they were read: not rewritten

    @property
    def changes(self) -> list[Change]:
        return [c for p in self.plans for c in p.changes]

    def as_dict(self) -> dict[str, Any]:
        """What an editing command prints with --json."""
        return {
            "command": self.command,
            "dry_run": self.dry_run,
            "snapshot": self.snapshot,
            "warnings": self.warnings,
            "files_changed": len(self.changes) - len(self.left),
            "changed_meanwhile": self.left,
            "concepts": [p.as_dict() for p in self.plans],
        }


def _chosen(loaded: "LoadedSpec", concept_name: str | None, skip_reg: bool) -> list[ConceptCaptions]:
    concepts = load_concepts(loaded, concept_name)
    if not skip_reg:
        return concepts
    if concept_name is not None and all(c.is_reg for c in concepts):
        raise KohyaWrapError(
            f"--concept {concept_name} is a regularization concept: "
            "its captions show the class without your trigger word",
            "run it on your own concept instead",
        )
    return [c for c in concepts if not c.is_reg]


def edit_captions(
    loaded: "LoadedSpec",
    edit: TagEdit,
    concept_name: str | None = None,
    dry_run: bool = False,
    command_line: str | None = None,
) -> EditResult:
    """Plan `edit` over the chosen concepts (all without a name) and, unless `dry_run`, snapshot and
    rewrite the captions that change, all under the project's dataset lock (a KohyaWrapError at once
    when another command holds it). A caption another program changed after it was read is left as it
    is (`result.left`). `command_line` is what the snapshot records. Ctrl-C while rewriting raises
    `EditInterrupted` (the snapshot is complete: `undo` puts the old files back)."""
    root = loaded.layout.root
    with nullcontext() if dry_run else dataset_lock(root, f"tags {edit.command}"):
        concepts = _chosen(loaded, concept_name, edit.skip_reg)
        plans = plan_edit(root, concepts, edit.make(concepts), edit.fill, edit.create)
        result = EditResult(edit.command, dry_run, plans, edit.notes(concepts) if edit.notes else [])
        if not dry_run:
            applied = apply_changes(
                root, result.changes, edit.command, command_line or f"kohya-wrap tags {edit.command}"
            )
            result.snapshot, result.left = applied.snapshot, applied.left
    return result
