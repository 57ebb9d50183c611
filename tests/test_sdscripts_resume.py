"""`run --resume` with the real sd-scripts (marker `sdscripts`): Ctrl-C twice, resume twice, and every
step number, file and train_state.json is right at the end. 8 images × batch 1 = 8 steps per epoch,
16 steps, a state every 2 steps. The second resume starts mid-epoch 2, where sd-scripts v0.10.1 itself
would count from 2 instead of 10 and overwrite the files of steps 4–8."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sdscripts


def run_until(root: Path, *args: str, stop_after_step: int | None = None) -> tuple[int, list[dict]]:
    """`kohya-wrap run --json`, sending Ctrl-C (SIGINT to the wrapper, as a terminal does) once a step
    past `stop_after_step` has started: the state of that step is on disk by then."""
    process = subprocess.Popen(
        [sys.executable, "-m", "kohya_wrap", "run", str(root), "--json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
        start_new_session=True,
    )
    events = []
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("{"):
            events.append(json.loads(line))
            if stop_after_step and events[-1]["event"] == "Progress" and events[-1]["step"] > stop_after_step:
                process.send_signal(signal.SIGINT)
                stop_after_step = None
    process.wait(timeout=300)
    return process.returncode, events


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_ctrl_c_then_two_resumes(tmp_path, real_sdscripts, monkeypatch, cli):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from kohya_wrap.demo import ensure_demo_model, write_demo_project
    from kohya_wrap.sdscripts.locate import locate_sd_scripts

    model, tokenizers = ensure_demo_model(locate_sd_scripts(), lambda *a, **k: None)
    root = tmp_path / "resume 项目"
    write_demo_project(root, model, tokenizers, steps=16)
    spec = root / "kohya-wrap.toml"
    spec.write_text(
        spec.read_text(encoding="utf-8").replace("save_every_n_steps = 8", "save_every_n_steps = 2\nsave_state = true"),
        encoding="utf-8",
    )
    out = root / "model"

    code, events = run_until(root, stop_after_step=6)
    assert code == 130
    assert (out / "kwdemo-step00000006-state" / "train_state.json").is_file()
    first = {p.name: digest(p) for p in out.glob("*.safetensors")}
    assert sorted(first) == [
        "kwdemo-step00000002.safetensors",
        "kwdemo-step00000004.safetensors",
        "kwdemo-step00000006.safetensors",
    ]

    code, events = run_until(root, "--resume", stop_after_step=10)  # from step 6, inside epoch 1
    assert code == 130
    notes = [e["text"] for e in events if e["event"] == "Note"]
    assert any("at step 6 of 16" in n for n in notes), notes
    steps = [e["step"] for e in events if e["event"] == "Progress" and e["loss"] is not None]
    assert steps[0] == 7 and all(e["total"] == 16 for e in events if e["event"] == "Progress")
    assert json.loads((out / "kwdemo-step00000010-state" / "train_state.json").read_text())["current_step"] == 10

    code, events = run_until(root, "--resume")  # from step 10, mid-epoch 2: sd-scripts counts from 2
    assert code == 0, events[-5:]
    steps = [e["step"] for e in events if e["event"] == "Progress" and e["loss"] is not None]
    assert sorted(set(steps)) == list(range(11, 17))  # tqdm shows each step before and after its loss
    names = sorted(p.name for p in out.iterdir())
    assert [n for n in names if n.endswith(".safetensors")] == [
        f"kwdemo-step{s:08d}.safetensors" for s in range(2, 17, 2)
    ] + ["kwdemo.safetensors"]
    assert not any(n.startswith(".resume-") for n in names)
    for name, content in first.items():  # the first run's files are still the first run's
        assert digest(out / name) == content, name
    for step in range(2, 17, 2):
        state = json.loads((out / f"kwdemo-step{step:08d}-state" / "train_state.json").read_text())
        assert state["current_step"] == step
    assert json.loads((out / "kwdemo-state" / "train_state.json").read_text())["current_step"] == 16
    record = sorted(p for p in (root / "runs").iterdir() if p.is_dir())[-1]
    manifest = json.loads((record / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["resume"]["from_step"] == 10 and manifest["resume"]["sd_scripts_step_offset"] == 8
    assert manifest["verdict"] == "trained" and manifest["steps"]["reached"] == 16
    assert manifest["environment"]["packages"]["torch"]
    assert len(cli("runs", root).out.splitlines()) == 3
