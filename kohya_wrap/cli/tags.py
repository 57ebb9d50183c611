"""`kohya-wrap tags …`: caption statistics and tag edits (add, remove, replace, dedupe, prune, trigger,
sort) that keep every other byte of a caption, with a snapshot before each edit and `tags undo`."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click

from kohya_wrap.cli.base import project_dir_argument, set_option
from kohya_wrap.cli.output import echo, echo_json
from kohya_wrap.errors import ExitCode, KohyaWrapError

if TYPE_CHECKING:
    from kohya_wrap.tags import ConceptCaptions, ConceptPlan

EXAMPLES = 3  # before → after lines shown per concept by --dry-run


@click.group()
def tags() -> None:
    """Caption tags: statistics, add/remove/replace/dedupe/prune/sort, the trigger word first, undo.

    \b
    A caption is a list of comma-separated items per line; everything else in the file (BOM, line
    endings, spacing, other items) is kept byte for byte. Each edit saves the old files first:
    `kohya-wrap tags undo` puts them back. DIR may be left out inside the project folder.
    """


def _concept_option(func):
    return click.option("--concept", "concept_name", metavar="NAME",
                        help="Only this concept (its token, or class for regularization concepts).")(func)


def _edit_options(func):
    func = set_option(func)
    func = click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")(func)
    func = click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")(func)
    return _concept_option(func)


# ---------------------------------------------------------------------------------------------- arguments


def _is_project(arg: str) -> bool:
    from kohya_wrap.paths import SPEC_FILENAME

    path = Path(arg).expanduser()
    return (path.is_dir() and (path / SPEC_FILENAME).is_file()) or (path.is_file() and path.suffix == ".toml")


def _split_dir(args: tuple[str, ...], needed: int | None, what: str) -> tuple[Path, list[str]]:
    """[DIR] then the command's own arguments: `needed` of them, or (None) one or more, where DIR is
    the first argument when it is a project folder (or its spec file)."""
    if needed is not None:
        if len(args) == needed and _is_project(args[0]):
            raise click.UsageError(f"{args[0]} is the project folder: give the {what} after it")
        if len(args) == needed:
            return Path("."), list(args)
        if len(args) == needed + 1:
            return Path(args[0]), list(args[1:])
        raise click.UsageError(f"expected [DIR] {what}, got {len(args)} argument(s)")
    if len(args) >= 2 and _is_project(args[0]):
        return Path(args[0]), list(args[1:])
    if len(args) == 1 and _is_project(args[0]):
        raise click.UsageError(f"{args[0]} is the project folder: give the {what} after it")
    return Path("."), list(args)


def _tag_args(values: list[str]) -> list[str]:
    from kohya_wrap.tags import item_key

    found = []
    for value in values:
        key = item_key(value)
        if not key:
            raise KohyaWrapError(f"tag {value!r} is empty", "give the tag text, e.g. \"white background\"")
        if "," in key:
            raise KohyaWrapError(f"tag {value!r} contains a comma, which separates tags", "pass each tag as its own argument")
        if key not in found:
            found.append(key)
    return found


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise KohyaWrapError(f"--regex: {pattern!r} is not a valid regular expression ({exc})",
                             "check the pattern; it must match a whole tag, e.g. \".* hair\"") from None


def _command_line() -> str:
    """The command as typed (normalised): what the snapshot records."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    parts = ctx.command_path.split()
    for param in ctx.command.params:
        name = param.name or ""
        value = ctx.params.get(name)
        if isinstance(param, click.Argument):
            parts.extend(str(v) for v in (value if isinstance(value, (tuple, list)) else [value]))
        elif isinstance(param, click.Option) and ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None):
            if param.is_flag:
                parts.append((param.opts if value else param.secondary_opts or param.opts)[0])
            elif param.multiple:
                for v in value or ():
                    parts.extend([param.opts[0], str(v)])
            else:
                parts.extend([param.opts[0], str(value)])
    return shlex.join(parts)


# ---------------------------------------------------------------------------------------------- editing


def _load(directory: Path, concept_name: str | None, overrides: tuple[str, ...], skip_reg: bool = False):
    from kohya_wrap.spec.load import load_project
    from kohya_wrap.tags import load_concepts

    loaded = load_project(directory, overrides)
    concepts = load_concepts(loaded, concept_name)
    if skip_reg:
        if concept_name is not None and all(c.is_reg for c in concepts):
            raise KohyaWrapError(f"--concept {concept_name} is a regularization concept: its captions show the class without your trigger word",
                                 "run it on your own concept instead")
        concepts = [c for c in concepts if not c.is_reg]
    return loaded, concepts


def _short(text: str, limit: int = 90) -> str:
    text = text.replace("\t", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _run_edit(command: str, directory: Path, concept_name: str | None, overrides: tuple[str, ...], dry_run: bool, as_json: bool,
              make_edit: Callable[[list["ConceptCaptions"]], Callable[["ConceptCaptions"], Callable[[str], str]]],
              fill: list[str] | None = None, create: bool = False, skip_reg: bool = False,
              notes: Callable[[list["ConceptCaptions"]], list[str]] | None = None) -> int:
    from kohya_wrap.tags import EditInterrupted, apply_changes, plan_edit

    loaded, concepts = _load(directory, concept_name, overrides, skip_reg)
    root = loaded.layout.root
    plans = plan_edit(root, concepts, make_edit(concepts), fill, create)
    changes = [c for p in plans for c in p.changes]
    warnings = notes(concepts) if notes else []
    snapshot = None
    if not dry_run:
        try:
            snapshot = apply_changes(root, changes, command, _command_line())
        except EditInterrupted as exc:
            from kohya_wrap.cli.base import print_error

            print_error([f"interrupted after rewriting {exc.written} of {len(changes)} caption file(s); each file is either old or new",
                          f"`kohya-wrap tags undo {shlex.quote(str(directory))}` puts back the old ones (snapshot {exc.snapshot})"])
            return ExitCode.INTERRUPTED
    if as_json:
        echo_json({"command": command, "dry_run": dry_run, "snapshot": snapshot, "warnings": warnings,
                   "files_changed": len(changes), "concepts": [_plan_dict(p) for p in plans]})
        return ExitCode.OK
    if dry_run:
        echo("dry run — nothing written", style="bold")
    verb = "would change" if dry_run else "changed"
    for plan in plans:
        created = f" ({plan.created} created)" if plan.created else ""
        echo(f"{plan.label} · {plan.folder}: {len(plan.changes)} file(s) {verb}{created}, {plan.added} item(s) added, {plan.removed} removed")
        for path, why in plan.unreadable:
            echo(f"  {path}: {why}", style="yellow")
        if plan.missing:
            names = ", ".join(Path(m).name for m in plan.missing[:5]) + (f" and {len(plan.missing) - 5} more" if len(plan.missing) > 5 else "")
            hint = " (--create gives them one)" if fill is not None else ""
            echo(f"  {len(plan.missing)} image(s) have no caption file, left without one{hint}: {names}")
        if dry_run:
            for change in plan.changes[:EXAMPLES]:
                before, after = change.example
                echo(f"  {Path(change.rel).name}: {_short(before) if change.before is not None else '(new file)'} → {_short(after)}")
    for line in warnings:
        echo(f"warning: {line}", style="yellow")
    if snapshot:
        echo(f"snapshot {snapshot} — `kohya-wrap tags undo` reverts it")
    elif not dry_run:
        echo("nothing to change")
    return ExitCode.OK


def _plan_dict(plan: "ConceptPlan") -> dict[str, Any]:
    return {"label": plan.label, "folder": plan.folder, "files_changed": len(plan.changes), "created": plan.created,
            "items_added": plan.added, "items_removed": plan.removed, "changed": [c.rel for c in plan.changes],
            "unreadable": [{"file": p, "reason": why} for p, why in plan.unreadable], "missing_caption": plan.missing,
            "examples": [{"file": c.rel, "before": c.example[0] if c.before is not None else None, "after": c.example[1]}
                         for c in plan.changes[:EXAMPLES]]}


def _same_for_all(edit: Callable[[str], str]):
    return lambda concepts: (lambda concept: edit)


@tags.command("add")
@click.argument("args", nargs=-1, required=True, metavar="[DIR] TAG...")
@click.option("--front/--back", default=False, help="Insert at the front or after the last item (default: --back).")
@click.option("--create", is_flag=True, help="Also give images without a caption file one holding these tags.")
@_edit_options
def tags_add(args: tuple[str, ...], front: bool, create: bool, concept_name: str | None, dry_run: bool, as_json: bool,
             overrides: tuple[str, ...]) -> int:
    """Add tags to every caption line that lacks them (an empty caption gets them as its only items)."""
    from kohya_wrap.tags import insert_items

    directory, values = _split_dir(args, None, "TAG...")
    new = _tag_args(values)
    return _run_edit("add", directory, concept_name, overrides, dry_run, as_json,
                     _same_for_all(lambda line: insert_items(line, new, front)), fill=new, create=create)


@tags.command("remove")
@click.argument("args", nargs=-1, required=True, metavar="[DIR] TAG...")
@click.option("--regex", is_flag=True, help="Each TAG is a regular expression that must match a whole tag.")
@_edit_options
def tags_remove(args: tuple[str, ...], regex: bool, concept_name: str | None, dry_run: bool, as_json: bool, overrides: tuple[str, ...]) -> int:
    """Remove tags (exact match of the trimmed tag, inner spaces collapsed; or --regex)."""
    from kohya_wrap.tags import item_key, remove_items

    directory, values = _split_dir(args, None, "TAG...")
    if regex:
        patterns = [_compile(v) for v in values]

        def drop(key: str) -> bool:
            return any(p.fullmatch(key) for p in patterns)
    else:
        wanted = {item_key(v) for v in values}

        def drop(key: str) -> bool:
            return key in wanted
    return _run_edit("remove", directory, concept_name, overrides, dry_run, as_json, _same_for_all(lambda line: remove_items(line, drop)))


@tags.command("replace")
@click.argument("args", nargs=-1, required=True, metavar="[DIR] OLD NEW")
@click.option("--regex", is_flag=True, help="OLD is a regular expression matching a whole tag; NEW may use \\1 or \\g<name>.")
@_edit_options
def tags_replace(args: tuple[str, ...], regex: bool, concept_name: str | None, dry_run: bool, as_json: bool, overrides: tuple[str, ...]) -> int:
    """Replace a tag with another (an empty NEW removes it)."""
    from kohya_wrap.tags import item_key, replace_items

    directory, (old, new) = _split_dir(args, 2, "OLD NEW")
    if "," in new:
        raise KohyaWrapError(f"NEW {new!r} contains a comma, which separates tags", "replace with one tag, then `kohya-wrap tags add` the others")
    if regex:
        pattern = _compile(old)

        def change(key: str) -> str | None:
            match = pattern.fullmatch(key)
            if match is None:
                return None
            try:
                return match.expand(new)
            except (re.error, IndexError) as exc:
                raise KohyaWrapError(f"NEW {new!r}: {exc}", "refer only to groups the pattern has, e.g. \\1") from None
    else:
        old_key = item_key(old)
        if not old_key:
            raise KohyaWrapError("OLD is empty", "give the tag to replace")

        def change(key: str) -> str | None:
            return new if key == old_key else None
    return _run_edit("replace", directory, concept_name, overrides, dry_run, as_json, _same_for_all(lambda line: replace_items(line, change)))


@tags.command("dedupe")
@project_dir_argument
@_edit_options
def tags_dedupe(directory: Path, concept_name: str | None, dry_run: bool, as_json: bool, overrides: tuple[str, ...]) -> int:
    """Drop later repeats of a tag within each caption line."""
    from kohya_wrap.tags import dedupe_items

    return _run_edit("dedupe", directory, concept_name, overrides, dry_run, as_json, _same_for_all(dedupe_items))


@tags.command("prune")
@project_dir_argument
@click.option("--min-count", type=int, required=True, metavar="N", help="Drop tags found in fewer than N captions of the selection.")
@_edit_options
def tags_prune(directory: Path, min_count: int, concept_name: str | None, dry_run: bool, as_json: bool, overrides: tuple[str, ...]) -> int:
    """Drop rare tags (never a trigger token). Counts are over the chosen concepts' captions."""
    from kohya_wrap.tags import remove_items, tag_counts

    if min_count < 1:
        raise KohyaWrapError(f"--min-count {min_count}: must be 1 or more", "e.g. --min-count 2 drops tags that only one caption has")

    def make(concepts):
        counts = tag_counts(concepts)
        protected = {c.token for c in concepts if c.token}
        edit = lambda line: remove_items(line, lambda key: key not in protected and counts[key] < min_count)  # noqa: E731
        return lambda concept: edit
    return _run_edit("prune", directory, concept_name, overrides, dry_run, as_json, make)


@tags.command("trigger")
@click.argument("args", nargs=-1, required=True, metavar="[DIR] WORD")
@click.option("--create", is_flag=True, help="Also give images without a caption file one holding WORD.")
@_edit_options
def tags_trigger(args: tuple[str, ...], create: bool, concept_name: str | None, dry_run: bool, as_json: bool, overrides: tuple[str, ...]) -> int:
    """Make WORD the first item of every caption line (other occurrences removed). Regularization
    concepts are left out: their captions must not carry your trigger word."""
    from kohya_wrap.tags import trigger_first

    directory, values = _split_dir(args, 1, "WORD")
    (word,) = _tag_args(values)

    def notes(concepts: list["ConceptCaptions"]) -> list[str]:
        found = []
        for c in concepts:
            if c.token and c.token != word:
                found.append(f"concept {c.label}: its token is \"{c.token}\", not \"{word}\"")
            if c.shuffle and c.keep_tokens < 1:
                found.append(f"concept {c.label}: shuffle_caption is on and keep_tokens is 0, so sd-scripts will shuffle "
                             f"\"{word}\" away from the front — set dataset.keep_tokens = 1")
        return found
    return _run_edit("trigger", directory, concept_name, overrides, dry_run, as_json,
                     _same_for_all(lambda line: trigger_first(line, word)), fill=[word], create=create, skip_reg=True, notes=notes)


@tags.command("sort")
@project_dir_argument
@click.option("--by", type=click.Choice(["frequency", "alpha"]), default="frequency", show_default=True,
              help="frequency: most common over the selection first (ties alphabetical); alpha: alphabetical.")
@_edit_options
def tags_sort(directory: Path, by: str, concept_name: str | None, dry_run: bool, as_json: bool, overrides: tuple[str, ...]) -> int:
    """Sort each caption line's items; the first keep_tokens items (and a leading trigger token) stay in place."""
    from kohya_wrap.tags import sort_items, tag_counts

    def make(concepts):
        counts = tag_counts(concepts)
        if by == "alpha":
            def key(k: str):
                return (k.casefold(), k)
        else:
            def key(k: str):
                return (-counts[k], k.casefold(), k)
        return lambda concept: (lambda line: sort_items(line, key, concept.keep_count(line)))

    def notes(concepts: list["ConceptCaptions"]) -> list[str]:
        return [f"concept {c.label}: shuffle_caption is on, so sd-scripts reorders the items after the first "
                f"{c.keep_tokens} at every step anyway" for c in concepts if c.shuffle]
    return _run_edit("sort", directory, concept_name, overrides, dry_run, as_json, make, notes=notes)


# ---------------------------------------------------------------------------------------------- stats and undo


@tags.command("stats")
@project_dir_argument
@_concept_option
@click.option("--top", type=click.IntRange(0), default=30, show_default=True, metavar="N", help="Show the N most common tags (0: all).")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as one JSON object.")
@set_option
def tags_stats(directory: Path, concept_name: str | None, top: int, as_json: bool, overrides: tuple[str, ...]) -> int:
    """Tag frequencies (captions containing each tag), images without a caption, captions without the trigger token."""
    from kohya_wrap.tags import line_keys, rel, tag_counts, token_pattern

    loaded, concepts = _load(directory, concept_name, overrides)
    root = loaded.layout.root
    entries = []
    for c in concepts:
        readable = c.readable
        lacking, not_first = None, None
        if c.token:
            pattern = token_pattern(c.token)
            lacking = [rel(root, f.path) for f in readable if not pattern.search(f.caption.text)]  # type: ignore[union-attr]
            not_first = [rel(root, f.path) for f in readable if pattern.search(f.caption.text)  # type: ignore[union-attr]
                         and any(line.strip() and line_keys(line)[0] != c.token for line in f.caption.lines)]  # type: ignore[union-attr]
        entries.append({
            "label": c.label, "folder": rel(root, c.folder), "is_reg": c.is_reg, "token": c.token, "images": len(c.files),
            "captions": sum(f.exists for f in c.files), "missing_caption": [rel(root, f.image) for f in c.missing],
            "unreadable": [{"file": rel(root, f.path), "reason": f.error} for f in c.unreadable],
            "empty": [rel(root, f.path) for f in readable if f.caption.is_empty],  # type: ignore[union-attr]
            "missing_trigger": lacking, "trigger_not_first": not_first})
    counts = tag_counts(concepts)
    readable_total = sum(len(c.readable) for c in concepts)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0].casefold(), kv[0]))
    shown = ranked if top == 0 else ranked[:top]
    if as_json:
        echo_json({"concepts": entries, "captions": readable_total, "distinct_tags": len(counts),
                   "tags": [{"tag": t, "count": n} for t, n in shown]})
        return ExitCode.OK

    def names(paths: list[str]) -> str:
        return ", ".join(Path(p).name for p in paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")

    for e in entries:
        kind = " (regularization)" if e["is_reg"] else ""
        echo(f"{e['label']}{kind} · {e['folder']}: {e['images']} image(s), {e['captions']} caption file(s)", style="bold")
        if e["missing_caption"]:
            echo(f"  {len(e['missing_caption'])} image(s) without a caption file: {names(e['missing_caption'])}")
        for bad in e["unreadable"]:
            echo(f"  {bad['file']}: {bad['reason']}", style="yellow")
        if e["empty"]:
            echo(f"  {len(e['empty'])} empty caption(s): {names(e['empty'])}")
        if e["missing_trigger"]:
            echo(f"  {len(e['missing_trigger'])} caption(s) without the trigger token \"{e['token']}\": {names(e['missing_trigger'])}")
        if e["trigger_not_first"]:
            echo(f"  {len(e['trigger_not_first'])} caption(s) with \"{e['token']}\" not as the first item: {names(e['trigger_not_first'])}")
    echo(f"{len(counts)} distinct tag(s) in {readable_total} caption(s)" + (f"; the {len(shown)} most common:" if shown else ""))
    width = len(str(shown[0][1])) if shown else 1
    for tag, count in shown:
        share = f"{100 * count / readable_total:.0f}%" if readable_total else "-"
        echo(f"  {count:>{width}}  {share:>4}  {tag}")
    return ExitCode.OK


@tags.command("undo")
@project_dir_argument
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def tags_undo(directory: Path, as_json: bool) -> int:
    """Undo the most recent tag edit: every file back byte for byte, created files deleted. Repeat to go further back."""
    from kohya_wrap.paths import ProjectLayout
    from kohya_wrap.spec.load import find_spec_file
    from kohya_wrap.tags import HISTORY_DIR, undo_last

    root = ProjectLayout.at(find_spec_file(directory).parent).root
    result = undo_last(root)
    if result is None:
        raise KohyaWrapError(f"nothing to undo: no tag edits recorded in {Path(*HISTORY_DIR)} of {root}",
                             "`kohya-wrap tags add/remove/replace/dedupe/prune/trigger/sort` record one each")
    if as_json:
        echo_json({"undone": result.id, "command": result.command, "restored": result.restored, "deleted": result.deleted,
                   "changed_since": result.changed_since, "remaining": result.remaining})
        return ExitCode.OK
    deleted = f", {len(result.deleted)} created file(s) deleted" if result.deleted else ""
    echo(f"undid {result.id} ({result.command}): {len(result.restored)} file(s) restored{deleted}")
    if result.changed_since:
        echo(f"  {len(result.changed_since)} of them had been edited since; those edits are gone too: "
             + ", ".join(Path(p).name for p in result.changed_since[:5]), style="yellow")
    echo(f"{result.remaining} earlier edit(s) can still be undone" if result.remaining else "no earlier edits to undo")
    return ExitCode.OK
