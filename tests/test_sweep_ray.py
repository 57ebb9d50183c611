"""`kohya-wrap sweep --backend ray` against a real local Ray cluster the test starts (`ray start --head`,
marker `ray`): the 2 × 2 sweep gives 4 trained records; a Ray worker killed mid-trial fails that trial
and only that one, and leaves no training process behind. The Ray head is started without the test's
KOHYA_WRAP_* / XDG_* settings, so the trials see them only through the task's runtime_env."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import recorded_run_project
from kohya_wrap.sweep.state import latest_sweep, sweep_ids

VARY = ("--vary", "training.learning_rate=1e-4,3e-4", "--vary", "training.network_dim=4,8")
RAY = Path(sys.executable).parent / "ray"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head():
    """A Ray head on this machine (2 CPUs), its address; `ray stop` afterwards, always."""
    pytest.importorskip("ray")
    port = _free_port()
    temp = Path(tempfile.mkdtemp(prefix="kwray", dir="/tmp"))  # Ray's socket paths must stay short
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KOHYA_WRAP_", "XDG_", "HF_", "RAY_"))}
    started = subprocess.run(
        [str(RAY), "start", "--head", "--num-cpus", "2", "--port", str(port), "--disable-usage-stats"]
        + ["--temp-dir", str(temp), "--include-dashboard", "false", "--node-ip-address", "127.0.0.1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(RAY), "stop", "--force"], env=env, capture_output=True, timeout=120, check=False)
        shutil.rmtree(temp, ignore_errors=True)


def manifests(root: Path) -> list[dict]:
    found = [json.loads(p.read_text(encoding="utf-8")) for p in root.glob("runs/*/manifest.json")]
    return sorted(found, key=lambda m: m["sweep"]["trial"])


def processes(needle: str) -> list[int]:
    found = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if needle.encode() in path.read_bytes():
                found.append(int(path.parent.name))
        except OSError:
            pass
    return found


@pytest.mark.ray
def test_a_sweep_on_a_ray_cluster_trains_every_trial(replay, tmp_path, ray_head, cli):
    root = recorded_run_project(tmp_path / "ray sweep")
    replay("pipe_steps")
    result = cli("sweep", root, *VARY, "--plain", "--backend", "ray", "--address", ray_head)
    assert result.code == 0, result.out + result.err
    assert "all 4 trials trained" in result.out
    sweep = latest_sweep(root)
    assert [s.status for s in sweep.statuses()] == ["trained"] * 4
    records = manifests(root)
    assert [r["sweep"]["trial"] for r in records] == [1, 2, 3, 4]
    assert all(r["verdict"] == "trained" for r in records)
    assert {r["sweep"]["id"] for r in records} == {sweep.id}
    statuses = sweep.statuses()
    assert all(s.pid and s.pid != os.getpid() for s in statuses)  # each trial ran in a process of its own
    finals = {r["outputs"][-1]["path"] for r in records}
    assert len(finals) == 4


@pytest.mark.ray
def test_a_ray_worker_killed_mid_trial_fails_that_trial_only(replay, tmp_path, ray_head, trainer):
    root = recorded_run_project(tmp_path / "ray kill")
    replay("pipe_steps", speed=6)  # about 4 s a trial
    sweep = subprocess.Popen(
        [sys.executable, "-m", "kohya_wrap", "sweep", str(root), *VARY, "--plain", "--backend", "ray"]
        + ["--address", ray_head],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        status_file = None
        while time.monotonic() < deadline and sweep.poll() is None:
            ids = sweep_ids(root)
            if ids:
                status_file = root / "sweeps" / ids[-1] / "trials" / "2.json"
                if status_file.is_file():
                    status = json.loads(status_file.read_text(encoding="utf-8"))
                    if status["status"] == "running" and status["pid"] and processes(str(trainer)):
                        break
            time.sleep(0.1)
        else:
            pytest.fail("trial 2 never ran: " + (sweep.communicate(timeout=30)[0] if sweep.poll() is not None else ""))
        trial_pid = status["pid"]
        worker = int(Path(f"/proc/{trial_pid}/stat").read_text().rpartition(")")[2].split()[1])  # its parent
        assert b"ray::" in Path(f"/proc/{worker}/cmdline").read_bytes()  # the Ray worker running the task
        os.kill(worker, signal.SIGKILL)
        out, _ = sweep.communicate(timeout=240)
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
    assert sweep.returncode == 1, out
    the_sweep = latest_sweep(root)
    statuses = {s.index: s for s in the_sweep.statuses()}
    assert [statuses[i].status for i in (1, 2, 3, 4)] == ["trained", "failed", "trained", "trained"], out
    assert statuses[2].error and statuses[2].error.startswith("the Ray worker died"), statuses[2].error
    assert "trial t2: failed" in out and "1 trial(s) did not train" in out
    trained = [m for m in manifests_any(root) if m.get("verdict") == "trained"]
    assert sorted(m["sweep"]["trial"] for m in trained) == [1, 3, 4]
    time.sleep(1.0)
    assert processes(str(trainer)) == [], "training outlived its killed Ray worker"
    assert [p for p in processes("sweep-trial") if p != os.getpid()] == []


def manifests_any(root: Path) -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in root.glob("runs/*/manifest.json")]


@pytest.mark.ray
@pytest.mark.sdscripts
def test_a_real_two_by_two_sweep_on_ray(tmp_path, real_sdscripts, ray_head, cli):
    from kohya_wrap.demo import ensure_demo_model, write_demo_project
    from kohya_wrap.sdscripts.locate import locate_sd_scripts

    model, tokenizers = ensure_demo_model(locate_sd_scripts(), lambda *a, **k: None)
    root = tmp_path / "ray sweep 项目"
    write_demo_project(root, model, tokenizers, steps=4)
    result = cli("sweep", root, *VARY, "--plain", "--backend", "ray", "--address", ray_head)
    assert result.code == 0, result.out + result.err
    records = manifests(root)
    assert [r["sweep"]["trial"] for r in records] == [1, 2, 3, 4]
    assert all(r["verdict"] == "trained" for r in records)
    finals = {Path(r["outputs"][-1]["path"]) for r in records}
    assert len(finals) == 4 and all(p.stat().st_size > 100_000 for p in finals)
    assert len({p.read_bytes() for p in finals}) == 4


def test_without_ray_installed_the_backend_says_how_to_get_it(replay, tmp_path, cli, monkeypatch):
    """Default suite: Ray absent (an import of it fails) → one line with the fix, exit 2, nothing trained."""
    root = recorded_run_project(tmp_path / "no ray")
    replay("pipe_steps")
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = cli("sweep", root, *VARY, "--plain", "--backend", "ray")
    assert result.code == 2, result.out + result.err
    assert "--backend ray needs Ray — pip install 'kohya-wrap[ray]'" in result.err
    assert "Traceback" not in result.err
    assert not list(root.glob("runs/*/manifest.json"))


def test_the_trials_get_the_drivers_kohya_wrap_xdg_and_hf_settings():
    from kohya_wrap.sweep.ray_backend import forwarded_env

    env = {"KOHYA_WRAP_SD_SCRIPTS": "/sd", "XDG_CACHE_HOME": "/c", "HF_HOME": "/h", "HOME": "/home/x", "PATH": "/b"}
    assert forwarded_env(env) == {"KOHYA_WRAP_SD_SCRIPTS": "/sd", "XDG_CACHE_HOME": "/c", "HF_HOME": "/h"}


@pytest.mark.ray
def test_ctrl_c_on_the_driver_interrupts_the_running_trial_and_resume_finishes(replay, tmp_path, ray_head, trainer):
    root = recorded_run_project(tmp_path / "ray stop")
    replay("pipe_steps", speed=6)
    argv = [sys.executable, "-m", "kohya_wrap", "sweep", str(root), "--plain", "--backend", "ray"]
    sweep = subprocess.Popen(
        [*argv, *VARY, "--address", ray_head, "--grace", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and sweep.poll() is None:
            ids = sweep_ids(root)
            status_file = root / "sweeps" / ids[-1] / "trials" / "2.json" if ids else None
            if status_file and status_file.is_file() and processes(str(trainer)):
                if json.loads(status_file.read_text(encoding="utf-8"))["status"] == "running":
                    break
            time.sleep(0.1)
        sweep.send_signal(signal.SIGINT)
        out, _ = sweep.communicate(timeout=120)
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
    assert sweep.returncode == 130, out
    assert "stopped at trial 2" in out
    statuses = {s.index: s.status for s in latest_sweep(root).statuses()}
    assert statuses == {1: "trained", 2: "interrupted", 3: "pending", 4: "pending"}, out
    time.sleep(1.0)
    assert processes(str(trainer)) == []
    resumed = subprocess.run(
        [*argv, "--resume", "--address", ray_head], capture_output=True, text=True, env=dict(os.environ), timeout=180
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert [s.status for s in latest_sweep(root).statuses()] == ["trained"] * 4
