"""`kohya-wrap sweep` (many runs from one spec) and `kohya-wrap queue` (several projects, one after another)."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import click

from kohya_wrap.cli.base import project_dir_argument, set_option, training_output_options
from kohya_wrap.cli.output import echo
from kohya_wrap.errors import ExitCode, KohyaWrapError

STATUS_STYLE = {"trained": "green", "failed": "red", "interrupted": "yellow", "pending": "", "running": "cyan"}


def _json_line(data: dict) -> None:
    click.echo(json.dumps(data, ensure_ascii=False))


def _renderer_factory(plain: bool, as_json: bool):
    from kohya_wrap.console import is_interactive
    from kohya_wrap.training.dashboard import JsonRenderer, LiveRenderer, PlainRenderer

    def make(sweep, trial, plan):
        if as_json:
            return JsonRenderer()
        if plain or not is_interactive():
            return PlainRenderer()
        title = f"sweep {sweep.id} · trial {trial.index} of {len(sweep.trials)} · {trial.described()}"
        return LiveRenderer(f"{title} · {plan.script}")

    return make


@click.command()
@project_dir_argument
@click.option(
    "--vary",
    "vary",
    multiple=True,
    metavar="KEY=V1,V2",
    help="A setting to vary and its values, e.g. --vary training.network_dim=8,16 (repeatable; adds to [sweep]).",
)
@click.option(
    "--sampler", type=click.Choice(["grid", "random"]), help="grid: every combination; random: --count draws."
)
@click.option("--count", type=click.IntRange(1, 10_000), help="How many trials (random), or the first N of a grid.")
@click.option("--seed", type=int, help="The seed of the trial order and random draws (default: [sweep] seed, or 0).")
@click.option(
    "--resume", is_flag=True, help="Run what the latest sweep (or --sweep ID) has left, resuming the stopped trial."
)
@click.option("--sweep", "sweep_id", metavar="ID", help="With --resume: which sweep (a folder under sweeps/).")
@click.option("--fail-fast", is_flag=True, help="Stop at the first failed trial (default: record it and go on).")
@click.option(
    "--no-shared-cache",
    is_flag=True,
    help="Each trial caches its own latents in memory (default: cached to disk once, reused by the trials).",
)
@click.option("--dry-run", is_flag=True, help="Show the trials and exit.")
@training_output_options
@click.option(
    "--gpus",
    metavar="LIST",
    help="Run trials side by side, one per GPU: CUDA device ids, e.g. --gpus 0,1 (default: one trial at a time).",
)
@click.option(
    "--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True, help="Where trials run."
)
@click.option(
    "--address", metavar="ADDR", help="--backend ray: the Ray cluster (default: RAY_ADDRESS, else a local one)."
)
@set_option
def sweep(
    directory: Path,
    vary: tuple[str, ...],
    sampler: str | None,
    count: int | None,
    seed: int | None,
    resume: bool,
    sweep_id: str | None,
    fail_fast: bool,
    no_shared_cache: bool,
    dry_run: bool,
    plain: bool,
    as_json: bool,
    grace: float,
    gpus: str | None,
    backend: str,
    address: str | None,
    overrides: tuple[str, ...],
) -> int:
    """Train many variations of one project: the [sweep] table's (or --vary's) values, one run per trial,
    checkpoints under each trial's own name; `compare` shows them side by side."""
    from kohya_wrap.paths import ProjectLayout
    from kohya_wrap.spec.sweep import parse_vary
    from kohya_wrap.sweep.runner import build_sweep
    from kohya_wrap.sweep.state import TRAINED, latest_sweep

    gpu_list = _gpu_list(gpus) if gpus else None
    if gpu_list and backend == "ray":
        raise KohyaWrapError("--gpus is for the local back end", "with --backend ray, Ray gives each trial a GPU")
    if sweep_id and not resume:
        raise KohyaWrapError("--sweep ID goes with --resume", "add --resume, or leave --sweep out to start a new sweep")
    if resume:
        if vary or sampler or count or seed is not None or no_shared_cache:
            raise KohyaWrapError(
                "--resume runs the trials the sweep was started with",
                "leave out --vary, --sampler, --count, --seed and --no-shared-cache",
            )
        the_sweep = latest_sweep(ProjectLayout.at(directory).root, sweep_id)
    else:
        the_sweep = build_sweep(directory, overrides, parse_vary(vary), not no_shared_cache, sampler, count, seed)
    left = the_sweep.left()
    if dry_run:
        return _show_trials(the_sweep, as_json)
    if not left:
        echo(f"sweep {the_sweep.id}: every trial is trained — compare them with `kohya-wrap compare`")
        return ExitCode.OK
    _check_once(the_sweep, left[0], as_json)
    if not resume:
        the_sweep.save()
    done = len(the_sweep.trials) - len(left)
    say = _json_line if as_json else None
    if say:
        say({"event": "sweep", "sweep": the_sweep.id, "trials": len(the_sweep.trials), "left": len(left)})
    else:
        verb = "resuming" if resume else "starting"
        echo(
            f"sweep {the_sweep.id}: {verb}, {len(left)} of {len(the_sweep.trials)} trial(s) to run"
            + (f" ({done} trained)" if done else "")
            + f" · record in {the_sweep.folder.relative_to(the_sweep.root)}"
        )

    def on_trial(trial, status: str) -> None:
        record = the_sweep.status(trial.index) if status != "start" else None
        if say:
            event = {"event": "trial", "sweep": the_sweep.id, "trial": trial.index, "of": len(the_sweep.trials)}
            event |= {"name": trial.name, "values": trial.values, "status": status}
            if record is not None:
                event |= {"runs": record.run_ids, "error": record.error}
                event |= {"latents_cached": record.latents_cached, "latents_reused": record.latents_reused}
            say(event)
        elif record is None:
            echo(
                f"── trial {trial.index} of {len(the_sweep.trials)} ({trial.name}) · {trial.described()}", style="bold"
            )
        else:
            cache = ""
            if record.latents_cached or record.latents_reused:
                cache = f" · latents: {record.latents_cached} cached, {record.latents_reused} reused"
            echo(f"   trial {trial.name}: {status}{cache}", style=STATUS_STYLE.get(status, ""))

    if backend == "ray":
        from kohya_wrap.sweep.ray_backend import run_sweep_on_ray

        outcome = run_sweep_on_ray(the_sweep, left, on_trial, address, fail_fast, grace, None if as_json else echo)
    elif gpu_list and len(gpu_list) > 1:
        from kohya_wrap.sweep.parallel import run_sweep_in_parallel

        _one_process_per_trial(the_sweep)
        outcome = run_sweep_in_parallel(
            the_sweep, left, gpu_list, on_trial, grace, fail_fast, None if as_json else echo
        )
    else:
        from kohya_wrap.sweep.runner import run_sweep_locally

        if gpu_list:  # one GPU named: every trial on it, one after another
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu_list[0]

        outcome = run_sweep_locally(the_sweep, left, _renderer_factory(plain, as_json), on_trial, grace, fail_fast)
    statuses = the_sweep.statuses()
    trained = sum(1 for s in statuses if s.status == TRAINED)
    if as_json:
        _json_line(
            {
                "event": "sweep_end",
                "sweep": the_sweep.id,
                "trained": trained,
                "of": len(statuses),
                "exit_code": int(outcome.exit_code),
                "trials": [{"trial": s.index, "status": s.status, "runs": s.run_ids} for s in statuses],
            }
        )
        return outcome.exit_code
    _show_trials(the_sweep, False)
    where = shlex.quote(str(directory))
    if outcome.stopped_at is not None:
        echo(
            f"stopped at trial {outcome.stopped_at}; continue with `kohya-wrap sweep {where} --resume`",
            style="yellow",
        )
    elif trained < len(statuses):
        echo(
            f"{len(statuses) - trained} trial(s) did not train; their logs are in runs/ — "
            f"run them again with `kohya-wrap sweep {where} --resume`",
            style="red",
        )
    else:
        echo(
            f"all {trained} trials trained — compare them with `kohya-wrap compare {where}`",
            style="green",
        )
    return outcome.exit_code


def _check_once(the_sweep, trial, as_json: bool) -> None:
    """The whole check (images, captions, models, sd-scripts) once, before any trial trains: a dataset
    problem stops the sweep here, not each trial in turn. Each trial's own plan checks its values again
    (the image scan and lint reuse their caches)."""
    from kohya_wrap.check import check_project
    from kohya_wrap.plan import CheckFailed
    from kohya_wrap.spec.load import load_project

    report = check_project(load_project(the_sweep.root, trial.overrides))
    if report.errors:
        if as_json:
            _json_line({"event": "check", "errors": [f.line() for f in report.errors]})
        else:
            from kohya_wrap.cli.base import print_findings

            print_findings(report.errors)
        raise CheckFailed(report, "the sweep")


def _gpu_list(text: str) -> list[str]:
    gpus = [part.strip() for part in text.split(",") if part.strip()]
    if not gpus or any(not g.isdigit() for g in gpus) or len(set(gpus)) != len(gpus):
        raise KohyaWrapError(f"--gpus {text}: expected distinct CUDA device ids", "e.g. --gpus 0,1")
    return gpus


def _one_process_per_trial(the_sweep) -> None:
    from kohya_wrap.spec.load import load_project

    loaded = load_project(the_sweep.root, the_sweep.trials[0].overrides)
    if loaded.settings.num_processes > 1:
        raise KohyaWrapError(
            f"--gpus runs one single-GPU trial per device, and [launch] trains on {loaded.settings.num_processes}",
            "leave out --gpus (each trial then uses the GPUs [launch] names), or set launch.num_processes = 1",
        )


def _show_trials(the_sweep, as_json: bool) -> int:
    statuses = {s.index: s for s in the_sweep.statuses()}
    if as_json:
        click.echo(
            json.dumps(
                {
                    "sweep": the_sweep.id,
                    "sampler": the_sweep.sampler,
                    "seed": the_sweep.seed,
                    "trials": [
                        {
                            "trial": t.index,
                            "name": t.name,
                            "values": t.values,
                            "output_name": t.output_name,
                            "cache_group": t.cache_group,
                            "set": t.overrides,
                            "status": statuses[t.index].status,
                            "runs": statuses[t.index].run_ids,
                        }
                        for t in the_sweep.trials
                    ],
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return ExitCode.OK
    echo(f"sweep {the_sweep.id} ({the_sweep.sampler}, seed {the_sweep.seed}): {len(the_sweep.trials)} trial(s)")
    for t in the_sweep.trials:
        s = statuses[t.index]
        runs = f" · run {s.run_ids[-1]}" if s.run_ids else ""
        echo(
            f"  {t.name:>4}  {s.status:<11} {t.described()} · cache {t.cache_group}{runs}",
            style=STATUS_STYLE.get(s.status, ""),
        )
    return ExitCode.OK


@click.command()
@click.argument("directories", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--fail-fast", is_flag=True, help="Stop at the first project that fails (default: go on).")
@training_output_options
def queue(directories: tuple[Path, ...], fail_fast: bool, plain: bool, as_json: bool, grace: float) -> int:
    """Train several projects one after another (overnight): a project that fails is recorded and the
    queue goes on; Ctrl-C stops the running one and the queue."""
    from kohya_wrap.cli.run import train
    from kohya_wrap.errors import user_error

    results: list[tuple[Path, str, int]] = []
    code = ExitCode.OK
    for n, directory in enumerate(directories, 1):
        if as_json:
            _json_line({"event": "project", "n": n, "of": len(directories), "project": str(directory)})
        else:
            echo(f"── project {n} of {len(directories)}: {directory}", style="bold")
        error: list[str] = []
        try:
            exit_code = train(directory, (), plain=plain, as_json=as_json, grace=grace)
            status = "trained" if exit_code == ExitCode.OK else "interrupted"
        except (KohyaWrapError, OSError, UnicodeDecodeError) as exc:
            failure = exc if isinstance(exc, KohyaWrapError) else user_error(exc)
            exit_code, status, error = failure.exit_code, "failed", failure.lines()
            if not as_json:
                for line in error:
                    echo("   " + line, style="red")
        results.append((directory, status, int(exit_code)))
        if as_json:
            _json_line(
                {
                    "event": "project_end",
                    "n": n,
                    "project": str(directory),
                    "status": status,
                    "exit_code": int(exit_code),
                    "error": error,
                }
            )
        if status == "interrupted":
            code = exit_code
            break
        if status == "failed":
            code = ExitCode.FAILED
            if fail_fast:
                break
    if not as_json:
        echo(f"queue: {sum(1 for r in results if r[1] == 'trained')} of {len(directories)} project(s) trained")
        for directory, status, _ in results:
            echo(f"  {status:<11} {directory}", style=STATUS_STYLE.get(status, ""))
        for directory in directories[len(results) :]:
            echo(f"  {'not run':<11} {directory}")
    return code


@click.command(name="sweep-trial", hidden=True)
@click.argument("directory", type=click.Path(path_type=Path))
@click.argument("sweep_id")
@click.argument("index", type=int)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event (NDJSON).")
@click.option("--grace", default=30.0, type=click.FloatRange(0, 3600))
@click.option("--locks-held", is_flag=True, help="The sweep that started this holds the project's locks.")
def sweep_trial(directory: Path, sweep_id: str, index: int, as_json: bool, grace: float, locks_held: bool) -> int:
    """One trial of a sweep, in this process (what a backend other than `local` runs on a worker): its
    status goes to sweeps/<id>/trials/<index>.json, its run to runs/<id>."""
    from kohya_wrap.paths import ProjectLayout
    from kohya_wrap.sweep.runner import run_trial
    from kohya_wrap.sweep.state import read_sweep

    the_sweep = read_sweep(ProjectLayout.at(directory).root, sweep_id)
    trial = next((t for t in the_sweep.trials if t.index == index), None)
    if trial is None:
        raise KohyaWrapError(f"sweep {sweep_id} has no trial {index}", f"trials are 1 to {len(the_sweep.trials)}")
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES") if locks_held else None
    return run_trial(the_sweep, trial, _renderer_factory(True, as_json), grace, not locks_held, gpu)
