"""`kohya-wrap run`: check, render, train under supervision, record, give a verdict."""

from __future__ import annotations

from pathlib import Path

import click

from kohya_wrap.cli import cli, project_dir_argument, set_option
from kohya_wrap.cli.output import echo
from kohya_wrap.errors import ChildFailed, ExitCode, KohyaWrapError


@cli.command()
@project_dir_argument
@click.option("--plain", is_flag=True, help="One line per event instead of the live dashboard (the default when piped).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event (NDJSON).")
@click.option("--grace", default=30.0, show_default=True, type=click.FloatRange(0, 3600), help="Seconds Ctrl-C waits for sd-scripts to stop before SIGTERM/SIGKILL.")
@set_option
def run(directory: Path, plain: bool, as_json: bool, grace: float, overrides: tuple[str, ...]) -> int:
    """Train: check the project, render its configs, run sd-scripts with a live dashboard, keep a record in runs/<id>/."""
    from kohya_wrap.check import check_project
    from kohya_wrap.console import is_interactive
    from kohya_wrap.dashboard import JsonRenderer, LiveRenderer, PlainRenderer
    from kohya_wrap.kohya.render import write_configs
    from kohya_wrap.plan import build_plan
    from kohya_wrap.run import supervise
    from kohya_wrap.spec.load import load_project

    report = check_project(load_project(directory, overrides))
    if report.errors:
        for finding in report.errors:
            echo(f"  ✗ {finding.line()}", style="red")
        raise KohyaWrapError(f"{report.loaded.layout.spec_file}: {len(report.errors)} error(s) to fix before training", "see the lines above (`kohya-wrap check`)")
    sd = report.sd_scripts
    if not sd.usable:
        raise KohyaWrapError(f"no sd-scripts to train with (looked in {sd.root})", "run `kohya-wrap vendor install`, or `kohya-wrap vendor use PATH`")
    plan = build_plan(report)
    write_configs(plan.rendered, report.loaded.layout)
    if as_json:
        renderer = JsonRenderer()
    elif plain or not is_interactive():
        renderer = PlainRenderer()
    else:
        renderer = LiveRenderer(f"{plan.name} · {plan.script} · {report.loaded.schema.source}")
    outcome = supervise(report, plan, renderer, grace)
    root = report.loaded.layout.root
    if not as_json:
        echo(f"run {outcome.run_id}: {outcome.verdict} · record in {outcome.run_dir.relative_to(root)}")
        for path in outcome.checkpoints:
            echo(f"  {path.relative_to(root)} ({path.stat().st_size / 1e6:.1f} MB)")
    if outcome.exit_code == ExitCode.INTERRUPTED:
        kept = outcome.checkpoints[-1].name if outcome.checkpoints else "nothing (no checkpoint was saved yet)"
        echo(f"interrupted; sd-scripts saves nothing on interrupt, so the progress kept is {kept}", style="yellow")
        return ExitCode.INTERRUPTED
    if outcome.exit_code != ExitCode.OK:
        first, *rest = outcome.diagnosis or [outcome.verdict]
        raise ChildFailed(first, "; ".join(rest) + f" (log: {outcome.run_dir / 'train.log'})")
    return ExitCode.OK
