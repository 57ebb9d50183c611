"""Project commands: init, check, plan, export, presets. Each gathers data from the library modules and
hands it to a renderer here; heavy imports happen inside the command bodies."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kohya_wrap.cli import cli, project_dir_argument, set_option
from kohya_wrap.cli.output import echo, echo_json
from kohya_wrap.errors import ExitCode, KohyaWrapError

if TYPE_CHECKING:
    from kohya_wrap.check import CheckReport
    from kohya_wrap.plan import TrainingPlan

SEVERITY_STYLE = {"error": ("✗", "red"), "warning": ("!", "yellow"), "info": ("·", "cyan")}


# ---------------------------------------------------------------------------------------------- init


def _default_name(token: str) -> str:
    ascii_token = re.sub(r"[^A-Za-z0-9._-]+", "_", token).strip("._-")
    return f"{ascii_token}_v1" if ascii_token else "my_lora"


def _concept(token: str | None, class_: str, repeats: int, images: Path | None) -> dict[str, Any]:
    if not token:
        raise KohyaWrapError("init needs --token (the trigger word the LoRA learns)", "e.g. --token mytoken --class woman")
    concept: dict[str, Any] = {"token": token, "class": class_, "repeats": repeats}
    if images is not None:
        concept["source"] = str(images.expanduser().absolute())
    return concept


def _user_spec_from_options(
    preset: str, token: str | None, class_: str, repeats: int, images: Path | None, base_model: str | None, name: str | None
) -> dict[str, Any]:
    concept = _concept(token, class_, repeats, images)
    data: dict[str, Any] = {"extends": preset, "name": name or _default_name(concept["token"])}
    if base_model:
        data["model"] = {"base": base_model}
    data["concepts"] = [concept]
    return data


def _user_spec_from_kohya_ss(path: Path, name: str | None, base_model: str | None, preset: str | None) -> dict[str, Any]:
    """The spec a GUI config describes; what does not map is reported as it is read."""
    from kohya_wrap.interop.kohya_ss import spec_from_kohya_ss

    try:
        gui = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KohyaWrapError(f"{path}: not a readable kohya_ss JSON config ({exc})", "export it again from the GUI's Save config") from None
    if not isinstance(gui, dict):
        raise KohyaWrapError(f"{path}: not a kohya_ss config (expected a JSON object)", "pass the file the GUI's Save config writes")

    def subfolders(folder: str) -> list[str]:
        directory = Path(folder).expanduser()
        return sorted(p.name for p in directory.iterdir() if p.is_dir()) if directory.is_dir() else []

    result = spec_from_kohya_ss(gui, subfolders=subfolders)
    for item in result.unmapped:
        echo(f"  kohya_ss: {item.key} = {item.value!r}: {item.reason}", style="yellow")
    for note in result.notes:
        echo(f"  kohya_ss: {note}", style="yellow")
    data = dict(result.spec)
    if preset:
        data["extends"] = preset
    if name:
        data["name"] = name
    if base_model:
        data.setdefault("model", {})["base"] = base_model
    return data


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--preset", default=None, help="Preset to extend (default: sd15-character; see `kohya-wrap presets list`).")
@click.option("--token", help="Trigger word the LoRA learns, e.g. mytoken.")
@click.option("--class", "class_", default="", help="Class word, e.g. woman, man, dog, style.")
@click.option("--repeats", default=10, show_default=True, type=click.IntRange(1, 10_000), help="Times each image is seen per epoch.")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder of photos to copy (never moved or edited).")
@click.option("--base-model", help="Base model file, diffusers folder or hf://owner/repo[/file] (default: the preset's).")
@click.option("--name", help="LoRA output name (default: <token>_v1).")
@click.option("--from-kohya-ss", "from_kohya_ss", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Start from a kohya_ss GUI JSON config.")
@click.option("--force", is_flag=True, help="Rewrite an existing kohya-wrap.toml (the old one is kept as kohya-wrap.toml.bak).")
@set_option
def init(directory: Path, preset, token, class_, repeats, images, base_model, name, from_kohya_ss, force, overrides) -> int:
    """Create a project: kohya-wrap.toml, the kohya folder tree, and (with --images) the photos."""
    from kohya_wrap.paths import ProjectLayout
    from kohya_wrap.spec.load import load_project

    layout = ProjectLayout.at(directory)
    if layout.root.exists() and not layout.root.is_dir():
        raise KohyaWrapError(f"{layout.root}: exists and is not a folder", "choose another project folder")
    kept = layout.spec_file.exists() and not force
    if kept:
        spec = load_project(layout.root, overrides).spec
        echo(f"kept the existing {layout.spec_file} (--force rewrites it)")
        if from_kohya_ss or token:
            echo("  the spec options given were not applied; edit the spec or pass --force", style="yellow")
    else:
        if from_kohya_ss:
            user = _user_spec_from_kohya_ss(from_kohya_ss, name, base_model, preset)
            if token:
                user["concepts"] = [*user.get("concepts", []), _concept(token, class_, repeats, images)]
            if not user.get("concepts"):
                raise KohyaWrapError(
                    f"{from_kohya_ss}: no concepts: its train_data_dir holds no <repeats>_<name> folders on this machine",
                    "add --token T (and --class C, --images SRC) to define one",
                )
        else:
            user = _user_spec_from_options(preset or "sd15-character", token, class_, repeats, images, base_model, name)
        spec = _write_new_spec(layout, user, overrides)
    for folder in layout.tree():
        folder.mkdir(parents=True, exist_ok=True)
    _import_concept_images(layout, spec, extra_images=images if kept else None)
    echo(f"next: kohya-wrap check {_shell_path(directory)}   then   kohya-wrap plan {_shell_path(directory)}")
    return ExitCode.OK


def _write_new_spec(layout, user: dict[str, Any], overrides: tuple[str, ...]):
    """Validate first, so an invalid spec is never written; keep the previous spec as .bak (undo)."""
    from kohya_wrap.fsutil import copy_file_atomic, write_text_atomic
    from kohya_wrap.sdscripts.locate import locate_sd_scripts
    from kohya_wrap.sdscripts.schema import load_option_schema
    from kohya_wrap.spec.load import apply_overrides, resolve_extends, validate_spec
    from kohya_wrap.spec.write import render_spec_toml

    user = apply_overrides(user, overrides)
    merged, _ = resolve_extends(user, str(layout.spec_file), layout.root)
    setting = merged.get("sd_scripts")
    sd = locate_sd_scripts(layout.root, setting if isinstance(setting, dict) else None)
    spec = validate_spec(merged, str(layout.spec_file), load_option_schema(sd))
    layout.root.mkdir(parents=True, exist_ok=True)
    if layout.spec_file.exists():
        copy_file_atomic(layout.spec_file, layout.spec_file.with_name(layout.spec_file.name + ".bak"))
    write_text_atomic(layout.spec_file, render_spec_toml({k: v for k, v in user.items() if v is not None}))
    echo(f"wrote {layout.spec_file}")
    return spec


def _import_concept_images(layout, spec, extra_images: Path | None) -> None:
    """Create every concept folder and copy in its `source`; `extra_images` (init --images on an
    existing project) go to the first training concept."""
    from kohya_wrap.dataset.importer import import_images
    from kohya_wrap.sdscripts.render import concept_dir

    for concept in spec.concepts:
        target = concept_dir(layout, concept)
        target.mkdir(parents=True, exist_ok=True)
        source = Path(concept.source).expanduser() if concept.source else None
        if extra_images is not None and concept is spec.training_concepts[0]:
            source = extra_images
        if source is None:
            continue
        source = source if source.is_absolute() else layout.root / source
        if not source.is_dir():
            echo(f"  {target.relative_to(layout.root)}: its source {source} is gone; nothing imported", style="yellow")
            continue
        result = import_images(source, target)
        echo(f"{target.relative_to(layout.root)}: {result.copied} image(s) and {result.captions} caption(s) copied, {result.unchanged} already there")
        for path in result.conflicts:
            echo(f"  kept {path.name}: a different file with that name is already in the folder", style="yellow")
        if result.unsupported:
            echo(f"  skipped {len(result.unsupported)} image(s) sd-scripts cannot read (e.g. {result.unsupported[0].name}); convert them to PNG or JPEG", style="yellow")


def _shell_path(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))


# ---------------------------------------------------------------------------------------------- check


def _print_findings(report: "CheckReport") -> None:
    from rich.text import Text

    from kohya_wrap.console import out

    for finding in report.findings:
        mark, style = SEVERITY_STYLE[finding.severity]
        out().print(Text(f"  {mark} ", style=style) + Text(finding.line()))


def _check(directory: Path, overrides: tuple[str, ...]) -> "CheckReport":
    from kohya_wrap.check import check_project
    from kohya_wrap.spec.load import load_project

    return check_project(load_project(directory, overrides))


def _report_dict(report: "CheckReport") -> dict[str, Any]:
    return {
        "spec": str(report.loaded.layout.spec_file),
        "ok": not report.errors,
        "concepts": [
            {"label": c.concept.label, "folder": str(c.folder), "images": len(c.scan.images), "is_reg": c.concept.is_reg}
            for c in report.concepts
        ],
        "findings": [f.as_dict() for f in report.findings],
    }


@cli.command()
@project_dir_argument
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@set_option
def check(directory: Path, as_json: bool, overrides: tuple[str, ...]) -> int:
    """Validate the spec, concept folders, images, captions, model and output folder."""
    report = _check(directory, overrides)
    if as_json:
        echo_json(_report_dict(report))
    else:
        spec = report.loaded.spec
        echo(f"{report.loaded.layout.spec_file}: {spec.name} · {spec.model.family} · {report.loaded.schema.source}")
        for item in report.concepts:
            echo(f"  {item.folder.relative_to(report.loaded.layout.root)}: {len(item.scan.images)} image(s)")
        _print_findings(report)
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
        echo(f"  {str(c.folder.relative_to(root)):<{width}}  {c.images:>5} images × {c.repeats:>4} repeats = {c.images * c.repeats:>6}{kind}")
    echo(f"  train images × repeats: {math.train_images_x_repeats}" + (f" · reg images × repeats: {math.reg_images_x_repeats}" if math.reg_images_x_repeats else ""))
    if plan.bucket.enable_bucket:
        buckets = ", ".join(f"{b.resolution[0]}×{b.resolution[1]}: {b.samples}" for b in math.buckets)
        echo(f"  buckets ({len(math.buckets)}): {buckets}")
    echo(
        f"  batch {plan.batch_size} → {math.batches_per_epoch} batches/epoch"
        + (f" per process ({plan.num_processes} processes)" if plan.num_processes > 1 else "")
        + (f", gradient accumulation {plan.gradient_accumulation_steps}" if plan.gradient_accumulation_steps > 1 else "")
        + f" → {math.steps_per_epoch} steps/epoch"
    )
    echo(f"  {math.epochs} epoch(s) → {math.total_steps} total optimization steps", style="bold")
    shown = list(plan.checkpoints)
    listing = ", ".join(shown if len(shown) <= 6 else [*shown[:3], "…", *shown[-2:]])
    echo(f"  checkpoints ({len(shown)}): {listing}")
    for note in plan.notes:
        echo(f"  note: {note}", style="cyan")
    echo("configs: " + ", ".join(str(p.relative_to(root)) for p in written))
    echo("command:")
    echo(f"  {command_line(list(plan.command))}")


def checked_plan(directory: Path, overrides: tuple[str, ...], as_json: bool, purpose: str) -> tuple["CheckReport", "TrainingPlan", list[Path]]:
    """What `plan` and `run` share: check (stop on errors, before any model loads), plan, render."""
    from kohya_wrap.sdscripts.render import write_configs
    from kohya_wrap.plan import build_plan

    report = _check(directory, overrides)
    if report.errors:
        if as_json:
            echo_json(_report_dict(report))
        else:
            _print_findings(report)
        raise KohyaWrapError(f"{report.loaded.layout.spec_file}: {len(report.errors)} error(s) to fix before {purpose}", "see the lines above (`kohya-wrap check` shows them too)")
    training_plan = build_plan(report)
    return report, training_plan, write_configs(training_plan.rendered, report.loaded.layout)


@cli.command()
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


@cli.command()
@project_dir_argument
@click.option("--kohya-ss", "kohya_ss_out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Write a kohya_ss GUI JSON config here.")
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
        echo(f"  not in the GUI: {item.key} = {item.value!r} ({item.reason})", style="yellow")
    return ExitCode.OK


# ---------------------------------------------------------------------------------------------- presets


@cli.group()
def presets() -> None:
    """List, show and copy presets (built-in, KOHYA_WRAP_PRESETS, ~/.config/kohya-wrap/presets)."""


@presets.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def presets_list(as_json: bool) -> int:
    """Every preset with where it comes from."""
    from kohya_wrap.presets import all_presets

    found = all_presets()
    if as_json:
        echo_json([{"name": p.name, "origin": p.origin, "path": str(p.path), "summary": p.summary} for p in found])
        return ExitCode.OK
    width = max((len(p.name) for p in found), default=0)
    for preset in found:
        echo(f"{preset.name:<{width}}  {preset.origin:<8}  {preset.summary}")
    return ExitCode.OK


@presets.command("show")
@click.argument("name")
def presets_show(name: str) -> int:
    """Print a preset's file."""
    from kohya_wrap.presets import find_preset

    preset = find_preset(name)
    click.echo(f"# {preset.path}")
    click.echo(preset.path.read_text(encoding="utf-8"), nl=False)
    return ExitCode.OK


@presets.command("copy")
@click.argument("name")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite PATH.")
def presets_copy(name: str, path: Path, force: bool) -> int:
    """Copy a preset to PATH (a file or folder) to make your own."""
    from kohya_wrap.presets import copy_preset

    written = copy_preset(name, path.expanduser(), force=force)
    echo(f"wrote {written}")
    return ExitCode.OK
