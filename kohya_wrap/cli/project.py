"""Project commands: init, check, plan, export. Each calls its core and renders what it returns; heavy
imports happen inside the command bodies."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kohya_wrap.cli.base import print_findings, project_dir_argument, set_option
from kohya_wrap.cli.output import echo, echo_json
from kohya_wrap.errors import ExitCode, shown

if TYPE_CHECKING:
    from kohya_wrap.check import CheckReport
    from kohya_wrap.plan import TrainingPlan


@click.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option(
    "--preset", default=None, help="Preset to extend (default: sd15-character; see `kohya-wrap presets list`)."
)
@click.option("--token", help="Trigger word the LoRA learns, e.g. mytoken.")
@click.option("--class", "class_", default="", help="Class word, e.g. woman, man, dog, style.")
@click.option(
    "--repeats",
    default=10,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Times each image is seen per epoch.",
)
@click.option(
    "--images",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of photos: remembered as the concept's source and prepared into the project (never changed).",
)
@click.option("--no-prep", is_flag=True, help="Copy the --images photos verbatim instead of preparing them.")
@click.option(
    "--base-model", help="Base model file, diffusers folder or hf://owner/repo[/file] (default: the preset's)."
)
@click.option("--name", help="LoRA output name (default: <token>_v1).")
@click.option(
    "--from-kohya-ss",
    "from_kohya_ss",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Start from a kohya_ss GUI JSON config.",
)
@click.option(
    "--force", is_flag=True, help="Rewrite an existing kohya-wrap.toml (the old one is kept as kohya-wrap.toml.bak)."
)
@set_option
def init(
    directory: Path, preset, token, class_, repeats, images, no_prep, base_model, name, from_kohya_ss, force, overrides
) -> int:
    """Create a project: kohya-wrap.toml, the kohya folder tree, and (with --images) the photos, prepared
    for training (`kohya-wrap prep`) unless --no-prep."""
    from kohya_wrap.cli.prep import print_reports
    from kohya_wrap.cli.progress import ImageProgress
    from kohya_wrap.init import InitOptions, init_project

    options = InitOptions(
        preset, token, class_, repeats, images, base_model, name, from_kohya_ss, force, overrides, no_prep
    )
    result = init_project(
        directory, options, progress=lambda label, total: ImageProgress.for_output("prep", label, total, False)
    )
    layout = result.loaded.layout
    for note in result.notes:
        echo(f"  kohya_ss: {note}", style="yellow")
    if result.wrote_spec:
        echo(f"wrote {layout.spec_file}")
    else:
        echo(f"kept the existing {layout.spec_file} (--force rewrites it)")
        if result.ignored_options:
            echo("  the spec options given were not applied; edit the spec or pass --force", style="yellow")
    print_reports(result.prepared, layout.root)
    for item in result.imports:
        folder = item.folder.relative_to(layout.root)
        if item.result is None:
            echo(f"  {folder}: its source {item.missing_source} is gone; nothing imported", style="yellow")
            continue
        imported = item.result
        echo(
            f"{folder}: {imported.copied} image(s) and {imported.captions} caption(s) copied, {imported.unchanged} "
            "already there"
        )
        for path in imported.conflicts:
            echo(f"  kept {path.name}: a different file with that name is already in the folder", style="yellow")
        if imported.unsupported:
            echo(
                f"  skipped {len(imported.unsupported)} image(s) sd-scripts cannot read (e.g. "
                f"{imported.unsupported[0].name}); convert them to PNG or JPEG",
                style="yellow",
            )
    echo(f"next: kohya-wrap check {shlex.quote(str(directory))}   then   kohya-wrap plan {shlex.quote(str(directory))}")
    return ExitCode.OK


# ---------------------------------------------------------------------------------------------- check


def _report_dict(report: "CheckReport") -> dict[str, Any]:
    return {
        "spec": str(report.loaded.layout.spec_file),
        "ok": not report.errors,
        "concepts": [
            {
                "label": c.concept.label,
                "folder": str(c.folder),
                "images": len(c.scan.images),
                "is_reg": c.concept.is_reg,
            }
            for c in report.concepts
        ],
        "findings": [f.as_dict() for f in report.findings],
    }


@click.command()
@project_dir_argument
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@set_option
def check(directory: Path, as_json: bool, overrides: tuple[str, ...]) -> int:
    """Validate the spec, concept folders, images, captions, model and output folder."""
    from kohya_wrap.check import check_project
    from kohya_wrap.spec.load import load_project

    report = check_project(load_project(directory, overrides))
    if as_json:
        echo_json(_report_dict(report))
    else:
        spec = report.loaded.spec
        echo(f"{report.loaded.layout.spec_file}: {spec.name} · {spec.model.family} · {report.loaded.schema.source}")
        for item in report.concepts:
            echo(f"  {item.folder.relative_to(report.loaded.layout.root)}: {len(item.scan.images)} image(s)")
        print_findings(report.findings)
        errors = len(report.errors)
        warnings = sum(f.severity == "warning" for f in report.findings)
        if errors:
            echo(f"{errors} error(s), {warnings} warning(s)", style="bold red")
        else:
            echo(f"ok: no errors, {warnings} warning(s)", style="bold green")
    return ExitCode.USAGE if report.errors else ExitCode.OK


# ---------------------------------------------------------------------------------------------- plan


def _print_plan(plan: "TrainingPlan", written: list[Path], root: Path) -> None:
    from kohya_wrap.launch.command import command_line

    math = plan.math
    echo(f"{plan.name}: {plan.script} · {plan.schema_source}", style="bold")
    width = max(len(str(c.folder.relative_to(root))) for c in plan.concepts)
    for c in plan.concepts:
        kind = " (reg)" if c.is_reg else ""
        folder = str(c.folder.relative_to(root))
        echo(f"  {folder:<{width}}  {c.images:>5} images × {c.repeats:>4} repeats = {c.images * c.repeats:>6}{kind}")
    echo(
        f"  train images × repeats: {math.train_images_x_repeats}"
        + (f" · reg images × repeats: {math.reg_images_x_repeats}" if math.reg_images_x_repeats else "")
    )
    if plan.bucket.enable_bucket:
        buckets = ", ".join(f"{b.resolution[0]}×{b.resolution[1]}: {b.samples}" for b in math.buckets)
        echo(f"  buckets ({len(math.buckets)}): {buckets}")
    echo(
        f"  batch {plan.batch_size} → {math.batches_per_epoch} batches/epoch"
        + (f" per process ({plan.num_processes} processes)" if plan.num_processes > 1 else "")
        + (
            f", gradient accumulation {plan.gradient_accumulation_steps}"
            if plan.gradient_accumulation_steps > 1
            else ""
        )
        + f" → {math.steps_per_epoch} steps/epoch"
    )
    echo(f"  {math.epochs} epoch(s) → {math.total_steps} total optimization steps", style="bold")
    head, tail = plan.checkpoints.shown(3, 2)  # every name up to 6, else the first 3, …, the last 2
    listing = ", ".join([*head, "…", *tail] if tail else head)
    echo(f"  checkpoints ({len(plan.checkpoints)}): {listing}")
    for note in plan.notes:
        echo(f"  note: {note}", style="cyan")
    echo("configs: " + ", ".join(str(p.relative_to(root)) for p in written))
    echo("command:")
    echo(f"  {command_line(list(plan.command))}")


def checked_plan(
    directory: Path, overrides: tuple[str, ...], as_json: bool, purpose: str
) -> tuple["CheckReport", "TrainingPlan", list[Path]]:
    """The core's checked plan; when check finds errors, they are shown (as text or JSON) before the error."""
    from kohya_wrap.plan import CheckFailed
    from kohya_wrap.plan import checked_plan as core

    try:
        return core(directory, overrides, purpose)
    except CheckFailed as failed:
        if as_json:
            echo_json(_report_dict(failed.report))
        else:
            print_findings(failed.findings)
        raise


@click.command()
@project_dir_argument
@click.option("--json", "as_json", is_flag=True, help="Print the plan as one JSON object.")
@set_option
def plan(directory: Path, as_json: bool, overrides: tuple[str, ...]) -> int:
    """Render config/train.toml and config/dataset.toml; show the step math and the launch command."""
    report, training_plan, written = checked_plan(directory, overrides, as_json, "planning")
    if as_json:
        echo_json(training_plan.as_dict(written))
    else:
        _print_plan(training_plan, written, report.loaded.layout.root)
    return ExitCode.OK


# ---------------------------------------------------------------------------------------------- export


@click.command()
@project_dir_argument
@click.option(
    "--kohya-ss",
    "kohya_ss_out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a kohya_ss GUI JSON config here.",
)
@set_option
def export(directory: Path, kohya_ss_out: Path, overrides: tuple[str, ...]) -> int:
    """Write the project as a kohya_ss GUI config (its "Open config" loads it)."""
    from kohya_wrap.fsutil import write_text_atomic
    from kohya_wrap.interop.kohya_ss import kohya_ss_from_spec
    from kohya_wrap.spec.load import load_project

    loaded = load_project(directory, overrides)
    spec_dict = loaded.spec.model_dump(by_alias=True, exclude_none=True)
    gui, unmapped = kohya_ss_from_spec(spec_dict, project_dir=str(loaded.layout.root))
    write_text_atomic(kohya_ss_out.expanduser().absolute(), json.dumps(gui, ensure_ascii=False, indent=2) + "\n")
    echo(f"wrote {kohya_ss_out}")
    for item in unmapped:
        echo(f"  not in the GUI: {item.key} = {shown(item.value)} ({item.reason})", style="yellow")
    return ExitCode.OK
