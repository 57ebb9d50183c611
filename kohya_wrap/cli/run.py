"""`kohya-wrap run`: check, render, train under supervision, record, give a verdict."""

from __future__ import annotations

from pathlib import Path

import click

from kohya_wrap.cli.base import project_dir_argument, set_option, training_output_options
from kohya_wrap.cli.output import echo
from kohya_wrap.errors import ExitCode, KohyaWrapError


@click.command()
@project_dir_argument
@training_output_options
@click.option(
    "--detach",
    is_flag=True,
    help="Train in the background, on after the terminal goes away; `kohya-wrap watch` follows it.",
)
@click.option("--detached-child", "detached_child", is_flag=True, hidden=True)
@click.option(
    "--resume",
    "resume",
    is_flag=True,
    help="Continue from the newest saved training state in model/ (needs training.save_state).",
)
@click.option(
    "--resume-from",
    "resume_from",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Continue from this state folder.",
)
@set_option
def run(
    directory: Path,
    plain: bool,
    as_json: bool,
    grace: float,
    detach: bool,
    detached_child: bool,
    resume: bool,
    resume_from: Path | None,
    overrides: tuple[str, ...],
) -> int:
    """Train: check the project, render its configs, run sd-scripts with a live dashboard, keep a record in
    runs/<id>/."""
    return train(
        directory,
        overrides,
        plain=plain or detached_child,
        as_json=as_json,
        grace=grace,
        resume=resume or resume_from is not None,
        resume_from=resume_from,
        detach=detach,
        detached_child=detached_child,
    )


def train(
    directory: Path,
    overrides: tuple[str, ...],
    plain: bool,
    as_json: bool,
    grace: float,
    resume: bool = False,
    resume_from: Path | None = None,
    detach: bool = False,
    detached_child: bool = False,
) -> int:
    from kohya_wrap.cli.project import checked_plan
    from kohya_wrap.console import is_interactive
    from kohya_wrap.sdscripts.locate import require_trainable
    from kohya_wrap.training.dashboard import JsonRenderer, LiveRenderer, PlainRenderer
    from kohya_wrap.training.supervise import supervise

    report, plan, _ = checked_plan(directory, overrides, as_json, "training")
    require_trainable(report.sd_scripts, report.loaded.layout.root)
    if detach:
        from kohya_wrap.cli.watch import detach_run

        return detach_run(report.loaded.layout.root, overrides, grace, resume, resume_from)
    resuming, notes = None, [f"note: {note}" for note in plan.notes]
    if resume:
        from kohya_wrap.training.resume import resume_run, spec_training

        resuming = resume_run(report, plan, resume_from.absolute() if resume_from else None)
        notes.append(
            f"resuming from {resuming.state.path.name} at step {resuming.state.step} of {plan.math.total_steps}"
        )
        if not spec_training(report.loaded).get("save_state"):
            notes.append("note: training.save_state is off, so this run saves no state to resume from again")
    if as_json:
        renderer = JsonRenderer()
    elif plain or not is_interactive():
        renderer = PlainRenderer()
    else:
        renderer = LiveRenderer(f"{plan.name} · {plan.script} · {report.loaded.schema.source}")
    for note in notes:
        renderer.note(note)
    from kohya_wrap.cli.watch import report_outcome

    outcome = supervise(report, plan, renderer, grace, resuming, detached=detached_child)
    try:
        return report_outcome(
            report.loaded.layout.root,
            outcome.run_id,
            outcome.verdict,
            outcome.exit_code,
            outcome.checkpoints,
            outcome.diagnosis,
            as_json,
        )
    except OSError:  # the output went away (the terminal hung up, a closed pipe); the record is written
        return outcome.exit_code


@click.command()
@click.argument("args", nargs=-1, metavar="[DIR] | show ID [DIR]")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def runs(args: tuple[str, ...], as_json: bool) -> int:
    """The run history of a project (`kohya-wrap runs [DIR]`), or one run (`kohya-wrap runs show ID [DIR]`)."""
    from kohya_wrap.cli.output import echo_json
    from kohya_wrap.spec.load import find_spec_file
    from kohya_wrap.training.live import run_state, run_status
    from kohya_wrap.training.record import RecordError, RunFiles, find_run, list_runs, read_record

    if args[:1] == ("show",):
        if len(args) < 2:
            raise KohyaWrapError("runs show needs a run id", "see `kohya-wrap runs` for the ids")
        root = find_spec_file(args[2] if len(args) > 2 else ".").parent
        run_dir = find_run(root / "runs", args[1])
        assert run_dir is not None
        record = read_record(run_dir)
        if as_json:
            echo_json(record.to_dict())
            return ExitCode.OK
        echo(f"run {record.run_id}: {record.verdict} (exit {record.exit_code})", style="bold")
        echo(
            f"  started {record.started}, {record.duration_s:.0f} s; steps "
            f"{record.steps.reached}/{record.steps.planned}; final loss {record.final_loss}"
        )
        echo(f"  sd-scripts: {record.sd_scripts.schema_} at {record.sd_scripts.root}")
        environment = record.environment
        packages = environment.packages
        if packages.get("torch"):
            build = f", CUDA {packages['torch_cuda']} build" if packages.get("torch_cuda") else ""
            echo(f"  torch {packages['torch']}{build}; GPUs: {', '.join(environment.gpus) or 'none'}")
        if environment.sd_scripts_changed_files:
            echo(
                f"  sd-scripts checkout has local changes: {', '.join(environment.sd_scripts_changed_files)}",
                style="yellow",
            )
        if record.resume:
            echo(f"  resumed from {Path(record.resume.state).name} (step {record.resume.from_step})")
        for output in record.outputs:
            echo(f"  output: {output.path} ({output.bytes / 1e6:.1f} MB)")
        for line in record.diagnosis:
            echo(f"  {line}", style="yellow")
        echo(
            f"  dataset: {len(record.dataset)} image(s); record: "
            + ", ".join(sorted(p.name for p in run_dir.iterdir()))
        )
        if RunFiles(run_dir).report.is_file():
            echo(f"  report: {RunFiles(run_dir).report}")
        return ExitCode.OK
    if len(args) > 1:
        raise KohyaWrapError(
            f"unexpected arguments: {' '.join(args[1:])}",
            "use `kohya-wrap runs [DIR]` or `kohya-wrap runs show ID [DIR]`",
        )
    root = find_spec_file(args[0] if args else ".").parent
    history = list_runs(root / "runs")
    if as_json:
        echo_json(
            [
                record.to_dict()
                if not isinstance(record, (RecordError, type(None)))
                else {"run_id": run_dir.name, "verdict": run_status(run_dir) if record is None else "unreadable"}
                for run_dir, record in history
            ]
        )
        return ExitCode.OK
    if not history:
        echo("no runs yet — `kohya-wrap run` starts one")
    shown_sweeps: set[str] = set()
    for run_dir, record in history:
        label = getattr(record, "sweep", None)
        if label is not None:  # a sweep's trials together, under their sweep, where its newest one falls
            if label.id not in shown_sweeps:
                shown_sweeps.add(label.id)
                _sweep_group(label.id, history)
            continue
        if record is None:
            status, live = run_state(run_dir)
            if live is not None and status == "running":
                where = "in the background, " if live.detached else ""
                echo(f"{run_dir.name}  running ({where}pid {live.pid}) — `kohya-wrap watch` follows it")
            elif status == "incomplete":
                echo(f"{run_dir.name}  incomplete (no record, no supervisor file)", style="yellow")
            else:
                echo(f"{run_dir.name}  ended without a record (its supervisor is gone)", style="yellow")
            continue
        if isinstance(record, RecordError):
            echo(f"{run_dir.name}  unreadable record: {record.message}", style="yellow")
            continue
        echo(_run_line(record))
    return ExitCode.OK


def _run_line(record, indent: str = "") -> str:
    final = Path(record.outputs[-1].path).name if record.outputs else "-"
    loss = f"{record.final_loss:.4g}" if record.final_loss is not None else "-"
    return (
        f"{indent}{record.run_id}  {shorten(record.verdict, VERDICT_WIDTH):<{VERDICT_WIDTH}}  steps "
        f"{record.steps.reached}/{record.steps.planned:<6}  loss {loss:<8}  {record.duration_s:>6.0f} s  {final}"
    )


def _sweep_group(sweep_id: str, history) -> None:
    """`runs`: a sweep's trial runs under one heading, in trial order, each with the values it set."""
    trials = sorted(
        (record for _, record in history if getattr(record, "sweep", None) and record.sweep.id == sweep_id),
        key=lambda r: (r.sweep.trial, r.started),
    )
    trained = len({r.sweep.trial for r in trials if r.exit_code == 0})
    echo(f"sweep {sweep_id}: {trained} of {trials[0].sweep.of} trial(s) trained — `kohya-wrap compare` shows them")
    for record in trials:
        values = " · ".join(f"{k}={v}" for k, v in record.sweep.values.items())
        echo(f"  {record.sweep.name} {values}")
        echo(_run_line(record, "    "))


VERDICT_WIDTH = 34  # "failed: no LoRA file was written…" fits; `runs show ID` has the whole verdict


def shorten(text: str, width: int) -> str:
    """`text` in at most `width` characters, cut at a word boundary with "…" (a single word too long for
    the column is cut where it must be)."""
    if len(text) <= width:
        return text
    head = text[: width - 1]
    if not text[width - 1].isspace():  # the cut falls inside a word: end before it
        cut = head.rfind(" ")
        head = head[:cut] if cut > 0 else head
    return head.rstrip(" (,;:") + "…"


@click.command()
@click.argument("directory", required=False, default="kohya-wrap-demo", type=click.Path(path_type=Path))
@click.option("--steps", default=8, show_default=True, type=click.IntRange(1, 1000), help="Training steps.")
@click.option("--plain", is_flag=True, help="One line per event instead of the live dashboard.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event (NDJSON).")
@click.option(
    "--model",
    "model",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Use this model folder instead of building the tiny one (with --tokenizers).",
)
@click.option(
    "--tokenizers",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Tokenizer cache folder for --model.",
)
@click.option(
    "--family",
    type=click.Choice(["sd15", "sdxl"]),
    default="sd15",
    show_default=True,
    help="Model family: sdxl trains a full-size SDXL UNet with sdxl_train_network.py (5 GB model, ~6 GiB RAM).",
)
def demo(
    directory: Path,
    steps: int,
    plain: bool,
    as_json: bool,
    model: Path | None,
    tokenizers: Path | None,
    family: str,
) -> int:
    """The whole path offline as a self-test: a tiny random model (built once, cached), 8 synthetic
    images, a project in DIRECTORY (default: kohya-wrap-demo), then check, plan and a short real run."""
    import os

    from kohya_wrap.demo import ensure_demo_model, write_demo_project
    from kohya_wrap.sdscripts.locate import locate_sd_scripts

    sd = locate_sd_scripts()
    if not sd.usable:
        raise KohyaWrapError(
            f"the demo trains with the real sd-scripts, and none is installed at {sd.root}",
            "run `kohya-wrap vendor install` first",
        )
    if (model is None) != (tokenizers is None):
        raise KohyaWrapError(
            "--model and --tokenizers go together", "pass both, or neither to build the tiny demo model"
        )
    if model is None:
        model, tokenizers = ensure_demo_model(sd, echo, family)
    assert tokenizers is not None
    root = directory.expanduser().absolute()
    write_demo_project(root, model.absolute(), tokenizers.absolute(), steps, family)
    echo(f"demo project: {root}")
    os.environ["HF_HUB_OFFLINE"] = "1"  # the demo never needs the network; fail fast if anything tries
    return train(root, (), plain=plain, as_json=as_json, grace=30.0)
