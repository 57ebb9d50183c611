"""The kohya_ss GUI's own LoRA presets (tests/fixtures/kohya_ss/presets, copied from the GUI; see SOURCE.md
there) through the real CLI: `init --from-kohya-ss PRESET` without --name, a few images, `plan`. And the spec
rules they needed: LyCORIS dims above the networks.* cap, bucket_reso_steps checked as sd-scripts checks it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import REPO, make_images
from kohya_wrap.interop.kohya_ss import KOHYA_SS_COMMIT
from kohya_wrap.spec.load import validate_spec
from test_spec import SCHEMA, problems
from test_spec import minimal as spec

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

PRESET_DIR = REPO / "tests" / "fixtures" / "kohya_ss" / "presets"
PRESETS = sorted(p.name for p in PRESET_DIR.glob("*.json"))
SIZES = [(512, 512), (640, 512), (512, 640), (576, 576)]

# The presets that do not plan with ".txt" captions, and why: each reads its captions from another extension,
# so sd-scripts would not read the .txt files (".txt-no" and ".none-use-foldername" are their authors' way of
# saying "caption each image with its folder's name"; ".txt2" is a second caption set). `check` stops on it:
# the error is about the data, and uncaptioned images (or captions renamed to the extension) plan.
CAPTIONS_ELSEWHERE = {
    "SDXL - LoRA AI_Now ADamW v1.0.json": ".txt-no",
    "SDXL - LoRA adafactor v1.0.json": ".txt2",
    "SDXL - LoRA finetuning phase 1_v1.1.json": ".txt2",
    "SDXL - LoRA finetuning phase 2_v1.1.json": ".txt2",
    "ia3-sd15.json": ".none-use-foldername",
    "locon-dadaptation-sdxl.json": ".none-use-foldername",
    "loha-sd15.json": ".none-use-foldername",
    "lokr-sd15.json": ".none-use-foldername",
}


def init_from_preset(cli, tmp_path: Path, base_model: Path, name: str):
    """`init DIR --from-kohya-ss PRESET --token tok --class woman --base-model FILE`, no --name; FLUX presets
    also get stand-in clip_l/t5xxl/ae files (the GUI's FLUX preset holds placeholder text for them, e.g. "put the
    full path to ae.sft here", which `plan` reports as files that do not exist)."""
    root = tmp_path / "project"
    args: list[object] = ["init", root, "--from-kohya-ss", PRESET_DIR / name]
    args += ["--token", "tok", "--class", "woman", "--base-model", base_model]
    if json.loads((PRESET_DIR / name).read_text(encoding="utf-8")).get("flux1_checkbox"):
        for part in ("clip_l", "t5xxl", "ae"):
            path = tmp_path / "models" / f"{part}.safetensors"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"\0" * 16)
            args += ["--set", f"model.{part}={path}"]
    return root, cli(*args)


def test_the_preset_set_is_the_guis_31_lora_presets():
    assert len(PRESETS) == 31
    assert KOHYA_SS_COMMIT in (PRESET_DIR / "SOURCE.md").read_text(encoding="utf-8")
    assert set(CAPTIONS_ELSEWHERE) <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_every_gui_preset_imports_and_plans(tmp_path, cli, base_model, name):
    root, result = init_from_preset(cli, tmp_path, base_model, name)
    assert result.code == 0, result.err
    spec = tomllib.loads((root / "kohya-wrap.toml").read_text(encoding="utf-8"))
    output_name = json.loads((PRESET_DIR / name).read_text(encoding="utf-8")).get("output_name")
    assert spec["name"] == (output_name or "tok_v1")  # presets without an output name: <token>_v1
    folder = root / "image" / "10_tok woman"
    assert folder.is_dir()
    make_images(folder, SIZES, caption=None)  # uncaptioned: sd-scripts captions each with "tok woman"
    plan = cli("plan", root, "--json")
    assert plan.code == 0, plan.err + plan.out
    assert json.loads(plan.out)["total_steps"] > 0


@pytest.mark.parametrize("name", PRESETS)
def test_gui_presets_with_txt_captions(tmp_path, cli, base_model, name):
    root, result = init_from_preset(cli, tmp_path, base_model, name)
    assert result.code == 0, result.err
    folder = root / "image" / "10_tok woman"
    make_images(folder, SIZES, caption="tok woman")
    plan = cli("plan", root)
    if name not in CAPTIONS_ELSEWHERE:
        assert plan.code == 0, plan.err + plan.out
        return
    extension = CAPTIONS_ELSEWHERE[name]
    assert plan.code != 0
    assert (
        f'image/10_tok woman: caption_extension is "{extension}" but the captions here are 4 ".txt" file(s) — set '
        'dataset.caption_extension = ".txt" (or rename the files)'
    ) in plan.out
    for caption in folder.glob("*.txt"):  # the data fix: captions where the preset reads them
        caption.rename(caption.with_suffix(extension))
    again = cli("plan", root)
    assert again.code == 0, again.err + again.out


def test_lycoris_lokr_full_matrix_preset_keeps_its_dims(tmp_path, cli, base_model):
    root, result = init_from_preset(cli, tmp_path, base_model, "sd15 - LoKr v2.0.json")
    assert result.code == 0, result.err
    assert "kohya_ss: network_dim 100000 and conv_dim 100000: kept; LyCORIS LoKr's full-dimension" in result.out
    training = tomllib.loads((root / "kohya-wrap.toml").read_text(encoding="utf-8"))["training"]
    assert training["network_module"] == "lycoris.kohya" and training["network_dim"] == 100000
    assert {"algo=lokr", "conv_dim=100000", "factor=6"} <= set(training["network_args"])


def test_bucket_step_sd_scripts_stops_on_is_imported_as_the_nearest_valid_one(tmp_path, cli, base_model):
    root, result = init_from_preset(cli, tmp_path, base_model, "locon-dadaptation-sdxl.json")
    assert result.code == 0, result.err
    assert (
        "kohya_ss: bucket_reso_steps 1: with bucketing on, sdxl_train_network.py stops at start-up unless it is a "
        "multiple of 32 (sd-scripts' verify_bucket_reso_steps); the spec uses 32, the nearest that it accepts."
    ) in result.out
    dataset = tomllib.loads((root / "kohya-wrap.toml").read_text(encoding="utf-8"))["dataset"]
    assert dataset["bucket_reso_steps"] == 32 and dataset["enable_bucket"] is True


def test_missing_resolution_and_training_length_take_the_gui_defaults(tmp_path, cli, base_model):
    root, result = init_from_preset(cli, tmp_path, base_model, "iA3-Prodigy-sd15.json")  # no max_resolution
    assert result.code == 0, result.err
    assert "kohya_ss: The config has no max_resolution: the GUI trains at its default '512,512'" in result.out
    assert tomllib.loads((root / "kohya-wrap.toml").read_text(encoding="utf-8"))["dataset"]["resolution"] == 512
    other = tmp_path / "other"
    other.mkdir()
    root, result = init_from_preset(cli, other, base_model, "lokr-sd15.json")  # no epoch, max_train_* empty
    assert result.code == 0, result.err
    assert "the GUI trains its default epoch = 1; the spec says max_train_epochs = 1" in result.out
    assert tomllib.loads((root / "kohya-wrap.toml").read_text(encoding="utf-8"))["training"]["max_train_epochs"] == 1


# --------------------------------------------------------------------------
# the spec rules the presets needed (kohya_wrap/spec/models.py)
# --------------------------------------------------------------------------


def test_lycoris_takes_network_dims_above_4096_the_networks_modules_do_not():
    lycoris = {"network_module": "lycoris.kohya", "network_dim": 100000, "network_args": ["algo=lokr"]}
    assert validate_spec(spec(training=lycoris), "x", SCHEMA).training.network_dim == 100000
    validate_spec(spec(training={"network_module": "networks.lora", "network_dim": 4096}), "x", SCHEMA)
    for training in ({"network_module": "networks.lora", "network_dim": 4097}, {"network_dim": 100000}):
        line = problems(spec(training=training))["training.network_dim"]
        assert "is too large for" in line and "use at most 4096" in line and "lycoris.kohya" in line


def test_bucket_steps_are_checked_as_sd_scripts_checks_them():
    # bucketing off: sd-scripts sets bucket_reso_steps to None and never checks it; any value >= 1 is fine
    off = spec(dataset={"enable_bucket": False, "bucket_reso_steps": 1})
    assert validate_spec(off, "x", SCHEMA).dataset.bucket_reso_steps == 1
    validate_spec(
        spec(model={"family": "sdxl"}, dataset={"enable_bucket": False, "bucket_reso_steps": 20}), "x", SCHEMA
    )
    # bucketing on (or not said): train_network.py asserts a multiple of 64
    for dataset in ({"enable_bucket": True, "bucket_reso_steps": 1}, {"bucket_reso_steps": 1}):
        line = problems(spec(dataset=dataset))["dataset.bucket_reso_steps"]
        assert "1 is not a multiple of 64, which train_network.py requires with bucketing on — use 64" in line
    assert (
        "too small"
        in problems(spec(dataset={"enable_bucket": False, "bucket_reso_steps": 0}))["dataset.bucket_reso_steps"]
    )
