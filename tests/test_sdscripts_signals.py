"""Stop signals and detached runs with the real sd-scripts (marker `sdscripts`): SIGTERM (`kill`, systemd,
`docker stop`) and SIGHUP (the SSH connection drops) stop the whole training group within the grace
period with a record that says "stopped" and the checkpoints kept; `run --detach` trains in the
background, `watch` shows its steps as they come, and the detached run ends with the same record as an
attached one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.sdscripts

GRACE = 20


@pytest.fixture
def demo(tmp_path, real_sdscripts, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from kohya_wrap.demo import ensure_demo_model, write_demo_project
    from kohya_wrap.sdscripts.locate import locate_sd_scripts

    model, tokenizers = ensure_demo_model(locate_sd_scripts(), lambda *a, **k: None)

    def build(name: str, steps: int) -> Path:
        root = tmp_path / name
        write_demo_project(root, model, tokenizers, steps=steps)
        return root

    return build


def run_processes(root: Path) -> list[str]:
    """The processes whose command line names the project (kohya-wrap, accelerate, train_network.py)."""
    found = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = path.read_bytes()
        except OSError:  # ended meanwhile
            continue
        if str(root).encode() in line and str(os.getpid()).encode() != path.parent.name.encode():
            found.append(line.replace(b"\0", b" ").decode(errors="replace"))
    return found


def only_record(root: Path) -> dict:
    (run,) = [p for p in (root / "runs").iterdir() if p.is_dir()]
    return json.loads((run / "manifest.json").read_text(encoding="utf-8"))


def kohya_wrap(*args: str | Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "kohya_wrap", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
        start_new_session=True,  # a terminal's signals reach only what the test sends
        **kwargs,
    )


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_stop_signal_stops_the_whole_run_and_records_it(demo, signum, code):
    root = demo(f"stop {signum.name} 项目", steps=12)  # a checkpoint every 6 steps
    process = kohya_wrap("run", root, "--json", "--grace", GRACE)
    assert process.stdout is not None
    for line in process.stdout:
        event = json.loads(line) if line.startswith("{") else {}
        if event.get("event") == "Progress" and event.get("loss") is not None and event["step"] >= 7:
            break
    assert run_processes(root), "the run was not training when signalled"
    sent = time.monotonic()
    process.send_signal(signum)
    process.communicate(timeout=GRACE + 30)
    took = time.monotonic() - sent
    assert process.returncode == code
    assert took < GRACE, took
    assert run_processes(root) == []  # no orphan: not accelerate, not train_network.py
    record = only_record(root)
    assert record["verdict"] == f"stopped ({signum.name})" and record["exit_code"] == code
    assert (root / "model" / "kwdemo-step00000006.safetensors").is_file()  # the checkpoint is kept


def test_detached_run_is_watched_live_and_records_like_an_attached_one(demo, cli):
    attached_root = demo("attached", steps=8)
    attached = kohya_wrap("run", attached_root, "--plain")
    out, err = attached.communicate(timeout=600)
    assert attached.returncode == 0, out + err
    reference = only_record(attached_root)

    root = demo("detached 项目", steps=8)
    started = kohya_wrap("run", root, "--detach")
    out, err = started.communicate(timeout=180)
    assert started.returncode == 0, out + err
    assert "is training in the background" in out
    assert "running (in the background, pid" in cli("runs", root).out

    watcher = kohya_wrap("watch", root, "--plain")
    assert watcher.stdout is not None
    steps_seen: list[tuple[float, str]] = []
    lines = []
    for line in watcher.stdout:
        lines.append(line)
        if " step " in f" {line}" and "/8" in line:
            steps_seen.append((time.monotonic(), line))
    watcher.wait(timeout=60)
    text = "".join(lines)
    assert watcher.returncode == 0, text + watcher.stderr.read()
    assert "step 8/8" in text and ": trained · record in runs/" in text
    # live: the steps arrived one by one as sd-scripts printed them, not all at once from the record
    assert len(steps_seen) >= 3 and steps_seen[-1][0] - steps_seen[0][0] > 1.0, steps_seen
    assert run_processes(root) == []

    record = only_record(root)
    for key in ("verdict", "exit_code", "steps", "child_exit_code"):
        assert record[key] == reference[key], key
    assert record["final_loss"] == pytest.approx(reference["final_loss"], rel=1e-3)
    assert [Path(o["path"]).name for o in record["outputs"]] == [Path(o["path"]).name for o in reference["outputs"]]
