"""The first real project trains on the first try (marker `sdscripts`): phone photos in a folder whose
name has a space and Chinese characters, `init --images` with a shipped preset, then `check` finds what
used to fail only after the model loaded — the preset's fp16 on a machine without CUDA and the CLIP
tokenizer sd-scripts would download with no network — each with its fix; with those fixes applied the
first `run` trains, and `--set training.max_train_steps=4` trains 4 steps (the preset's epochs do not win).

On this CPU-only machine the project trains at 64 px (set at `init`), so the full-size SD 1.5 U-Net of
the tiny demo model takes seconds a step; everything else is the preset's."""

from __future__ import annotations

import sys

import pytest

from kohya_wrap.demo import ensure_demo_model
from kohya_wrap.sdscripts.locate import locate_sd_scripts
from kohya_wrap.training.record import find_run, read_record
from test_init import phone_photos

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

pytestmark = [pytest.mark.sdscripts, pytest.mark.slow]


def test_a_first_project_trains_on_the_first_try(tmp_path, real_sdscripts, cli):
    model, tokenizers = ensure_demo_model(locate_sd_scripts(), lambda *_: None)
    photos = tmp_path / "my photos 照片"
    phone_photos(photos)
    root = tmp_path / "my lora 项目"
    small = [
        "--set",
        "dataset.resolution=64",
        "--set",
        "dataset.min_bucket_reso=64",
        "--set",
        "dataset.max_bucket_reso=128",
    ]
    made = cli(
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
        model,
        *small,
    )
    assert made.code == 0, made.out + made.err

    checked = cli("check", root)  # HF_HUB_OFFLINE is set for every test; no tokenizer cache is configured
    assert checked.code == 2, checked.out
    lines = checked.out.splitlines()
    precision = [line for line in lines if "training.mixed_precision" in line]
    assert precision and 'mixed_precision = "no"' in precision[0] and "CUDA" in precision[0], checked.out
    tokenizer = [line for line in lines if "openai/clip-vit-large-patch14" in line]
    assert tokenizer and "tokenizer_cache_dir" in tokenizer[0], checked.out

    spec = root / "kohya-wrap.toml"
    assert "training" not in tomllib.loads(spec.read_text(encoding="utf-8"))  # the fixes go in a new table
    spec.write_text(
        spec.read_text(encoding="utf-8")
        + f'\n[training]\nmixed_precision = "no"\ntokenizer_cache_dir = "{tokenizers.as_posix()}"\n',
        encoding="utf-8",
    )
    assert cli("check", root).code == 0

    trained = cli("run", root, "--plain", "--set", "training.max_train_steps=4")
    assert trained.code == 0, trained.out + trained.err
    assert "step 4/4" in trained.out and "max_train_epochs = 10 is dropped" in trained.out
    record = read_record(find_run(root / "runs", None))
    assert record.verdict == "trained" and (record.steps.planned, record.steps.reached) == (4, 4)
    assert (root / "model" / "mytoken_v1.safetensors").stat().st_size > 100_000
