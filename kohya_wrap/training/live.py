"""A run while it goes on: whether it still runs, and following it (`kohya-wrap watch`).

The supervisor writes runs/<id>/supervisor.json as it starts (its pid and that process's start time, so
a reused pid is not taken for it) and events.jsonl as events come, flushed each time, starting with a
`Plan` line (the totals the dashboard shows before sd-scripts prints its own). `watch` replays that file
into the same RunState and renderers `run` uses and follows it until the run's record appears.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from kohya_wrap.fsutil import write_text_atomic
from kohya_wrap.launch.events import Event, event_from_dict
from kohya_wrap.training.record import RunFiles, has_record
from kohya_wrap.training.state import RunState

SUPERVISOR = "supervisor.json"


def _start_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, /proc/<pid>/stat field 22); None where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return int(fields[19]) if len(fields) > 19 else None


def _alive(pid: int, ticks: int | None) -> bool:
    """Whether the process that wrote a supervisor file still runs (not a zombie, not a reused pid)."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc").is_dir():
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            return False
        if fields and fields[0] == "Z":
            return False
        return ticks is None or (len(fields) > 19 and int(fields[19]) == ticks)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_supervisor(run_dir: Path, detached: bool, training_pgid: int | None = None) -> None:
    """Written as the run starts, and again with the training processes' group once they run (what to
    `kill -- -PGID` should the supervisor itself be killed with SIGKILL)."""
    pid = os.getpid()
    data = {
        "pid": pid,
        "pid_start_ticks": _start_ticks(pid),
        "host": platform.node(),
        "started": datetime.now(timezone.utc).isoformat(),
        "detached": detached,
        "training_pgid": training_pgid,
    }
    write_text_atomic(run_dir / SUPERVISOR, json.dumps(data, indent=2) + "\n")


@dataclass(frozen=True)
class Supervisor:
    pid: int
    detached: bool
    alive: bool


def supervisor(run_dir: Path) -> Supervisor | None:
    """The run's supervisor as its file says, and whether it still runs; None without a readable file."""
    try:
        data = json.loads((run_dir / SUPERVISOR).read_text(encoding="utf-8"))
        pid, ticks = int(data["pid"]), data.get("pid_start_ticks")
        same_host = data.get("host", platform.node()) == platform.node()
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    alive = same_host and _alive(pid, ticks if isinstance(ticks, int) else None)
    return Supervisor(pid, bool(data.get("detached")), alive)


def run_state(run_dir: Path) -> tuple[str, Supervisor | None]:
    """The run's status — "ended" (it has a record), "running", "ended without a record" (its supervisor
    is gone), or "incomplete" (no record and no supervisor file: a run from an older kohya-wrap, or one
    killed before it wrote either) — and its supervisor as its file says (None: ended, or no file)."""
    if has_record(run_dir):
        return "ended", None
    found = supervisor(run_dir)
    if found is None:
        return ("incomplete" if not (run_dir / SUPERVISOR).exists() else "ended without a record"), None
    return ("running" if found.alive else "ended without a record"), found


def run_status(run_dir: Path) -> str:
    return run_state(run_dir)[0]


def plan_event(state: RunState, plan: Any) -> dict[str, Any]:
    """The first line of events.jsonl: the plan's totals (and where a resumed run starts)."""
    return {
        "event": "Plan",
        "total_steps": state.total,
        "epochs": state.epochs,
        "steps_per_epoch": state.steps_per_epoch,
        "samples_after_epochs": state.samples_after_epochs,
        "resumed_step": state.settled_step,
        "name": plan.name,
    }


def state_from_plan(data: dict[str, Any], lr_at: Callable[[int], float | None] | None = None) -> RunState:
    return RunState(
        settled_step=int(data.get("resumed_step") or 0),
        total=int(data.get("total_steps") or 0),
        epochs=int(data.get("epochs") or 0),
        steps_per_epoch=int(data.get("steps_per_epoch") or 0),
        samples_after_epochs=bool(data.get("samples_after_epochs")),
        lr_at=lr_at,
    )


def follow(run_dir: Path, poll_s: float = 0.25) -> Iterator[dict[str, Any] | Event | None]:
    """The run's events as they are written: the Plan line as a dict, then events; None while nothing
    new has come (a chance to redraw). Ends when the run has its record and every line is read, or when
    its supervisor is gone without one."""
    path = RunFiles(run_dir).events
    offset, partial = 0, b""
    while True:
        ended = run_status(run_dir) != "running"  # asked before reading, so nothing written after is missed
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except FileNotFoundError:
            data = b""
        offset += len(data)
        lines = (partial + data).split(b"\n")
        partial = lines.pop()  # an unfinished last line waits for the rest
        for line in lines:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict) and item.get("event") == "Plan":
                yield item
            else:
                event = event_from_dict(item)
                if event is not None:
                    yield event
        if ended:
            return
        if not lines:
            yield None
            time.sleep(poll_s)
