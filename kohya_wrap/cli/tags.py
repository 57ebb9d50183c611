"""`kohya-wrap tags …`: caption statistics and tag edits (add, remove, replace, dedupe, prune, trigger,
sort) that keep every other byte of a caption, with a snapshot before each edit and `tags undo`.

Each command parses its arguments, calls its core in `kohya_wrap.tags` and prints the result (text or
--json); the core is imported inside the command so `kohya-wrap --help` stays fast."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kohya_wrap.cli.base import print_error, project_dir_argument, set_option
from kohya_wrap.cli.output import echo, echo_json
from kohya_wrap.errors import ExitCode

if TYPE_CHECKING:
    from kohya_wrap.spec.load import LoadedSpec
    from kohya_wrap.tags import TagEdit


@click.group()
def tags() -> None:
    """Caption tags: statistics, add/remove/replace/dedupe/prune/sort, the trigger word first, undo.

    \b
    A caption is a list of comma-separated items per line; everything else in the file (BOM, line
    endings, spacing, other items) is kept byte for byte. Each edit saves the old files first:
    `kohya-wrap tags undo` puts them back. DIR may be left out inside the project folder.
    """


def _concept_option(func):
    return click.option(
        "--concept",
        "concept_name",
        metavar="NAME",
        help="Only this concept (its token, or class for regularization concepts).",
    )(func)


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


def _load(directory: Path, overrides: tuple[str, ...]) -> "LoadedSpec":
    from kohya_wrap.spec.load import load_project

    return load_project(directory, overrides)


# ---------------------------------------------------------------------------------------------- editing


def _short(text: str, limit: int = 90) -> str:
    text = text.replace("\t", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _run_edit(
    edit: "TagEdit", directory: Path, concept_name: str | None, overrides: tuple[str, ...], dry_run: bool, as_json: bool
) -> int:
    from kohya_wrap.tags import EditInterrupted, edit_captions

    loaded = _load(directory, overrides)
    try:
        result = edit_captions(loaded, edit, concept_name, dry_run, _command_line())
    except EditInterrupted as exc:
        rewritten = f"interrupted after rewriting {exc.written} of {exc.total} caption file(s)"
        undo = f"kohya-wrap tags undo {shlex.quote(str(directory))}"
        print_error(
            [
                f"{rewritten}; each file is either old or new",
                f"`{undo}` puts back the old ones (snapshot {exc.snapshot})",
            ]
        )
        return ExitCode.INTERRUPTED
    if as_json:
        echo_json(result.as_dict())
        return ExitCode.OK
    if dry_run:
        echo("dry run — nothing written", style="bold")
    verb = "would change" if dry_run else "changed"
    left = set(result.left)
    for plan in result.plans:
        created = f" ({plan.created} created)" if plan.created else ""
        echo(
            f"{plan.label} · {plan.folder}: {sum(c.rel not in left for c in plan.changes)} file(s) {verb}{created}, "
            f"{plan.added} item(s) added, {plan.removed} removed"
        )
        for path, why in plan.unreadable:
            echo(f"  {path}: {why}", style="yellow")
        if plan.missing:
            more = f" and {len(plan.missing) - 5} more" if len(plan.missing) > 5 else ""
            names = ", ".join(Path(m).name for m in plan.missing[:5]) + more
            hint = " (--create gives them one)" if edit.fill is not None else ""
            echo(f"  {len(plan.missing)} image(s) have no caption file, left without one{hint}: {names}")
        if dry_run:
            for change in plan.examples:
                before, after = change.example
                shown = _short(before) if change.before is not None else "(new file)"
                echo(f"  {Path(change.rel).name}: {shown} → {_short(after)}")
    for line in result.warnings:
        echo(f"warning: {line}", style="yellow")
    if result.left:
        more = f" and {len(result.left) - 5} more" if len(result.left) > 5 else ""
        echo(
            f"warning: {len(result.left)} caption file(s) changed by another program after they were read, left as "
            f"they are (run the edit again to edit them): {', '.join(Path(p).name for p in result.left[:5])}{more}",
            style="yellow",
        )
    if result.snapshot:
        echo(f"snapshot {result.snapshot} — `kohya-wrap tags undo` reverts it")
    elif not dry_run:
        echo("nothing to change")
    return ExitCode.OK


@tags.command("add")
@click.argument("args", nargs=-1, required=True, metavar="[DIR] TAG...")
@click.option("--front/--back", default=False, help="Insert at the front or after the last item (default: --back).")
@click.option("--create", is_flag=True, help="Also give images without a caption file one holding these tags.")
@_edit_options
def tags_add(
    args: tuple[str, ...],
    front: bool,
    create: bool,
    concept_name: str | None,
    dry_run: bool,
    as_json: bool,
    overrides: tuple[str, ...],
) -> int:
    """Add tags to every caption line that lacks them (an empty caption gets them as its only items)."""
    from kohya_wrap.tags import add_tags

    directory, values = _split_dir(args, None, "TAG...")
    return _run_edit(add_tags(values, front, create), directory, concept_name, overrides, dry_run, as_json)


@tags.command("remove")
@click.argument("args", nargs=-1, required=True, metavar="[DIR] TAG...")
@click.option("--regex", is_flag=True, help="Each TAG is a regular expression that must match a whole tag.")
@_edit_options
def tags_remove(
    args: tuple[str, ...],
    regex: bool,
    concept_name: str | None,
    dry_run: bool,
    as_json: bool,
    overrides: tuple[str, ...],
) -> int:
    """Remove tags (exact match of the trimmed tag, inner spaces collapsed; or --regex)."""
    from kohya_wrap.tags import remove_tags

    directory, values = _split_dir(args, None, "TAG...")
    return _run_edit(remove_tags(values, regex), directory, concept_name, overrides, dry_run, as_json)


@tags.command("replace")
@click.argument("args", nargs=-1, required=True, metavar="[DIR] OLD NEW")
@click.option(
    "--regex", is_flag=True, help="OLD is a regular expression matching a whole tag; NEW may use \\1 or \\g<name>."
)
@_edit_options
def tags_replace(
    args: tuple[str, ...],
    regex: bool,
    concept_name: str | None,
    dry_run: bool,
    as_json: bool,
    overrides: tuple[str, ...],
) -> int:
    """Replace a tag with another (an empty NEW removes it)."""
    from kohya_wrap.tags import replace_tag

    directory, (old, new) = _split_dir(args, 2, "OLD NEW")
    return _run_edit(replace_tag(old, new, regex), directory, concept_name, overrides, dry_run, as_json)


@tags.command("dedupe")
@project_dir_argument
@_edit_options
def tags_dedupe(
    directory: Path, concept_name: str | None, dry_run: bool, as_json: bool, overrides: tuple[str, ...]
) -> int:
    """Drop later repeats of a tag within each caption line."""
    from kohya_wrap.tags import dedupe_tags

    return _run_edit(dedupe_tags(), directory, concept_name, overrides, dry_run, as_json)


@tags.command("prune")
@project_dir_argument
@click.option(
    "--min-count",
    type=int,
    required=True,
    metavar="N",
    help="Drop tags found in fewer than N captions of the selection.",
)
@_edit_options
def tags_prune(
    directory: Path, min_count: int, concept_name: str | None, dry_run: bool, as_json: bool, overrides: tuple[str, ...]
) -> int:
    """Drop rare tags (never a trigger token). Counts are over the chosen concepts' captions."""
    from kohya_wrap.tags import prune_tags

    return _run_edit(prune_tags(min_count), directory, concept_name, overrides, dry_run, as_json)


@tags.command("trigger")
@click.argument("args", nargs=-1, required=True, metavar="[DIR] WORD")
@click.option("--create", is_flag=True, help="Also give images without a caption file one holding WORD.")
@_edit_options
def tags_trigger(
    args: tuple[str, ...],
    create: bool,
    concept_name: str | None,
    dry_run: bool,
    as_json: bool,
    overrides: tuple[str, ...],
) -> int:
    """Make WORD the first item of every caption line (other occurrences removed). Regularization
    concepts are left out: their captions must not carry your trigger word."""
    from kohya_wrap.tags import trigger_tag

    directory, (word,) = _split_dir(args, 1, "WORD")
    return _run_edit(trigger_tag(word, create), directory, concept_name, overrides, dry_run, as_json)


@tags.command("sort")
@project_dir_argument
@click.option(
    "--by",
    type=click.Choice(["frequency", "alpha"]),
    default="frequency",
    show_default=True,
    help="frequency: most common over the selection first (ties alphabetical); alpha: alphabetical.",
)
@_edit_options
def tags_sort(
    directory: Path, by: str, concept_name: str | None, dry_run: bool, as_json: bool, overrides: tuple[str, ...]
) -> int:
    """Sort each caption line's items; the first keep_tokens items (and a leading trigger token) stay in place."""
    from kohya_wrap.tags import sort_tags

    return _run_edit(sort_tags(by), directory, concept_name, overrides, dry_run, as_json)


# ---------------------------------------------------------------------------------------------- stats and undo


@tags.command("stats")
@project_dir_argument
@_concept_option
@click.option(
    "--top",
    type=click.IntRange(0),
    default=30,
    show_default=True,
    metavar="N",
    help="Show the N most common tags (0: all).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as one JSON object.")
@set_option
def tags_stats(directory: Path, concept_name: str | None, top: int, as_json: bool, overrides: tuple[str, ...]) -> int:
    """Tag frequencies (captions containing each tag), images without a caption, captions without the trigger token."""
    from kohya_wrap.tags import tag_stats

    stats = tag_stats(_load(directory, overrides), concept_name, top)
    if as_json:
        echo_json(stats.as_dict())
        return ExitCode.OK

    def names(paths: list[str]) -> str:
        return ", ".join(Path(p).name for p in paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")

    for c in stats.concepts:
        kind = " (regularization)" if c.is_reg else ""
        echo(f"{c.label}{kind} · {c.folder}: {c.images} image(s), {c.captions} caption file(s)", style="bold")
        if c.missing_caption:
            echo(f"  {len(c.missing_caption)} image(s) without a caption file: {names(c.missing_caption)}")
        for path, why in c.unreadable:
            echo(f"  {path}: {why}", style="yellow")
        if c.empty:
            echo(f"  {len(c.empty)} empty caption(s): {names(c.empty)}")
        if c.missing_trigger:
            echo(
                f'  {len(c.missing_trigger)} caption(s) without the trigger token "{c.token}": '
                f"{names(c.missing_trigger)}"
            )
        if c.trigger_not_first:
            echo(
                f'  {len(c.trigger_not_first)} caption(s) with "{c.token}" not as the first item: '
                f"{names(c.trigger_not_first)}"
            )
    shown = stats.tags
    echo(
        f"{stats.distinct_tags} distinct tag(s) in {stats.captions} caption(s)"
        + (f"; the {len(shown)} most common:" if shown else "")
    )
    width = len(str(shown[0][1])) if shown else 1
    for tag, count in shown:
        share = f"{100 * count / stats.captions:.0f}%" if stats.captions else "-"
        echo(f"  {count:>{width}}  {share:>4}  {tag}")
    return ExitCode.OK


@tags.command("undo")
@project_dir_argument
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def tags_undo(directory: Path, as_json: bool) -> int:
    """Undo the most recent tag edit: every file back byte for byte, created files deleted. Repeat to go
    further back."""
    from kohya_wrap.paths import ProjectLayout
    from kohya_wrap.spec.load import find_spec_file
    from kohya_wrap.tags import undo

    result = undo(ProjectLayout.at(find_spec_file(directory).parent).root)
    if as_json:
        echo_json(result.as_dict())
        return ExitCode.OK
    deleted = f", {len(result.deleted)} created file(s) deleted" if result.deleted else ""
    echo(f"undid {result.id} ({result.command}): {len(result.restored)} file(s) restored{deleted}")
    if result.untouched:
        echo(f"  {len(result.untouched)} file(s) the edit had not rewritten yet (it was stopped) were left as they are")
    if result.temporaries:
        echo(f"  removed {result.temporaries} temporary file(s) the stopped edit had left")
    if result.changed_since:
        echo(
            f"  {len(result.changed_since)} of them had been edited since; those edits are gone too: "
            + ", ".join(Path(p).name for p in result.changed_since[:5]),
            style="yellow",
        )
    echo(f"{result.remaining} earlier edit(s) can still be undone" if result.remaining else "no earlier edits to undo")
    return ExitCode.OK
