"""Where a running trial is, for a sweep whose trials train in other processes (`--gpus`) or on other
machines (`--backend ray`): a line every PROGRESS_EVERY_S seconds with each running trial's step and loss.

A side-by-side trial's progress comes from the NDJSON its `sweep-trial --json` prints (TrialProgress.feed);
a Ray trial's from its run's own events.jsonl on the shared project folder, the run found by the
supervisor's pid and host that the trial's status file records (latest_step).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from kohya_wrap.sweep.state import Sweep, Trial
from kohya_wrap.training.live import SUPERVISOR
from kohya_wrap.training.record import RunFiles, run_dirs

PROGRESS_EVERY_S = 15.0  # how often the line of the running trials is printed
TAIL_BYTES = 64 * 1024  # how much of an events.jsonl is read for its last step


def step_text(event: dict[str, Any]) -> str | None:
    """`step 3/10 · loss 0.1234` from a Progress event (its JSON form); None for any other event."""
    if not isinstance(event, dict) or event.get("event") != "Progress":
        return None
    loss = event.get("loss")
    return f"step {event.get('step')}/{event.get('total')}" + (
        f" · loss {loss:.4g}" if isinstance(loss, (int, float)) else ""
    )


class TrialProgress:
    """The last step each running trial reported, and the line that says them, at most every `every_s`."""

    def __init__(self, every_s: float | None = None) -> None:
        self.every_s = PROGRESS_EVERY_S if every_s is None else every_s
        self.last: dict[str, str] = {}  # trial name → "step 3/10 · loss 0.12"
        self._partial: dict[str, str] = {}
        self._said = time.monotonic()

    def feed(self, name: str, text: str) -> None:
        """Output of a trial's `sweep-trial --json`, as it arrives (lines may be split anywhere)."""
        lines = (self._partial.pop(name, "") + text).split("\n")
        self._partial[name] = lines.pop()
        for line in lines:
            try:
                found = step_text(json.loads(line))
            except ValueError:
                continue
            if found:
                self.last[name] = found

    def due(self) -> bool:
        return time.monotonic() - self._said >= self.every_s

    def line(self, running: list[tuple[str, Trial]], force: bool = False) -> str | None:
        """One line for the trials running now ((where, trial) each), at most every `every_s` seconds."""
        if not running or not (force or self.due()):
            return None
        self._said = time.monotonic()
        parts = [f"{t.name} ({where}): {self.last.get(t.name, 'starting')}" for where, t in running]
        return "   " + " | ".join(parts)


def latest_step(sweep: Sweep, trial: Trial) -> str | None:
    """The last step a trial running elsewhere reported, from its run's events.jsonl; None before it has
    a run (or when the run folder is not readable from here)."""
    status = sweep.status(trial.index)
    if status.pid is None or status.started is None:
        return None
    began, ended = _when(status.started), _when(status.ended)
    for run_dir in run_dirs(sweep.root / "runs")[:50]:
        try:
            supervisor = json.loads((run_dir / SUPERVISOR).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if supervisor.get("pid") != status.pid or supervisor.get("host") != status.host:
            continue
        started = _when(supervisor.get("started"))  # one process may have run several trials (the local sweep)
        if started is None or began is None or started < began or (ended is not None and started > ended):
            continue
        return _last_step(RunFiles(run_dir).events)
    return None


def _when(stamp: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(stamp).replace(microsecond=0) if isinstance(stamp, str) else None
    except ValueError:
        return None


def _last_step(events: Path) -> str | None:
    try:
        with open(events, "rb") as handle:
            handle.seek(max(0, events.stat().st_size - TAIL_BYTES))
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            found = step_text(json.loads(line))
        except ValueError:
            continue
        if found:
            return found
    return None
