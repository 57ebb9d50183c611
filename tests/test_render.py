"""Rendered sd-scripts configs: golden files, and the value types sd-scripts needs (it converts none)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import toml  # the TOML reader sd-scripts itself uses

from kohya_wrap.paths import ProjectLayout
from kohya_wrap.sdscripts.render import render_configs, render_sample_prompts
from kohya_wrap.sdscripts.schema import load_option_schema
from kohya_wrap.spec.load import validate_spec
from kohya_wrap.spec.settings import derive_settings

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
SCHEMA = load_option_schema()
ROOT = Path("/projects/my lora's 项目")

SPEC = {
    "name": "mytoken_v1",
    "model": {"base": "/models/v1-5.safetensors", "family": "sd15"},
    "concepts": [
        {"token": "mytoken", "class": "woman", "repeats": 10, "keep_tokens": 2, "face_crop_aug_range": [2, 4]},
        {"class": "woman", "repeats": 1, "is_reg": True},
    ],
    "dataset": {
        "resolution": [512, 768],
        "enable_bucket": True,
        "bucket_no_upscale": True,
        "shuffle_caption": True,
        "keep_tokens": 1,
    },
    "training": {
        "learning_rate": 1e-4,
        "text_encoder_lr": 5e-5,
        "network_dim": 16,
        "network_alpha": 8,
        "network_args": ["conv_dim=4"],
        "max_train_epochs": 4,
        "save_every_n_epochs": 2,
        "mixed_precision": "bf16",
        "sdpa": True,
        "cache_latents": True,
        "lr_warmup_steps": 0.1,
    },
    "sample": {
        "prompts": [
            "mytoken woman, portrait",
            {"text": "mytoken woman, full body", "seed": 7, "cfg": 5.5, "sampler": "ddim"},
        ],
        "negative": "lowres, blurry",
        "every_n_epochs": 1,
        "sampler": "euler_a",
    },
}


def render(data: dict, base: str = "/m"):
    """Validate, derive the settings, render: the path every command takes, without the files."""
    spec = validate_spec(data, "kohya-wrap.toml", SCHEMA)
    settings = derive_settings(spec, SCHEMA, ProjectLayout(ROOT))
    return render_configs(spec, settings, ProjectLayout(ROOT), SCHEMA, {"base": base}), spec, settings


def rendered():
    configs, spec, _ = render(SPEC, "/models/v1-5.safetensors")
    return configs, spec


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} changed; review, then rerun with UPDATE_GOLDEN=1"


def test_train_toml_golden():
    configs, _ = rendered()
    check_golden("train.toml", configs.train_toml(ROOT / "kohya-wrap.toml"))


def test_dataset_toml_golden():
    configs, _ = rendered()
    check_golden("dataset.toml", configs.dataset_toml(ROOT / "kohya-wrap.toml"))


def test_sample_prompts_golden():
    configs, _ = rendered()
    check_golden("sample_prompts.txt", configs.sample_prompts or "")


def test_values_have_the_types_sd_scripts_needs():
    configs, _ = rendered()
    args = toml.loads(configs.train_toml(ROOT / "kohya-wrap.toml"))
    flat = {k: v for section in args.values() for k, v in section.items()}
    assert flat["resolution"] == "512,768"  # sd-scripts calls .split(",") on it
    assert flat["network_alpha"] == 8.0 and isinstance(flat["network_alpha"], float)
    assert flat["text_encoder_lr"] == [5e-5]  # nargs="*"
    assert flat["sdpa"] is True and flat["cache_latents"] is True
    assert flat["output_dir"] == str(ROOT / "model") and flat["output_name"] == "mytoken_v1"
    dataset = toml.loads(configs.dataset_toml(ROOT / "kohya-wrap.toml"))
    subsets = dataset["datasets"][0]["subsets"]
    assert subsets[0]["image_dir"] == str(ROOT / "image" / "10_mytoken woman")
    # voluptuous rejects integer literals where it wants floats
    assert subsets[0]["face_crop_aug_range"] == [2.0, 4.0] and all(
        isinstance(v, float) for v in subsets[0]["face_crop_aug_range"]
    )
    assert subsets[1] == {
        "image_dir": str(ROOT / "reg" / "1_woman"),
        "class_tokens": "woman",
        "num_repeats": 1,
        "is_reg": True,
    }
    assert dataset["general"]["resolution"] == [512, 768]


@pytest.mark.parametrize("which", ["train", "dataset"])
def test_toml_and_tomllib_read_the_same(which):
    configs, _ = rendered()
    text = configs.train_toml(ROOT / "k.toml") if which == "train" else configs.dataset_toml(ROOT / "k.toml")
    assert toml.loads(text) == tomllib.loads(text)


def test_sample_prompt_lines_use_section_defaults():
    _, spec, settings = render(SPEC)
    lines = render_sample_prompts(spec, settings).splitlines()
    assert lines[0] == "mytoken woman, portrait --n lowres, blurry --w 512 --h 768 --d 1 --l 7 --s 20"
    assert lines[1].endswith("--d 7 --l 5.5 --s 20 --ss ddim")


def test_square_resolution_and_family_defaults():
    configs, _, _ = render(
        {
            **SPEC,
            "dataset": {"resolution": 1024},
            "model": {"base": "/m", "family": "sd2", "v_parameterization": True},
            "sample": {},
        }
    )
    assert configs.train_args["v2"] is True and configs.train_args["v_parameterization"] is True
    assert configs.train_args["resolution"] == "1024,1024" and configs.dataset["general"]["resolution"] == 1024
    assert configs.train_args["network_module"] == "networks.lora"
    assert configs.sample_prompts is None and "sample_prompts" not in configs.train_args


def test_unscheduled_prompts_are_not_sampled_during_training():
    configs, _, _ = render({**SPEC, "sample": {"prompts": ["mytoken woman, portrait"]}})
    assert configs.sample_prompts is None and "sample_prompts" not in configs.train_args


def test_relative_paths_in_training_are_the_project_folders():
    """sd-scripts runs in its own folder: a relative tokenizer_cache_dir (or network_weights, base_weights, …)
    in the spec — relative to the project folder, where `check` looks — is written absolute, or sd-scripts
    would look beside train_network.py."""
    training = {
        "tokenizer_cache_dir": "tokenizers",
        "network_weights": "earlier/lora.safetensors",
        "base_weights": ["a.safetensors", "/abs/b.safetensors"],
        "log_tracker_config": "~/tracker.toml",
    }
    configs, _, settings = render({**SPEC, "training": {**SPEC["training"], **training}})
    section = configs.train_args
    assert section["tokenizer_cache_dir"] == str(ROOT / "tokenizers") == str(settings.tokenizer_cache_dir)
    assert section["network_weights"] == str(ROOT / "earlier" / "lora.safetensors")
    assert section["base_weights"] == [str(ROOT / "a.safetensors"), "/abs/b.safetensors"]
    assert section["log_tracker_config"] == str(Path("~/tracker.toml").expanduser())
    hub = render({**SPEC, "training": {**SPEC["training"], "resume": "me/state", "resume_from_huggingface": True}})
    assert hub[0].train_args["resume"] == "me/state"  # a repo on the hub, not a path
