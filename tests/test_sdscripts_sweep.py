"""`kohya-wrap sweep` with the real sd-scripts (marker `sdscripts`): a 2 × 2 sweep of the demo model
(learning rate × dim, 6 steps each) on the CPU. The latents are cached to disk by the first trial and
reused by the others; Ctrl-C during trial 3 (after its step-3 state) stops the sweep, `--resume` resumes
trial 3 from that state and runs trial 4; no trial trains twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sdscripts

VARY = ("--vary", "training.learning_rate=1e-4,1e-3", "--vary", "training.network_dim=4,8")


@pytest.fixture
def demo_project(tmp_path, real_sdscripts) -> Path:
    from kohya_wrap.demo import ensure_demo_model, write_demo_project
    from kohya_wrap.sdscripts.locate import locate_sd_scripts

    model, tokenizers = ensure_demo_model(locate_sd_scripts(), lambda *a, **k: None)
    root = tmp_path / "sweep 项目"
    write_demo_project(root, model, tokenizers, steps=6)  # saves at step 3 and 6
    return root


def npz_times(root: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (root / "image").rglob("*.npz")}


def test_a_real_two_by_two_sweep_caches_latents_once_and_resumes_after_ctrl_c(demo_project, cli):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "kohya_wrap", "sweep", str(demo_project), *VARY, "--plain", "--grace", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    times_after_trial_1: dict[str, int] = {}
    trial = 0
    for line in process.stdout:
        lines.append(line)
        if line.startswith("── trial "):
            trial += 1
            if trial == 2:
                times_after_trial_1 = npz_times(demo_project)
        if trial == 3 and line.startswith("checkpoint saved"):  # step 3's: its state is saved with it
            break
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=180)
    out = "".join(lines) + rest
    assert process.returncode == 130, out
    assert "stopped at trial 3" in out
    assert len(times_after_trial_1) == 8, out  # trial 1 cached the 8 images' latents to disk
    assert "trial t1: trained · latents: 8 cached, 0 reused" in out
    assert "trial t2: trained · latents: 0 cached, 8 reused" in out

    result = cli("sweep", demo_project, "--resume", "--plain")
    assert result.code == 0, result.out + result.err
    assert "trial t3: resuming from" in result.out and "at step 3" in result.out
    assert "trial t3: trained · latents: 0 cached, 8 reused" in result.out
    assert "trial t4: trained · latents: 0 cached, 8 reused" in result.out
    assert npz_times(demo_project) == times_after_trial_1  # no later trial wrote a cache file again

    manifests = [json.loads(p.read_text(encoding="utf-8")) for p in (demo_project / "runs").glob("*/manifest.json")]
    trained = [m for m in manifests if m["verdict"] == "trained"]
    assert sorted(m["sweep"]["trial"] for m in trained) == [1, 2, 3, 4]  # each trial trained once
    assert sorted(m["sweep"]["trial"] for m in manifests if m["verdict"] != "trained") == [3]  # the stopped one
    resumed = [m for m in trained if m["sweep"]["trial"] == 3]
    assert resumed[0]["resume"]["from_step"] == 3 and resumed[0]["steps"]["reached"] == 6  # resumed, not redone
    assert not list((demo_project / "model").glob("*-state"))  # the states the sweep kept to resume are gone
    trial_config = next((demo_project / "sweeps").glob("*/t3/config/train.toml")).read_text(encoding="utf-8")
    assert "save_state = true" in trial_config and "save_last_n_steps_state = 3" in trial_config
    finals = {Path(m["outputs"][-1]["path"]) for m in trained}
    assert len(finals) == 4 and all(p.stat().st_size > 100_000 for p in finals)
    digests = {p.read_bytes() for p in finals}
    assert len(digests) == 4  # four different LoRAs, not one file written four times
    compare = cli("compare", demo_project, "--no-images")
    assert compare.code == 0, compare.out + compare.err
