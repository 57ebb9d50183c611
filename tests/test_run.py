"""`kohya-wrap run` through the real entry point, on a stand-in sd-scripts that replays recordings of
real sd-scripts runs (tests/standin_trainer.py): records, verdicts, diagnosis, the lock, Ctrl-C."""

from __future__ import annotations

import csv
import json
import os
import re
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


def only_run(root: Path) -> Path:
    runs = [p for p in (root / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1
    return runs[0]


def test_a_successful_run_and_its_record(replay, project, cli):
    replay("pipe_steps")
    result = cli("run", project, "--plain")
    assert result.code == 0, result.out + result.err
    assert "plan: " in result.out and "step 6/6" in result.out and "checkpoint saved:" in result.out
    assert ": trained · record in runs/" in result.out
    run = only_run(project)
    for name in (
        "command.json",
        "spec.json",
        "train.toml",
        "dataset.toml",
        "train.log",
        "events.jsonl",
        "metrics.csv",
        "manifest.json",
    ):
        assert (run / name).is_file(), name
    assert b"total optimization steps" in (run / "train.log").read_bytes()
    events = [json.loads(line) for line in (run / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [e["path"].rsplit("/", 1)[1] for e in events if e["event"] == "CheckpointSaved"] == [
        "rec_lora-step00000003.safetensors",
        "rec_lora-step00000006.safetensors",
        "rec_lora.safetensors",
    ]
    rows = list(csv.DictReader((run / "metrics.csv").open(encoding="utf-8")))
    assert rows and rows[-1]["step"] == "6" and float(rows[-1]["loss"]) > 0
    assert [r["step"] for r in rows] == [str(n) for n in range(1, 7)]  # one row per step, its last report
    progress = [e for e in events if e["event"] == "Progress" and e.get("loss") is not None]
    last = {e["step"]: e["loss"] for e in progress}
    assert [float(r["loss"]) for r in rows] == [last[n] for n in range(1, 7)]
    assert float(rows[-1]["lr"]) == 2e-6 and "· lr 2e-06 ·" in result.out  # the stand-in's default, constant
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["verdict"] == "trained" and manifest["exit_code"] == 0 and manifest["child_exit_code"] == 0
    assert manifest["steps"] == {"planned": 6, "reached": 6} and manifest["seed"] == 42
    assert (
        len(manifest["outputs"]) == 3 and len(manifest["dataset"]) == 3 and len(manifest["dataset"][0]["sha256"]) == 64
    )
    command = json.loads((run / "command.json").read_text(encoding="utf-8"))
    assert command["env"]["COLUMNS"] == "250" and command["argv"][1:3] == ["-m", "accelerate.commands.launch"]
    assert lock_is_free(project)


def test_json_events(replay, project, cli):
    replay("pipe_epochs_samples")
    result = cli("run", project, "--json")
    assert result.code == 0, result.err
    events = [json.loads(line) for line in result.out.splitlines() if line.startswith("{")]
    kinds = {e["event"] for e in events}
    assert {"PlanLine", "Progress", "Epoch", "CheckpointSaved", "SamplesStarted", "ModelSaved"} <= kinds


@pytest.mark.parametrize(
    "fixture, explanation",
    [
        ("no_data", "sd-scripts found no training images"),
        ("fail_truncated_image", "an image is truncated or corrupt: OSError: image file is truncated"),
        ("fail_missing_model", "the base model was not found"),
        # the two failures of a first real project: fp16 on a machine without CUDA, the tokenizer offline
        ("fail_fp16_on_cpu", 'Half != float — fix: without a CUDA device set training.mixed_precision = "no"'),
        ("fail_tokenizer_no_network", "from the Hugging Face hub (huggingface.co) and could not reach it"),
        ("fail_tokenizer_no_network", "sd-scripts tried to download openai/clip-vit-large-patch14 (the CLIP tokenizer"),
        ("fail_tokenizer_no_network", "fix: set training.tokenizer_cache_dir to a folder holding openai_clip-vit"),
        ("fail_tokenizer_offline", "is not in the Hugging Face cache and HF_HUB_OFFLINE is set"),
        ("fail_tokenizer_offline", "fix: set training.tokenizer_cache_dir to a folder holding openai_clip-vit"),
    ],
)
def test_failures_are_explained(replay, project, cli, fixture, explanation):
    replay(fixture)
    result = cli("run", project, "--plain")
    assert result.code == 1
    assert explanation in result.err and "train.log" in result.err
    manifest = json.loads((only_run(project) / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["verdict"].startswith("failed") and manifest["diagnosis"]


def lock_is_free(project: Path) -> bool:
    from filelock import FileLock, Timeout

    lock = FileLock(str(project / "runs" / ".lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return False
    lock.release()
    return True


HOLD_THE_RUN_LOCK = """
import sys, time
from pathlib import Path
from kohya_wrap.fsutil import exclusive_lock
with exclusive_lock(Path(sys.argv[1]), "busy", "wait"):
    print("held", flush=True)
    time.sleep(30)
"""


def test_a_second_run_is_refused_while_one_runs(replay, project, cli):
    replay("pipe_steps")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_RUN_LOCK, str(project / "runs" / ".lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = cli("run", project, "--plain")
        assert (
            refused.code == 2 and "a run is already in progress" in refused.err and f"pid {holder.pid}" in refused.err
        )
    finally:
        holder.kill()
        holder.wait()
    stale = cli("run", project, "--plain")  # the holder is gone, and the OS released its lock with it
    assert stale.code == 0, stale.err


def test_no_sd_scripts_is_stopped_before_launch(project, cli):
    result = cli("run", project, "--plain")
    assert result.code == 2 and "kohya-wrap vendor install" in result.err


def test_ctrl_c_stops_the_whole_tree(replay, project, trainer):
    replay("pipe_steps", speed=1.5)
    process = subprocess.Popen(
        [sys.executable, "-m", "kohya_wrap", "run", str(project), "--plain", "--grace", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
        start_new_session=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("step 2/"):
            break
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)  # as a terminal's Ctrl-C reaches `kohya-wrap run`, not its child
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, out + err
    assert time.monotonic() - sent < 10
    assert "interrupted; sd-scripts saves nothing on interrupt, so the progress kept is" in out

    def cmdline(path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError:  # the process ended meanwhile
            return b""

    assert [p for p in Path("/proc").glob("[0-9]*/cmdline") if str(trainer).encode() in cmdline(p)] == []
    manifest = json.loads((only_run(project) / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["verdict"] == "interrupted"


def test_runs_lists_and_shows_the_history(replay, project, cli):
    assert "no runs yet" in cli("runs", project).out
    replay("pipe_steps")
    assert cli("run", project, "--plain").code == 0
    replay("no_data")
    assert cli("run", project, "--plain").code == 1
    listing = cli("runs", project)
    lines = listing.out.splitlines()
    assert listing.code == 0 and len(lines) == 2
    assert (
        "failed" in lines[0]
        and "trained" in lines[1]
        and "steps 6/6" in lines[1]
        and "rec_lora.safetensors" in lines[1]
    )
    run_id = lines[1].split()[0]
    shown = cli("runs", "show", run_id, project)
    assert shown.code == 0 and f"run {run_id}: trained (exit 0)" in shown.out and "rec_lora.safetensors" in shown.out
    assert json.loads(cli("runs", "show", run_id, project, "--json").out)["run_id"] == run_id
    assert cli("runs", "show", "nope", project).code == 2


def test_demo_builds_a_project_and_trains(replay, tmp_path, cli):
    """With --model the tiny model is not built (that needs sd-scripts' venv: marker `sdscripts`)."""
    replay("pipe_steps")
    model, tokenizers = tmp_path / "model", tmp_path / "tokenizers"
    model.mkdir()
    (model / "model_index.json").write_text("{}", encoding="utf-8")
    tokenizers.mkdir()
    result = cli("demo", tmp_path / "demo", "--plain", "--steps", "6", "--model", model, "--tokenizers", tokenizers)
    root = tmp_path / "demo"
    assert result.code == 0, result.out + result.err
    assert (root / "kohya-wrap.toml").is_file() and len(list((root / "image" / "1_kwdemo shape").glob("*.png"))) == 8
    assert "step 6/6" in result.out and ": trained · record in runs/" in result.out  # the same supervised run as `run`
    assert (root / "model" / "kwdemo.safetensors").is_file()
    assert cli("check", root).code == 0 and cli("runs", root).out.count("trained") == 1
    (tmp_path / "not-demo").mkdir()
    (tmp_path / "not-demo" / "mine.txt").write_text("user data", encoding="utf-8")
    refused = cli("demo", tmp_path / "not-demo", "--model", model, "--tokenizers", tokenizers)
    assert refused.code == 2 and (tmp_path / "not-demo" / "mine.txt").read_text(encoding="utf-8") == "user data"


def test_a_crash_in_the_wrapper_leaves_no_training_process(replay, project, trainer, cli, monkeypatch):
    replay("pipe_steps", speed=2)
    from kohya_wrap.training import dashboard

    def broken(self, event, state):
        if isinstance(event, dashboard.Epoch):
            raise RuntimeError("renderer bug")

    monkeypatch.setattr(dashboard.PlainRenderer, "handle", broken)
    result = cli("run", project, "--plain")
    assert result.code == 1 and "internal error: RuntimeError: renderer bug" in result.err

    def cmdline(path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError:
            return b""

    assert [p for p in Path("/proc").glob("[0-9]*/cmdline") if str(trainer).encode() in cmdline(p)] == []
    assert lock_is_free(project)


def test_plain_output_shows_the_plan_first_and_each_step_with_its_own_loss(replay, project, cli):
    """Before step 1: the plan (known before launch) and what sd-scripts is doing; then one line per step
    with the loss metrics.csv keeps for it (sd-scripts first draws a step with the previous step's loss),
    and each checkpoint after the step it was saved at."""
    replay("pipe_steps")
    result = cli("run", project, "--plain")
    assert result.code == 0, result.out + result.err
    lines = result.out.splitlines()
    assert lines[0] == "planned: 6 steps, 2 epoch(s) of 3 step(s) · starting sd-scripts…"
    steps = [line for line in lines if line.startswith("step ")]
    assert [line.split(" · ")[0] for line in steps] == [f"step {n}/6" for n in range(1, 7)]
    before = lines[: lines.index(steps[0])]
    assert "loading the model…" in before and "caching latents…" in before
    rows = list(csv.DictReader((only_run(project) / "metrics.csv").open(encoding="utf-8")))
    assert [line.split(" · ")[1] for line in steps] == [f"loss {float(r['loss']):.4g}" for r in rows]
    checkpoint = next(i for i, line in enumerate(lines) if line.endswith("rec_lora-step00000003.safetensors"))
    assert lines[checkpoint - 1].startswith("step 3/6 ")
    assert lines.index("epoch 2/2") == lines.index(steps[3]) + 1  # after step 4, the last of epoch 1


def test_the_dashboard_shows_the_plan_while_the_model_loads(replay, project, cli, monkeypatch):
    """On a terminal: the planned steps and the phase from the first frame, never `steps 0/?`, and each
    step's loss once it is its own."""
    import io

    from rich.console import Console

    from kohya_wrap import console
    from kohya_wrap.training import dashboard

    frames: list[tuple[int, str]] = []

    def tick(self, state, force=False):
        text = Console(width=120, record=True, file=io.StringIO())
        text.print(self.render(state))
        frames.append((state.step, text.export_text()))

    replay("pipe_steps", speed=20)
    monkeypatch.setattr(console, "is_interactive", lambda: True)
    monkeypatch.setattr(dashboard.LiveRenderer, "tick", tick)
    result = cli("run", project)
    assert result.code == 0, result.out + result.err
    loading = [frame for step, frame in frames if step == 0]
    assert "starting sd-scripts…" in loading[0] and "0/6" in loading[0] and "2 planned" in loading[0]
    assert any("loading the model…" in frame for frame in loading)
    assert not any("/?" in frame for _, frame in frames)
    shown = {(int(m[2]), float(m[1])) for _, frame in frames for m in re.finditer(r"(\S+) at step (\d+)", frame)}
    rows = list(csv.DictReader((only_run(project) / "metrics.csv").open(encoding="utf-8")))
    assert shown <= {(int(r["step"]), float(r["loss"])) for r in rows}  # never a step with another's loss
    assert "1.0600 at step 6" in frames[-1][1]


def test_run_says_what_loading_decided_before_it_trains(replay, project, cli):
    """A preset's epochs dropped for the spec's steps is said by check, plan and run — the first-run user
    who only types `run` sees why it trains 6 steps and not the preset's 10 epochs."""
    (project / "team.toml").write_text("[training]\nmax_train_epochs = 10\n", encoding="utf-8")
    spec = project / "kohya-wrap.toml"
    spec.write_text('extends = "team.toml"\n' + spec.read_text(encoding="utf-8"), encoding="utf-8")
    said = "the preset's training.max_train_epochs = 10 is dropped: the spec's training.max_train_steps = 6 wins"
    checked = cli("check", project)
    assert checked.code == 0, checked.out + checked.err
    assert said in checked.out
    replay("pipe_steps")
    result = cli("run", project, "--plain")
    assert result.code == 0, result.out + result.err
    assert said in result.out and result.out.index(said) < result.out.index("step 1/6")
