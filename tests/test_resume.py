"""`run --resume`: numbering stays right across resumes. The stand-in simulates sd-scripts v0.10.1's
resume arithmetic (tests/standin_trainer.py; the real one is tested in test_sdscripts_resume.py), and every
file it saves holds the number of steps really trained into it, so a name can be checked against content."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import make_images
from kohya_wrap.sdscripts.naming import SAMPLE_NAME, renumbered
from kohya_wrap.training.resume import settle


@pytest.fixture
def simulate(on_standin, monkeypatch):
    monkeypatch.setenv("KOHYA_WRAP_SIMULATE", "8")  # batches per epoch: 8 images, batch 1, repeats 1

    def die_after(steps: int | None) -> None:
        if steps:
            monkeypatch.setenv("KOHYA_WRAP_SIMULATE_DIE_AFTER", str(steps))
        else:
            monkeypatch.delenv("KOHYA_WRAP_SIMULATE_DIE_AFTER", raising=False)

    return die_after


def make_project(root: Path, training: str) -> Path:
    (root / "model").mkdir(parents=True)
    (root / "m.safetensors").write_bytes(b"x")
    (root / "kohya-wrap.toml").write_text(
        f'name = "lora"\n[model]\nbase = "{(root / "m.safetensors").as_posix()}"\n[[concepts]]\ntoken = "tok"\nclass '
        '= "woman"\nrepeats = 1\n'
        f"[dataset]\nresolution = 64\n[training]\ntrain_batch_size = 1\n{training}",
        encoding="utf-8",
    )
    make_images(root / "image" / "1_tok woman", [(64, 64)] * 8)
    return root


@pytest.fixture
def project(tmp_path) -> Path:
    return make_project(
        tmp_path / "resume 项目",
        "max_train_epochs = 3\nsave_every_n_steps = 4\nsave_every_n_epochs = 1\nsave_state = true\n",
    )


def trained(path: Path) -> int:
    return int((path / "network.txt" if path.is_dir() else path).read_text().split("=")[1])


def runs(root: Path) -> list[Path]:
    return sorted(p for p in (root / "runs").iterdir() if p.is_dir())


def test_two_resumes_in_a_row_keep_every_number_right(simulate, project, cli):
    model = project / "model"
    simulate(10)  # crashes after step 10: states at steps 4 and 8 (8 is also the end of epoch 1)
    first = cli("run", project, "--plain")
    assert first.code == 1
    assert sorted(p.name for p in model.iterdir()) == [
        "lora-000001-state",
        "lora-000001.safetensors",
        "lora-step00000004-state",
        "lora-step00000004.safetensors",
        "lora-step00000008-state",
        "lora-step00000008.safetensors",
    ]

    simulate(7)  # resumes at the epoch end (step 8), crashes after step 15: one state, at step 12
    second = cli("run", project, "--plain", "--resume")
    assert second.code == 1
    assert "resuming from lora-" in second.out and "at step 8 of 24" in second.out
    assert "step 15/24" in second.out  # the dashboard counts true steps, not sd-scripts' 7/24
    assert json.loads((model / "lora-step00000012-state" / "train_state.json").read_text())["current_step"] == 12
    assert trained(model / "lora-step00000012.safetensors") == 12
    assert trained(model / "lora-step00000004.safetensors") == 4  # not overwritten by sd-scripts' own "step 4"

    simulate(None)  # resumes mid-epoch 2 (step 12), skipping the batches already trained, to the end
    third = cli("run", project, "--plain", "--resume")
    assert third.code == 0, third.out + third.err
    assert "at step 12 of 24" in third.out and "step 24/24" in third.out
    names = sorted(p.name for p in model.iterdir())
    assert not any(n.startswith(".resume-") for n in names)  # the staging folder is gone
    for step in (4, 8, 12, 16, 20, 24):
        assert trained(model / f"lora-step{step:08d}.safetensors") == step
        state = model / f"lora-step{step:08d}-state"
        assert trained(state) == step and json.loads((state / "train_state.json").read_text())["current_step"] == step
    assert trained(model / "lora-000001.safetensors") == 8 and trained(model / "lora-000002.safetensors") == 16
    assert json.loads((model / "lora-000002-state" / "train_state.json").read_text())["current_step"] == 16
    assert trained(model / "lora.safetensors") == 24
    assert json.loads((model / "lora-state" / "train_state.json").read_text())["current_step"] == 24

    record = runs(project)[-1]
    manifest = json.loads((record / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["resume"]["from_step"] == 12 and manifest["resume"]["skip_until_initial_step"] is True
    assert manifest["resume"]["sd_scripts_step_offset"] == 8 and manifest["steps"] == {"planned": 24, "reached": 24}
    assert [Path(o["path"]).name for o in manifest["outputs"]] == [
        "lora-step00000016.safetensors",
        "lora-000002.safetensors",
        "lora-step00000020.safetensors",
        "lora-step00000024.safetensors",
        "lora.safetensors",
    ]
    assert [int(r["step"]) for r in csv.DictReader((record / "metrics.csv").open(encoding="utf-8"))] == list(
        range(13, 25)
    )
    events = [json.loads(line) for line in (record / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    saved = [e["path"] for e in events if e["event"] == "CheckpointSaved"]
    assert saved[0] == str(model / "lora-step00000016.safetensors")  # where the file ends up, by its true step
    assert "--skip_until_initial_step" in json.loads((record / "command.json").read_text())["argv"]
    assert "resumed from lora-step00000012-state (step 12)" in cli("runs", "show", record.name, project).out


def test_resume_from_a_chosen_state(simulate, project, cli):
    simulate(10)
    cli("run", project, "--plain")
    simulate(None)
    result = cli("run", project, "--plain", "--resume-from", project / "model" / "lora-step00000004-state")
    assert result.code == 0, result.err
    assert "at step 4 of 24" in result.out
    # resumed inside epoch 1 sd-scripts numbers correctly itself (offset 0); the later files are replaced
    assert trained(project / "model" / "lora-step00000008.safetensors") == 8
    assert trained(project / "model" / "lora.safetensors") == 24
    assert json.loads((runs(project)[-1] / "manifest.json").read_text())["resume"]["sd_scripts_step_offset"] == 0


@pytest.mark.parametrize(
    "training, state_step, message",
    [
        ("max_train_epochs = 3\nsave_state = true\n", None, "no saved training state of 'lora' to resume"),
        ("max_train_epochs = 3\nsave_state = true\n", 24, "this state is at step 24 of 24, training is finished"),
        ("max_train_steps = 20\nsave_state = true\n", 12, "sd-scripts would train up to 4 steps too many"),
        ("max_train_epochs = 3\ngradient_accumulation_steps = 2\nsave_state = true\n", 6, "skips far too many batches"),
        (
            "max_train_epochs = 3\nskip_until_initial_step = true\n",
            4,
            "training.skip_until_initial_step is set in the spec",
        ),
    ],
)
def test_resumes_sd_scripts_would_get_wrong_are_refused(simulate, tmp_path, cli, training, state_step, message):
    root = make_project(tmp_path / "p", training)
    if state_step is not None:
        state = root / "model" / f"lora-step{state_step:08d}-state"
        state.mkdir()
        (state / "train_state.json").write_text(json.dumps({"current_epoch": 1, "current_step": state_step}))
    result = cli("run", root, "--plain", "--resume")
    assert result.code == 2 and message in result.err, result.err
    assert "Traceback" not in result.err and not (root / "runs").exists()  # refused before anything started


def test_true_names():
    assert renumbered("lora-step00000004.safetensors", 8) == "lora-step00000012.safetensors"
    assert renumbered("my-lora-step00000004-state", 16) == "my-lora-step00000020-state"
    assert renumbered("lora-000002.safetensors", 8) == "lora-000002.safetensors"  # epoch numbers are right
    assert renumbered("lora_000004_01_20261125120000_7.png", 8, sample=True) == "lora_000012_01_20261125120000_7.png"
    assert renumbered("lora_e000002_00_20261125120000_7.png", 8, sample=True) == "lora_e000002_00_20261125120000_7.png"
    assert SAMPLE_NAME.match("x_000004_00_t.png")


def test_settle_moves_samples_and_replaces_abandoned_states(tmp_path):
    output, staging = tmp_path / "model", tmp_path / "model" / ".resume-1"
    (staging / "sample").mkdir(parents=True)
    (staging / "sample" / "lora_000002_00_t_1.png").write_bytes(b"png")
    (staging / "lora-step00000002-state").mkdir()
    (staging / "lora-step00000002-state" / "train_state.json").write_text('{"current_epoch": 2, "current_step": 2}')
    old = output / "lora-step00000010-state"
    old.mkdir()
    (old / "stale").write_text("from an abandoned later run")
    moved = settle(staging, output, 8)
    assert (output / "sample" / "lora_000010_00_t_1.png").read_bytes() == b"png"
    assert json.loads((old / "train_state.json").read_text())["current_step"] == 10 and not (old / "stale").exists()
    assert not staging.exists() and len(moved) == 2


def test_sample_images_are_noticed_once(tmp_path):
    from kohya_wrap.training.supervise import SampleWatcher

    folder = tmp_path / "sample"
    watcher = SampleWatcher(folder, interval_s=10.0)
    assert watcher.poll(0.0) == []  # no folder yet
    folder.mkdir()
    (folder / "lora_000004_00_t_1.png").write_bytes(b"png")
    (folder / "prompt.txt").write_text("not an image")
    assert watcher.poll(1.0) == []  # at most once per interval
    assert watcher.poll(1.0, force=True) == ["lora_000004_00_t_1.png"]
    assert watcher.poll(20.0) == []
