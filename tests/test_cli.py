"""The user's path through the real entry point: init → check → plan, and the errors on the way."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_image, make_images

PHOTOS = [
    (640, 480),
    (480, 640),
    (512, 512),
    (800, 600),
    (600, 900),
    (1024, 768),
    (700, 700),
    (500, 750),
    (900, 500),
    (640, 640),
]


def digest(folder: Path) -> dict[str, tuple[str, float]]:
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime) for p in sorted(folder.iterdir())}


def test_init_check_plan_with_awkward_paths(tmp_path, cli, base_model):
    photos = tmp_path / 'photos "quoted" 照片'
    make_images(photos, PHOTOS, ext=".jpg")
    make_image(photos / "odd case.Png", (512, 512))
    (photos / "notes.md").write_text("not an image", encoding="utf-8")
    before = digest(photos)
    root = tmp_path / "my lora's 项目"

    result = cli(
        "init",
        root,
        "--preset",
        "sd15-character",
        "--token",
        "mytoken",
        "--class",
        "woman",
        "--images",
        photos,
        "--base-model",
        base_model,
        "--no-prep",  # copied as they are (prepared photos: tests/test_init.py)
    )
    assert result.code == 0, result.err
    concept = root / "image" / "10_mytoken woman"
    assert (
        sorted(p.name for p in concept.iterdir() if p.suffix != ".txt")[-1] == "odd case.png"
    )  # extension lower-cased for sd-scripts
    assert len(list(concept.glob("*.txt"))) == 10
    assert all((root / d).is_dir() for d in ("log", "model", "config", "runs"))
    assert digest(photos) == before  # originals untouched

    result = cli("check", root)
    assert result.code == 0, result.out + result.err
    assert "ok: no errors" in result.out

    result = cli("plan", root, "--json")
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    assert plan["train_images_x_repeats"] == 110
    assert plan["total_steps"] == plan["steps_per_epoch"] * plan["epochs"] == 10 * plan["steps_per_epoch"]
    assert plan["command"][-4:] == [
        "--config_file",
        str(root / "config" / "train.toml"),
        "--dataset_config",
        str(root / "config" / "dataset.toml"),
    ]
    assert (root / "config" / "train.toml").is_file() and (root / "config" / "dataset.toml").is_file()

    human = cli("plan", root)
    assert f"{plan['total_steps']} total optimization steps" in human.out


def test_init_is_idempotent_and_keeps_the_spec(tmp_path, cli, base_model):
    photos = tmp_path / "photos"
    make_images(photos, PHOTOS[:3])
    root = tmp_path / "p"
    assert cli("init", root, "--token", "t", "--images", photos, "--base-model", base_model, "--no-prep").code == 0
    spec_text = (root / "kohya-wrap.toml").read_text(encoding="utf-8")
    again = cli("init", root, "--token", "t", "--images", photos, "--base-model", base_model, "--no-prep")
    assert (
        again.code == 0
        and "kept the existing" in again.out
        and "0 image(s) and 0 caption(s) copied, 6 already there" in again.out
    )
    assert (root / "kohya-wrap.toml").read_text(encoding="utf-8") == spec_text
    for path in photos.iterdir():
        path.unlink()
    photos.rmdir()
    gone = cli("init", root, "--no-prep")
    assert gone.code == 0 and "is gone; nothing imported" in gone.out
    forced = cli("init", root, "--token", "other", "--base-model", base_model, "--force")
    assert forced.code == 0
    assert (root / "kohya-wrap.toml.bak").read_text(encoding="utf-8") == spec_text
    assert 'token = "other"' in (root / "kohya-wrap.toml").read_text(encoding="utf-8")


def test_init_writes_nothing_when_the_spec_would_be_invalid(tmp_path, cli):
    root = tmp_path / "bad"
    result = cli("init", root, "--token", "t", "--name", "名字")
    assert result.code == 2 and "name:" in result.err
    assert not (root / "kohya-wrap.toml").exists()
    assert cli("init", tmp_path / "x").code == 2  # no --token


def spec_with(project, **edits) -> Path:
    root = project()
    spec = root / "kohya-wrap.toml"
    text = spec.read_text(encoding="utf-8")
    for old, new in edits.items():
        text = text.replace(old, new) if old in text else text + new
    spec.write_text(text, encoding="utf-8")
    return root


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            {"append": "\n[training]\nnetwork_dimm = 16\n"},
            "training.network_dimm: train_network.py of sd-scripts v0.10.1 (snapshot) has no such option — did you "
            "mean 'network_dim'?",
        ),
        (
            {"append": '\n[training]\nnetwork_dim = "16"\n'},
            "training.network_dim: '16' (a string) has the wrong type — write an integer",
        ),
        (
            {"append": "\n[training]\nlearning_rate = -1e-4\n"},
            "training.learning_rate: -0.0001 (a number) is too small — it should be greater than 0",
        ),
        ({'name = "mytoken_v1"': 'name = "我的_lora"'}, "name: '我的_lora' must use only ASCII letters"),
    ],
)
def test_spec_mistakes_give_exit_2_and_one_line(project, cli, edit, expected):
    root = spec_with(project, **{k if k != "append" else "\x00": v for k, v in edit.items()})
    for command in ("check", "plan"):
        result = cli(command, root)
        assert result.code == 2
        assert expected in result.err
        assert "Traceback" not in result.err
        assert result.err.count("\n") == 2  # the header and the one problem


def test_folder_without_repeats_prefix(project, cli):
    root = project()
    make_images(root / "image" / "mytoken woman", [(512, 512)] * 3)
    result = cli("check", root)
    assert result.code == 2
    assert (
        "image/mytoken woman: folder name lacks the '<repeats>_' prefix, so sd-scripts would skip it — rename it to "
        "'10_mytoken woman'" in result.out
    )


def test_caption_extension_without_matching_files(project, cli):
    root = spec_with(project, **{"\x00": '\n[dataset]\ncaption_extension = ".caption"\n'})
    result = cli("check", root)
    assert result.code == 2
    assert (
        'caption_extension is ".caption" but the captions here are 10 ".txt" file(s) — set dataset.caption_extension '
        '= ".txt"' in result.out
    )


def test_missing_base_model(project, cli, base_model):
    root = project()
    base_model.unlink()
    result = cli("check", root)
    assert result.code == 2 and f"model.base: {base_model} does not exist" in result.out
    assert cli("plan", root).code == 2


def test_unreadable_and_skipped_images(project, cli):
    root = project()
    folder = root / "image" / "10_mytoken woman"
    (folder / "broken.png").write_bytes(os.urandom(300))
    make_image(folder / "mixed.Jpg", (64, 64))
    result = cli("check", root)
    assert result.code == 2
    assert "1 file(s) are not readable images: image/10_mytoken woman/broken.png" in result.out
    assert "mixed.Jpg" in result.out and "does not read" in result.out


def test_stray_concept_folder_and_repeat_mismatch(project, cli):
    """Changing repeats needs no renaming: a concept's only folder trains with the spec's repeats
    whatever its prefix (sd-scripts reads num_repeats from dataset.toml); a second folder is an error."""
    root = project()
    make_images(root / "image" / "5_other thing", [(64, 64)])
    (root / "image" / "10_mytoken woman").rename(root / "image" / "4_mytoken woman")
    result = cli("check", root)
    assert "image/4_mytoken woman: trains with repeats = 10 from the spec" in result.out
    assert "image/5_other thing: is not a concept in the spec" in result.out
    (root / "image" / "5_other thing").rename(root / "elsewhere")
    planned = cli("plan", root, "--json", "--set", "concepts.0.repeats=5")  # the README's own example
    assert planned.code == 0, planned.err
    plan = json.loads(planned.out)
    assert plan["concepts"][0]["repeats"] == 5 and plan["train_images_x_repeats"] == 50
    dataset = (root / "config" / "dataset.toml").read_text(encoding="utf-8")
    assert "num_repeats = 5" in dataset and "4_mytoken woman" in dataset
    make_images(root / "image" / "10_mytoken woman", [(512, 512)])  # now two folders for one concept
    twice = cli("check", root)
    assert twice.code == 2
    assert (
        "image/4_mytoken woman: a second folder of concept 'mytoken', which trains image/10_mytoken woman" in twice.out
    )


def test_check_json(project, cli):
    result = cli("check", project(), "--json")
    data = json.loads(result.out)
    assert data["ok"] is True and data["concepts"][0]["images"] == 10


def test_set_override_on_the_command_line(project, cli):
    root = project()
    plan = json.loads(
        cli("plan", root, "--json", "--set", "training.max_train_epochs=3", "--set", "training.train_batch_size=5").out
    )
    assert (plan["epochs"], plan["steps_per_epoch"], plan["total_steps"]) == (3, 20, 60)
    bad = cli("plan", root, "--set", "training.max_train_epochs=0")
    assert bad.code == 2 and "training.max_train_epochs" in bad.err


def test_plan_renders_multi_gpu_and_multi_node_commands(project, cli):
    root = spec_with(
        project,
        **{
            "\x00": "\n[launch]\nnum_processes = 4\nnum_machines = 2\nmachine_rank = 1\nmain_process_ip = "
            '"10.0.0.5"\nmain_process_port = 29500\ngpu_ids = "0,1"\n'
        },
    )
    command = json.loads(cli("plan", root, "--json").out)["command"]
    joined = " ".join(command)
    assert "--num_processes 4 --num_machines 2" in joined and "--multi_gpu" in command
    assert "--machine_rank 1 --main_process_ip 10.0.0.5 --main_process_port 29500" in joined
    assert "--gpu_ids 0,1" in joined
    assert "--num_cpu_threads_per_process" in joined


def test_debug_shows_the_traceback(project, cli, tmp_path):
    assert "Traceback" not in cli("check", tmp_path / "nowhere").err
    result = subprocess.run(
        [sys.executable, "-m", "kohya_wrap", "--debug", "check", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "Traceback" in result.stderr and "no project spec here" in result.stderr


def test_presets_commands(cli, tmp_path, monkeypatch):
    listing = cli("presets", "list")
    for name in ("sd15-character", "sd15-style", "sdxl-character", "sdxl-low-vram", "flux-character"):
        assert name in listing.out
    shown = cli("presets", "show", "sdxl-low-vram")
    assert "kohya-wrap init" in shown.out and "Adafactor" in shown.out
    target = tmp_path / "mine" / "low.toml"
    assert cli("presets", "copy", "sdxl-low-vram", target).code == 0 and target.is_file()
    assert cli("presets", "copy", "sdxl-low-vram", target).code == 2  # no overwrite without --force
    monkeypatch.setenv("KOHYA_WRAP_PRESETS", str(target.parent))
    assert any(p["name"] == "low" and p["origin"] == "user" for p in json.loads(cli("presets", "list", "--json").out))
    missing = cli("presets", "show", "sd15-caracter")
    assert missing.code == 2 and "did you mean 'sd15-character'?" in missing.err


def test_images_that_cannot_be_bucketed_are_reported(project, cli):
    root = project(sizes=[(64, 64), (64, 96)] * 5)
    spec = root / "kohya-wrap.toml"
    spec.write_text(
        spec.read_text(encoding="utf-8")
        + "\n[dataset]\nresolution = 64\nmin_bucket_reso = 64\nmax_bucket_reso = 128\n",
        encoding="utf-8",
    )
    result = cli("check", root)
    assert result.code == 2
    assert (
        "5 image(s) get a zero-pixel bucket at resolution 64×64 with bucket_reso_steps 64, e.g. img001.png (64×96)"
        in result.out
    )


def test_bucket_range_sd_scripts_asserts_is_checked_first(project, cli):
    root = project(sizes=[(64, 64)] * 10)
    spec = root / "kohya-wrap.toml"
    spec.write_text(
        spec.read_text(encoding="utf-8").replace('extends = "sd15-character"\n', "")
        + "\n[training]\nmax_train_epochs = 1\n[dataset]\nresolution = 64\nenable_bucket = true\nmax_bucket_reso = "
        "100\n",
        encoding="utf-8",
    )
    result = cli("check", root)
    assert result.code == 2
    assert (
        "dataset.min_bucket_reso: 256 (sd-scripts' default) is above the resolution's short side 64; sd-scripts stops "
        "on it — set dataset.min_bucket_reso = 64" in result.out
    )
    assert "max_bucket_reso" not in result.out  # 100 rounds up to 128, as sd-scripts does
