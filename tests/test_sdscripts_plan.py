"""`plan`'s step math equals what the real sd-scripts prints, and the real sd-scripts accepts our
rendered configs. Needs a real sd-scripts checkout and venv (marker `sdscripts`, see docs/testing.md).

Each case renders a project with `kohya-wrap plan --json`, starts the exact command it prints, reads
sd-scripts' own plan block ("total optimization steps / 学習ステップ数: N" ...) and stops the run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import make_images

pytestmark = pytest.mark.sdscripts

SD_SCRIPTS = os.environ.get("KOHYA_WRAP_SD_SCRIPTS")
SD_PYTHON = os.environ.get("KOHYA_WRAP_SD_PYTHON")
CACHE = Path(os.environ.get("KOHYA_WRAP_TEST_CACHE", Path.home() / ".cache" / "kohya-wrap-tests"))
REPO = Path(__file__).resolve().parents[1]

PLAN_LINES = {
    "train_images_x_repeats": r"num train images \* repeats / .*?: (\d+)",
    "reg_images_x_repeats": r"num reg images / .*?: (\d+)",
    "batches_per_epoch": r"num batches per epoch / .*?: (\d+)",
    "epochs": r"num epochs / .*?: (\d+)",
    "total_steps": r"total optimization steps / .*?: (\d+)",
}


@pytest.fixture(scope="module")
def tiny_model() -> tuple[Path, Path]:
    if not SD_SCRIPTS or not Path(SD_SCRIPTS, "train_network.py").is_file():
        pytest.skip(
            "set KOHYA_WRAP_SD_SCRIPTS to an sd-scripts checkout (and KOHYA_WRAP_SD_PYTHON to its venv's python)"
        )
    python = SD_PYTHON or str(Path(SD_SCRIPTS).parent / "venv" / "bin" / "python")
    model, tokenizers = CACHE / "tiny-sd15", CACHE / "tokenizers"
    subprocess.run(
        [python, str(REPO / "scripts" / "build_tiny_sd15.py"), str(model), "--tokenizer-cache", str(tokenizers)],
        check=True,
        timeout=600,
    )
    return model, tokenizers


@pytest.fixture
def sd_env(monkeypatch):
    monkeypatch.setenv("KOHYA_WRAP_SD_SCRIPTS", SD_SCRIPTS or "")
    if SD_PYTHON:
        monkeypatch.setenv("KOHYA_WRAP_SD_PYTHON", SD_PYTHON)


def sd_scripts_plan_block(command: list[str], timeout: float = 300) -> dict[str, int]:
    """Start training, read stdout until sd-scripts prints its plan, then stop it."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", COLUMNS="250")
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    found: dict[str, int] = {}
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace")
            lines.append(line)
            for key, pattern in PLAN_LINES.items():
                match = re.search(pattern, line)
                if match:
                    found[key] = int(match.group(1))
            if "total_steps" in found or time.monotonic() > deadline:
                break
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    assert "total_steps" in found, "sd-scripts did not print its plan:\n" + "".join(lines[-40:])
    return found


def write_project(root: Path, tiny: tuple[Path, Path], spec: str, training: str) -> None:
    """A spec for the tiny model on the CPU: fp32, a small network, the offline tokenizer."""
    model, tokenizers = tiny
    root.mkdir(parents=True, exist_ok=True)
    (root / "kohya-wrap.toml").write_text(
        spec.format(model=model.as_posix())
        + '\n[training]\nmixed_precision = "no"\nnetwork_dim = 4\nmax_data_loader_n_workers = 0\n'
        + f'tokenizer_cache_dir = "{tokenizers.as_posix()}"\n{training}\n',
        encoding="utf-8",
    )


def plan_json(cli, root: Path) -> dict:
    result = cli("plan", root, "--json")
    assert result.code == 0, result.err + result.out
    return json.loads(result.out)


def assert_same(plan: dict, real: dict[str, int]) -> None:
    ours = {key: plan[key] for key in real}
    print("sd-scripts:", real, "kohya-wrap:", ours)
    assert ours == real


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


def test_preset_project_as_init_writes_it(tmp_path, tiny_model, sd_env, cli):
    """The acceptance path: init with the sd15-character preset and 10 photos of mixed shapes."""
    photos = tmp_path / "my photos 照片"
    make_images(photos, PHOTOS, ext=".jpg")
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
        tiny_model[0],
        "--no-prep",  # the photos as they are: mixed shapes, several buckets
    )
    assert result.code == 0, result.err
    spec = root / "kohya-wrap.toml"
    spec.write_text(
        spec.read_text(encoding="utf-8") + '\n[training]\nmixed_precision = "no"\ntokenizer_cache_dir = '
        f'"{tiny_model[1].as_posix()}"\nmax_data_loader_n_workers = 0\n',
        encoding="utf-8",
    )
    assert cli("check", root).code == 0
    plan = plan_json(cli, root)
    assert len(plan["buckets"]) > 1
    assert_same(plan, sd_scripts_plan_block(plan["command"]))


def test_bucketed_upscale_with_reg_and_accumulation(tmp_path, tiny_model, sd_env, cli):
    root = tmp_path / "reg"
    body = """name = "bucket_reg"
[model]
base = "{model}"
[[concepts]]
token = "mytoken"
class = "dog"
repeats = 3
[[concepts]]
class = "dog"
repeats = 1
is_reg = true
[dataset]
resolution = 256
enable_bucket = true
min_bucket_reso = 128
max_bucket_reso = 512
bucket_reso_steps = 64
bucket_no_upscale = false
"""
    write_project(root, tiny_model, body, "max_train_epochs = 3\ntrain_batch_size = 3\ngradient_accumulation_steps = 2")
    make_images(
        root / "image" / "3_mytoken dog",
        [(300, 200), (200, 300), (256, 256), (400, 100), (150, 450), (333, 222), (90, 300)],
    )
    make_images(root / "reg" / "1_dog", [(256, 256), (320, 240), (240, 320), (500, 200)], caption="dog")
    plan = plan_json(cli, root)
    assert plan["reg_images_x_repeats"] == 4 and len(plan["buckets"]) > 2
    assert_same(plan, sd_scripts_plan_block(plan["command"]))


def test_fixed_size_steps_and_unused_reg_images(tmp_path, tiny_model, sd_env, cli):
    root = tmp_path / "fixed"
    body = """name = "fixed"
[model]
base = "{model}"
[[concepts]]
token = "mytoken"
class = "cat"
repeats = 2
[[concepts]]
class = "cat"
repeats = 2
is_reg = true
[dataset]
resolution = [128, 64]
enable_bucket = false
"""
    write_project(root, tiny_model, body, "max_train_steps = 7\ntrain_batch_size = 2")
    make_images(root / "image" / "2_mytoken cat", [(128, 64), (100, 100), (64, 128)])
    make_images(root / "reg" / "2_cat", [(64, 64)] * 9, caption=None)
    plan = plan_json(cli, root)
    assert_same(plan, sd_scripts_plan_block(plan["command"]))
