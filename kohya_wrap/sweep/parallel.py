"""`sweep --gpus 0,1`: trials side by side, one per GPU (CUDA_VISIBLE_DEVICES), each in its own
`kohya-wrap sweep-trial` process (supervised like any child: its own group, output drained into
sweeps/<id>/<trial>/trial.log, Ctrl-C forwarded).

The sweep holds the project's run lock and dataset lock for all of them (a trial started here skips
taking them). Cache groups run one after another — sd-scripts names a latent cache file by the image's
own size, so two groups cannot keep theirs at once — and a group's trials run side by side only once one
of them has trained alone, making the cache the others then read (runner.may_start).
"""

from __future__ import annotations

import os
from typing import Any, Callable

from kohya_wrap.errors import ExitCode
from kohya_wrap.fsutil import dataset_lock
from kohya_wrap.launch.process import Child, Exited, Output
from kohya_wrap.sweep.progress import TrialProgress
from kohya_wrap.sweep.runner import SweepOutcome, may_start, stopped, sweep_lock, trial_argv
from kohya_wrap.sweep.state import FAILED, INTERRUPTED, RUNNING, TRAINED, Sweep, Trial, now
from kohya_wrap.training.supervise import run_lock

STOP_GRACE_S = 30.0


def run_sweep_in_parallel(
    sweep: Sweep,
    trials: list[Trial],
    gpus: list[str],
    on_trial: Callable[[Trial, str], None],
    grace: float,
    fail_fast: bool,
    say: Callable[[str], None] | None = None,
) -> SweepOutcome:
    """`say`: where the progress line of the running trials goes (none with --json)."""
    outcome = SweepOutcome(sweep, ExitCode.OK)
    progress = TrialProgress()
    running: dict[str, tuple[Trial, Child, Any]] = {}  # gpu → its trial
    cached: set[int] = set()  # cache groups a trained trial has made the latents of

    def start(trial: Trial, gpu: str) -> None:
        folder = sweep.folder / trial.name
        folder.mkdir(parents=True, exist_ok=True)
        log = open(folder / "trial.log", "ab")
        env = dict(os.environ, CUDA_VISIBLE_DEVICES=gpu)
        on_trial(trial, "start")
        running[gpu] = (trial, Child(trial_argv(sweep.root, sweep.id, trial.index, grace), env, sweep.root, log), log)

    def finished(gpu: str, code: int) -> bool:
        """Record how the trial on `gpu` ended; False when the sweep must stop."""
        trial, _, log = running.pop(gpu)
        log.close()
        status = sweep.status(trial.index)
        if status.status == RUNNING:  # the trial process died before it could say (killed, crashed)
            status.status, status.ended = (INTERRUPTED if stopped(code, "") else FAILED), now()
            status.error = (
                status.error or f"the trial process exited with {code} (log: {sweep.folder / trial.name}/trial.log)"
            )
            sweep.save_status(status)
        on_trial(trial, status.status)
        if status.status == TRAINED:
            cached.add(trial.cache_group)
        if status.status == INTERRUPTED:
            outcome.exit_code, outcome.stopped_at = ExitCode.INTERRUPTED, trial.index
            return False
        if status.status == FAILED:
            outcome.exit_code = ExitCode.FAILED
            return not fail_fast
        return True

    def wait_one() -> bool:
        while True:
            for gpu, (trial, child, _) in list(running.items()):
                item = child.poll(0.2)
                while item is not None and not isinstance(item, Exited):
                    if isinstance(item, Output) and item.stream == "stdout":
                        progress.feed(trial.name, item.text)
                    item = child.poll(0)
                if isinstance(item, Exited):
                    return finished(gpu, item.returncode)
            text = progress.line([(f"GPU {gpu}", t) for gpu, (t, _, _) in running.items()])
            if text and say is not None:
                say(text)

    with sweep_lock(sweep.root), run_lock(sweep.root), dataset_lock(sweep.root, "sweep"):
        waiting = list(trials)
        try:
            while waiting or running:
                while waiting and may_start(waiting[0], [t for t, _, _ in running.values()], cached, len(gpus)):
                    start(waiting.pop(0), next(g for g in gpus if g not in running))
                if not wait_one():
                    return _stop_all(running, outcome)
        except KeyboardInterrupt:
            outcome.exit_code = ExitCode.INTERRUPTED
            return _stop_all(running, outcome, interrupted=True)
    return outcome


def _stop_all(running: dict, outcome: SweepOutcome, interrupted: bool = False) -> SweepOutcome:
    """Stop the trials still running (Ctrl-C reaches each as it reaches `run`) and wait for their records."""
    for gpu, (trial, child, log) in list(running.items()):
        child.stop(STOP_GRACE_S)
        log.close()
        if interrupted and outcome.stopped_at is None:
            outcome.stopped_at = trial.index
        running.pop(gpu)
    return outcome
