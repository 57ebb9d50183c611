"""`sweep --backend ray`: each trial is a Ray task on a cluster (`--address`, else RAY_ADDRESS, else a
local Ray started for this sweep). Ray is an optional extra and is imported only here.

A task runs the hidden `kohya-wrap sweep-trial DIR SWEEP_ID INDEX --json` with the worker's own Python
(`-m kohya_wrap`), so a trial on a worker is the same supervised run as a local one: it writes its status
file (sweeps/<id>/trials/<k>.json) and its run record (runs/<id>/) into the project folder, which must be
on storage every node mounts at the same path (checked on the worker; the project is not shipped as a
working directory). This driver reads those files and reports each trial.

Resources: one GPU per trial on a cluster with GPUs (Ray sets CUDA_VISIBLE_DEVICES), as many trials at
once as the cluster has GPUs; on a CPU-only cluster a whole node's CPUs and one trial at a time, so two
CPU trainings never fight over one machine's cores. The driver holds the project's run lock and dataset
lock for all the trials (`sweep-trial --locks-held`; each renders its configs into its own folder), and
runs each cache group's first trial alone — it makes the latent cache the group's other trials then
read side by side (sweep/parallel.py does the same for `--gpus` on one machine).

A worker that dies mid-trial (killed, out of memory, its node lost) fails that trial — Ray's retries are
off (max_retries=0): a retry would start the training over, and `--resume` already does that, resuming
from its saved state. The trial's own process dies with the worker (PR_SET_PDEATHSIG) and its training
with that (the guard, launch/guard.py), so nothing trains on unsupervised; the other trials go on.
Ctrl-C kills the running trial's task (its training stopped by the guard, as above), marks the trial
interrupted and stops the sweep; `--resume` continues it.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from pathlib import Path
from typing import Any, Callable

from kohya_wrap.errors import ExitCode, KohyaWrapError, shorten
from kohya_wrap.fsutil import dataset_lock
from kohya_wrap.launch.process import Child, Output
from kohya_wrap.sweep.progress import TrialProgress, latest_step
from kohya_wrap.sweep.runner import SweepOutcome, may_start, sweep_lock, trial_argv
from kohya_wrap.sweep.state import FAILED, INTERRUPTED, PENDING, RUNNING, TRAINED, Sweep, Trial, now
from kohya_wrap.training.supervise import run_lock

FORWARDED_ENV = ("KOHYA_WRAP_", "XDG_", "HF_")  # the driver's settings the trials need (paths, caches, offline)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise KohyaWrapError("--backend ray needs Ray", "pip install 'kohya-wrap[ray]'") from None
    return ray


def forwarded_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    environ = dict(os.environ) if environ is None else environ
    return {k: v for k, v in environ.items() if k.startswith(FORWARDED_ENV)}


def trial_task(root: str, sweep_id: str, index: int, grace: float) -> dict[str, Any]:
    """What runs on the Ray worker: the trial in a `sweep-trial` process of its own, which dies with
    this worker. Returns the host, the exit code and the last lines of its output."""
    host = socket.gethostname()
    if not (Path(root) / "sweeps" / sweep_id / "sweep.json").is_file():
        return {"host": host, "missing": True}
    child = Child(trial_argv(root, sweep_id, index, grace), env=dict(os.environ), guard=False, die_with_parent=True)
    tail: deque[str] = deque(maxlen=20)
    try:
        for item in child.events(poll=0.5):
            if isinstance(item, Output):
                tail.extend(line for line in item.text.splitlines() if line.strip())
    except KeyboardInterrupt:  # a gentle ray.cancel, where it reaches us: stop the trial as Ctrl-C stops `run`
        child.stop(grace + 5.0)
        raise
    return {"host": host, "exit": child.process.returncode, "tail": list(tail)}


def _connect(ray, address: str | None) -> bool:
    """Connect to (or start) Ray; whether this call started it (and so shuts it down)."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    options: dict[str, Any] = {
        "runtime_env": {"env_vars": forwarded_env()},
        "log_to_driver": False,  # the trials' output is in their runs/<id>/train.log
        "logging_level": "WARNING",
    }
    if address is None:
        options["include_dashboard"] = False
    try:
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a local Ray"
        raise KohyaWrapError(
            f"cannot reach the Ray cluster at {where} ({shorten(str(exc), 200)})",
            "start it (`ray start --head`) and pass its address with --address HOST:PORT, or set RAY_ADDRESS",
        ) from exc
    return True


def task_resources(ray) -> tuple[dict[str, float], int]:
    """One GPU per trial where the cluster has GPUs (as many trials at once as GPUs), else a whole node's
    CPUs (the biggest node's) and one trial at a time."""
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus >= 1:
        return {"num_gpus": 1, "num_cpus": 1}, gpus
    cpus = [node.get("Resources", {}).get("CPU", 0) for node in ray.nodes() if node.get("Alive")]
    return {"num_cpus": max([c for c in cpus if c] or [1])}, 1


def _fail(sweep: Sweep, trial: Trial, error: str) -> None:
    status = sweep.status(trial.index)
    status.status, status.ended, status.error = FAILED, now(), error
    sweep.save_status(status)


def _settle(ray, ref, sweep: Sweep, trial: Trial) -> str:
    """A finished task → the trial's status, recorded in its status file where the trial could not."""
    try:
        result = ray.get(ref)
    except ray.exceptions.RayError as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        _fail(sweep, trial, f"the Ray worker died: {shorten(first, 300)}")
        return FAILED
    if result.get("missing"):
        _fail(sweep, trial, f"the project folder {sweep.root} is not on the Ray worker {result.get('host')}")
        raise KohyaWrapError(
            f"the project folder {sweep.root} is not on the Ray worker {result.get('host')}",
            "put it on storage every node mounts at the same path (NFS, a shared disk)",
        )
    status = sweep.status(trial.index)
    if status.status in (RUNNING, PENDING):  # the trial process ended before it could say how
        tail = result.get("tail") or []
        _fail(sweep, trial, f"sweep-trial exited {result.get('exit')}: {tail[-1] if tail else 'no output'}")
        return FAILED
    return status.status


def _cancel(ray, running: dict, sweep: Sweep) -> None:
    """Ctrl-C: kill the running trials' tasks and mark what they left as interrupted. Force: Ray's gentle
    cancel did not reach a task blocked on its trial process in our tests; the trial process dies with its
    worker and its training with it (the guard), as when a worker is killed."""
    refs = list(running)
    done, unfinished = ray.wait(refs, num_returns=len(refs), timeout=0)
    for ref in unfinished:  # cancelling a task that has just ended trips a Ray check: only unfinished ones
        ray.cancel(ref, force=True)
    try:
        ray.wait(unfinished, num_returns=len(unfinished), timeout=30)
    except KeyboardInterrupt:
        pass
    for trial in running.values():
        status = sweep.status(trial.index)
        if status.status in (RUNNING, PENDING):
            status.status, status.ended = INTERRUPTED, now()
            sweep.save_status(status)


def run_sweep_on_ray(
    sweep: Sweep,
    trials: list[Trial],
    on_trial: Callable[[Trial, str], None],
    address: str | None,
    fail_fast: bool,
    grace: float = 30.0,
    say: Callable[[str], None] | None = None,
) -> SweepOutcome:
    """The trials as Ray tasks; the outcome as run_sweep_locally's. A failed trial (a worker that died
    included) is recorded and the sweep goes on unless `fail_fast`; Ctrl-C stops it, resumable."""
    ray = _import_ray()
    outcome = SweepOutcome(sweep, ExitCode.OK)
    with sweep_lock(sweep.root), run_lock(sweep.root), dataset_lock(sweep.root, "sweep"):
        started = _connect(ray, address)
        try:
            resources, parallel = task_resources(ray)
            task = ray.remote(max_retries=0, **resources)(trial_task)
            waiting = list(trials)
            running: dict[Any, Trial] = {}
            cached: set[int] = set()  # cache groups a trained trial has made the latents of
            progress = TrialProgress()
            try:
                while waiting or running:
                    while waiting and may_start(waiting[0], list(running.values()), cached, parallel):
                        trial = waiting.pop(0)
                        on_trial(trial, "start")
                        running[task.remote(str(sweep.root), sweep.id, trial.index, grace)] = trial
                    done, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
                    if say is not None and running and progress.due():  # from the runs' events.jsonl
                        for trial in running.values():
                            progress.last[trial.name] = latest_step(sweep, trial) or "starting"
                        where = [(f"on {sweep.status(t.index).host or 'Ray'}", t) for t in running.values()]
                        text = progress.line(where)
                        if text:
                            say(text)
                    for ref in done:
                        trial = running.pop(ref)
                        status = _settle(ray, ref, sweep, trial)
                        on_trial(trial, status)
                        if status == TRAINED:
                            cached.add(trial.cache_group)
                        if status == INTERRUPTED:  # the trial process was stopped (SIGTERM on its host)
                            outcome.exit_code, outcome.stopped_at = ExitCode.INTERRUPTED, trial.index
                            waiting.clear()
                        elif status == FAILED:
                            outcome.exit_code = ExitCode.FAILED
                            if fail_fast:
                                waiting.clear()
            except KeyboardInterrupt:
                _cancel(ray, running, sweep)
                for trial in running.values():
                    on_trial(trial, sweep.status(trial.index).status)
                outcome.exit_code = ExitCode.INTERRUPTED
                outcome.stopped_at = min((t.index for t in running.values()), default=None)
        finally:
            if started:
                ray.shutdown()
    return outcome
