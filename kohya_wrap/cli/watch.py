"""`kohya-wrap run --detach` and `kohya-wrap watch`: training that goes on after the terminal goes away,
and the live dashboard attached to it (or to a finished run) again from its record."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import click

from kohya_wrap.cli.base import project_dir_argument
from kohya_wrap.cli.output import echo
from kohya_wrap.errors import ChildFailed, ExitCode, KohyaWrapError

START_TIMEOUT_S = 120.0  # the detached supervisor checks the project again (and may probe sd-scripts' venv)


def detach_run(root: Path, overrides: tuple[str, ...], grace: float, resume: bool, resume_from: Path | None) -> int:
    """Start `kohya-wrap run` for `root` as a detached supervisor (its own session, no terminal, output
    to a log) and return once its run has started (0), or with its exit code and last lines if it
    stopped before (a run already in progress, say)."""
    from kohya_wrap.launch.process import child_env, spawn_detached
    from kohya_wrap.training.live import supervisor
    from kohya_wrap.training.record import run_dirs

    argv = [sys.executable, "-m", "kohya_wrap", "run", str(root), "--plain", "--grace", str(grace), "--detached-child"]
    for override in overrides:
        argv += ["--unset", override[len("unset:") :]] if override.startswith("unset:") else ["--set", override]
    if resume_from is not None:
        argv += ["--resume-from", str(resume_from.absolute())]
    elif resume:
        argv.append("--resume")
    runs_dir = root / "runs"
    before = set(run_dirs(runs_dir))
    log = root / ".kohya-wrap" / "detached" / f"{time.strftime('%Y%m%d-%H%M%S')}.log"
    process = spawn_detached(argv, log, env=child_env({}))
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for run_dir in set(run_dirs(runs_dir)) - before:
            found = supervisor(run_dir)
            if found is not None and found.pid == process.pid:
                echo(f"run {run_dir.name} is training in the background (supervisor pid {process.pid})")
                echo(
                    f"  follow it: kohya-wrap watch {shlex.quote(str(root))}   stop it: kill {process.pid}   "
                    f"record: runs/{run_dir.name}/"
                )
                return ExitCode.OK
        code = process.poll()
        if code is not None:
            tail = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
            for line in tail[-12:]:
                click.echo(line, err=True)
            return code or ExitCode.FAILED
        time.sleep(0.1)
    raise KohyaWrapError(
        f"the background run has not started after {START_TIMEOUT_S:.0f} s (supervisor pid {process.pid})",
        f"see its output in {log}; `kohya-wrap runs {shlex.quote(str(root))}` lists it once it starts",
    )


def report_outcome(
    root: Path,
    run_id: str,
    verdict: str,
    exit_code: int,
    checkpoints: list[Path],
    diagnosis: list[str],
    as_json: bool,
) -> int:
    """How a run ended, as `run` and `watch` say it; its exit code (a failure is raised as ChildFailed)."""
    run_dir = root / "runs" / run_id
    if not as_json:
        echo(f"run {run_id}: {verdict} · record in {run_dir.relative_to(root)}")
        for path in checkpoints:
            size = f" ({path.stat().st_size / 1e6:.1f} MB)" if path.is_file() else ""
            echo(f"  {path.relative_to(root) if path.is_relative_to(root) else path}{size}")
    if exit_code == ExitCode.OK:
        return ExitCode.OK
    if exit_code == ExitCode.INTERRUPTED or verdict.startswith("stopped"):
        kept = checkpoints[-1].name if checkpoints else "nothing (no checkpoint was saved yet)"
        how = "interrupted" if exit_code == ExitCode.INTERRUPTED else verdict
        echo(f"{how}; sd-scripts saves nothing on interrupt, so the progress kept is {kept}", style="yellow")
        return exit_code
    first, *rest = diagnosis or [verdict]
    raise ChildFailed(first, "; ".join(rest) + f" (log: {run_dir / 'train.log'})")


def _lr_schedule(root: Path, run_dir: Path, total: int):
    """The scheduled learning rate of each step, from the run's own rendered config; None if unknown."""
    try:
        import toml

        from kohya_wrap.sdscripts.lrsched import schedule
        from kohya_wrap.spec.load import load_project

        loaded = load_project(root)
        sections = toml.loads((run_dir / "train.toml").read_text(encoding="utf-8"))
        args = {k: v for section in sections.values() if isinstance(section, dict) for k, v in section.items()}
        settings = loaded.settings
        return schedule(args, total, settings.num_processes, lambda key: loaded.schema.default(settings.script, key))
    except Exception:  # noqa: BLE001 - the learning rate is a nicety: without it the dashboard shows none
        return None


@click.command()
@project_dir_argument
@click.option("--run", "run_id", metavar="ID", help="The run to watch (default: the newest).")
@click.option("--plain", is_flag=True, help="One line per event instead of the live dashboard.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event (NDJSON).")
def watch(directory: Path, run_id: str | None, plain: bool, as_json: bool) -> int:
    """Follow a run (training in the background, or finished) with the live dashboard, from its record;
    exits with the run's own exit code once it ends. Ctrl-C stops watching, not the run."""
    from kohya_wrap.console import is_interactive
    from kohya_wrap.spec.load import find_spec_file
    from kohya_wrap.training.dashboard import JsonRenderer, LiveRenderer, PlainRenderer
    from kohya_wrap.training.live import follow, run_state, run_status, state_from_plan, supervisor
    from kohya_wrap.training.record import read_record, run_dirs
    from kohya_wrap.training.state import RunState

    root = find_spec_file(directory).parent
    runs_dir = root / "runs"
    if run_id is not None:
        run_dir = runs_dir / run_id
        if run_id in ("", ".", "..") or Path(run_id).name != run_id or not run_dir.is_dir():
            raise KohyaWrapError(f"{run_dir}: no such run", "see `kohya-wrap runs` for the ids")
    else:
        found = run_dirs(runs_dir)
        if not found:
            raise KohyaWrapError(f"{root}: no runs yet", "`kohya-wrap run --detach` starts one in the background")
        run_dir = found[0]
    if as_json:
        renderer = JsonRenderer()
    elif plain or not is_interactive():
        renderer = PlainRenderer()
    else:
        renderer = LiveRenderer(f"{root.name} · run {run_dir.name}")
    if not as_json:
        echo(f"run {run_dir.name}: {run_status(run_dir)}")
    state: RunState | None = None
    try:
        for item in follow(run_dir):
            if isinstance(item, dict):  # the plan, first
                state = state_from_plan(item, _lr_schedule(root, run_dir, int(item.get("total_steps") or 0)))
                renderer.start(state)
                continue
            if state is None:  # a run recorded before the plan line existed
                state = RunState()
                renderer.start(state)
            if item is None:
                renderer.tick(state)
            else:
                state.update(item)
                renderer.handle(item, state)
    except KeyboardInterrupt:
        if state is not None:
            renderer.close(state)
        alive = supervisor(run_dir)
        goes_on = f" goes on in the background (pid {alive.pid})" if alive and alive.alive else " is not running"
        echo(f"stopped watching; run {run_dir.name}{goes_on}")
        return ExitCode.INTERRUPTED
    if state is not None:
        renderer.close(state)
    status, gone = run_state(run_dir)
    if status != "ended":
        pid = f" (pid {gone.pid})" if gone else ""
        raise ChildFailed(
            f"run {run_dir.name} ended without a record: its supervisor{pid} is gone (killed with SIGKILL, or the "
            "machine went down)",
            f"its output so far is in {run_dir}; `kohya-wrap run --resume` continues from a saved state",
        )
    record = read_record(run_dir)
    return report_outcome(
        root,
        record.run_id,
        record.verdict,
        record.exit_code,
        [Path(output.path) for output in record.outputs],
        record.diagnosis,
        as_json,
    )
