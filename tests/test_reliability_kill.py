"""No orphaned training when a supervisor is killed: SIGKILL (the OOM killer, `kill -9`, a Ray worker
killed under a sweep trial) cannot be caught, so `run` cannot stop its training processes itself; the
guard started beside them (kohya_wrap/launch/guard.py) does, and `die_with_parent` children die with
the thread that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import recorded_run_project
from kohya_wrap.launch.process import Child, Exited
from test_reliability_run import start_run, trainer_processes


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_gone(pids, timeout: float) -> float:
    start = time.monotonic()
    while any(_alive(pid) for pid in pids) and time.monotonic() - start < timeout:
        time.sleep(0.05)
    return time.monotonic() - start


def guards() -> list[int]:
    """The guard processes now running (this session's and any other's)."""
    found = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"launch/guard.py" in path.read_bytes():
                found.append(int(path.parent.name))
        except OSError:
            pass
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_sigkill_of_run_leaves_no_training_behind(replay, tmp_path, trainer):
    project = recorded_run_project(tmp_path / "killed")
    # killed while sd-scripts loads the model: 1.9 s without a byte of output (at 4x the recording's
    # speed), so the training cannot die of a write to its dead supervisor's pipes before then
    replay("pipe_steps", speed=4.0)
    process = start_run(project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not list(project.glob("runs/*/train.log")) and time.monotonic() < deadline:
        time.sleep(0.05)
    (log,) = project.glob("runs/*/train.log")
    while b"UNet2DConditionModel" not in log.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(trainer_processes(trainer)) >= 2, "accelerate and the training script should be running"
    process.kill()  # SIGKILL: no handler runs, no record is written
    process.wait(timeout=10)
    deadline = time.monotonic() + 1.2
    while trainer_processes(trainer) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert trainer_processes(trainer) == [], "training outlived its SIGKILLed supervisor"


SUPERVISOR = """
import sys, time
from kohya_wrap.launch.process import Child
child = Child([sys.executable, "-c", "import time; time.sleep(60)"])
print(child.process.pid, flush=True)
time.sleep(60)
"""


def test_the_guard_stops_the_group_once_its_supervisor_is_gone(tmp_path):
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert supervisor.stdout is not None
    pid = int(supervisor.stdout.readline())
    assert _alive(pid)
    supervisor.kill()
    supervisor.wait(timeout=10)
    assert _wait_gone([pid], 8) < 8, "the child outlived its killed supervisor"


def test_a_child_that_ends_releases_its_guard_and_nothing_is_killed(tmp_path):
    before = set(guards())
    child = Child([sys.executable, "-c", "print('hi')"])
    mine = set(guards()) - before
    while not isinstance(child.poll(), Exited):
        pass
    assert child.process.returncode == 0
    assert _wait_gone(mine, 3) < 3, "the guard should end once its child has"


def test_a_stopped_child_releases_its_guard(tmp_path):
    before = set(guards())
    child = Child([sys.executable, "-c", "import time; time.sleep(60)"])
    mine = set(guards()) - before
    child.stop(0.0, escalate_s=2.0)
    assert not child.group_alive()
    assert _wait_gone(mine, 3) < 3


PARENT = """
import sys, time
from kohya_wrap.launch.process import Child
child = Child([sys.executable, "-c", "import time; time.sleep(60)"], guard=False, die_with_parent=True)
print(child.process.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_die_with_parent_children_die_with_it_even_unguarded(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    assert _alive(pid)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(timeout=10)
    assert _wait_gone([pid], 3) < 3


def test_the_guard_ignores_a_pipe_closed_before_any_group_was_named(tmp_path):
    guard = Path(__file__).resolve().parents[1] / "kohya_wrap" / "launch" / "guard.py"
    done = subprocess.run(
        [sys.executable, "-I", str(guard), "0.1"], input=b"", capture_output=True, timeout=10, check=False
    )
    assert done.returncode == 0 and done.stderr == b""
    done = subprocess.run(
        [sys.executable, "-I", str(guard), "0.1"], input=b"1\n", capture_output=True, timeout=10, check=False
    )
    assert done.returncode == 0, textwrap.shorten(done.stderr.decode(), 300)  # never init's group
