"""Nothing orphaned, nothing unrecorded: SIGTERM (`kill`, systemd, `docker stop`, `timeout`) and SIGHUP
(the SSH connection drops) stop `kohya-wrap run` as Ctrl-C does — the whole training group within the
grace period, a record that says "stopped", exit 128 + the signal — and `run --detach` trains on in the
background while `watch` follows it. On the stand-in sd-scripts that replays a real run."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import recorded_run_project


@pytest.fixture
def project(tmp_path) -> Path:
    return recorded_run_project(tmp_path / "my lora 项目")


def trainer_processes(trainer: Path) -> list[Path]:
    def cmdline(path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError:  # ended meanwhile
            return b""

    return [p for p in Path("/proc").glob("[0-9]*/cmdline") if str(trainer).encode() in cmdline(p)]


def only_record(root: Path) -> dict:
    (run,) = [p for p in (root / "runs").iterdir() if p.is_dir()]
    return json.loads((run / "manifest.json").read_text(encoding="utf-8"))


def start_run(project: Path, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "kohya_wrap", "run", str(project), "--plain", "--grace", "5", *args],
        env=dict(os.environ),
        start_new_session=True,  # the test, not a terminal, sends the signal
        **popen,
    )


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_stop_signal_stops_the_whole_tree_and_the_record_says_so(replay, project, trainer, signum, code):
    replay("pipe_steps", speed=1.5)
    process = start_run(project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("checkpoint saved:"):  # the step-3 checkpoint: training goes on to step 6
            break
    sent = time.monotonic()
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    name = signal.Signals(signum).name
    assert process.returncode == code, out + err
    assert time.monotonic() - sent < 10
    assert f"stopping ({name} received): SIGINT sent to the training processes" in out
    assert f"stopped ({name}); sd-scripts saves nothing on interrupt, so the progress kept is" in out
    assert trainer_processes(trainer) == []
    record = only_record(project)
    assert record["verdict"] == f"stopped ({name})" and record["exit_code"] == code
    assert 3 <= record["steps"]["reached"] < 6 and record["outputs"]  # the step-3 checkpoint is kept


def test_the_terminal_hanging_up_still_stops_and_records(replay, project, trainer):
    """SIGHUP as an SSH drop delivers it: the terminal is already gone, so every write to it fails (EIO);
    supervising, stopping and recording go on regardless."""
    replay("pipe_steps", speed=1.5)
    controller, terminal = pty.openpty()
    process = start_run(project, stdout=terminal, stderr=terminal)
    os.close(terminal)
    seen = b""
    deadline = time.monotonic() + 60
    while b"step 2/" not in seen and time.monotonic() < deadline:
        try:
            seen += os.read(controller, 4096)
        except OSError:
            break
    assert b"step 2/" in seen, seen.decode(errors="replace")
    os.close(controller)  # the terminal goes away: writes to it now fail
    process.send_signal(signal.SIGHUP)
    assert process.wait(timeout=30) == 129
    assert trainer_processes(trainer) == []
    assert only_record(project)["verdict"] == "stopped (SIGHUP)"


def test_detach_trains_in_the_background_and_watch_follows_it(replay, project, trainer, cli):
    replay("pipe_steps")
    attached = cli("run", project, "--plain")
    assert attached.code == 0, attached.err
    reference = only_record(project)
    for run in (project / "runs").iterdir():  # one record at a time, to compare
        if run.is_dir():
            run.rename(project / f"attached-{run.name}")

    replay("pipe_steps", speed=4)
    started = cli("run", project, "--detach")
    assert started.code == 0, started.out + started.err
    assert "is training in the background (supervisor pid" in started.out
    assert "kohya-wrap watch" in started.out
    listing = cli("runs", project)
    assert "running (in the background, pid" in listing.out, listing.out
    busy = cli("tags", "add", project, "smiling")  # the run holds the dataset lock: no caption edit under it
    assert busy.code == 2 and "another kohya-wrap command is changing this project's images or captions" in busy.err

    watched = cli("watch", project, "--plain")
    assert watched.code == 0, watched.out + watched.err
    out = watched.out
    assert "planned: 6 steps" in out and "step 6/6" in out and ": trained · record in runs/" in out
    assert out.index("step 1/6") < out.index("step 6/6") < out.index(": trained")
    record = only_record(project)
    for key in ("verdict", "exit_code", "steps", "final_loss", "child_exit_code"):
        assert record[key] == reference[key], key
    assert [Path(o["path"]).name for o in record["outputs"]] == [Path(o["path"]).name for o in reference["outputs"]]
    assert trainer_processes(trainer) == []
    again = cli("watch", project, "--plain")  # a finished run: replayed from its record
    assert again.code == 0 and "step 6/6" in again.out and ": trained" in again.out


def test_a_detached_run_stopped_with_sigterm_is_recorded_as_stopped(replay, project, trainer, cli):
    replay("pipe_steps", speed=1.5)
    assert cli("run", project, "--detach").code == 0
    (run,) = [p for p in (project / "runs").iterdir() if p.is_dir()]
    supervisor = json.loads((run / "supervisor.json").read_text(encoding="utf-8"))
    deadline = time.monotonic() + 60
    while b'"step": 2' not in (run / "events.jsonl").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(supervisor["pid"], signal.SIGTERM)
    watched = cli("watch", project, "--plain")
    assert watched.code == 143, watched.out + watched.err
    assert "stopped (SIGTERM)" in watched.out
    assert only_record(project)["verdict"] == "stopped (SIGTERM)"
    assert trainer_processes(trainer) == []


def test_watch_says_when_there_is_nothing_to_watch(project, cli):
    none = cli("watch", project)
    assert none.code == 2 and "no runs yet" in none.err
    assert cli("watch", project, "--run", "../x").code == 2
