"""Every network-training script an sd-scripts checkout has is read into the option schema — what a
release adds needs no kohya-wrap change to be validated against — and a script no family trains with
yet is named, so a new sd-scripts family is noticed by a test and by `vendor install`, not by a user."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kohya_wrap.sdscripts.families import FAMILIES, scripts_without_family
from kohya_wrap.sdscripts.schema import INTROSPECT, load_option_schema, shipped_schema
from kohya_wrap.sdscripts.vendor.manage import option_count
from standin import CONFIG_UTIL, SUBSCRIPT, TRAIN_NETWORK, TRAIN_UTIL

# sd-scripts v0.10.1, the pinned release: its *train_network.py scripts (ls in a checkout of the tag)
V0_10_1_SCRIPTS = {
    "train_network.py",
    "sdxl_train_network.py",
    "flux_train_network.py",
    "sd3_train_network.py",
    "lumina_train_network.py",
    "hunyuan_image_train_network.py",
    "anima_train_network.py",
}


def checkout(root: Path, scripts: dict[str, str]) -> Path:
    (root / "library").mkdir(parents=True)
    (root / "library" / "__init__.py").write_text("", encoding="utf-8")
    (root / "library" / "train_util.py").write_text(
        TRAIN_UTIL.format(lr_scheduler="constant", precisions='["no", "fp16", "bf16"]', extra=""), encoding="utf-8"
    )
    (root / "library" / "config_util.py").write_text(CONFIG_UTIL, encoding="utf-8")
    for name, text in scripts.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def introspect(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(INTROSPECT), "--sd-scripts", str(root), *args],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        timeout=60,
    )


def test_every_network_script_of_a_checkout_is_read(tmp_path):
    root = checkout(
        tmp_path / "sd scripts 新",
        {
            "train_network.py": TRAIN_NETWORK.format(extra=""),
            "sdxl_train_network.py": SUBSCRIPT.format(extra=""),
            "newfam_train_network.py": SUBSCRIPT.format(extra='    parser.add_argument("--gemma2", type=str)'),
            "needs_more_train_network.py": "import a_module_the_venv_lacks\n" + SUBSCRIPT.format(extra=""),
            "train_textual_inversion.py": "raise SystemExit('not a network script: never imported')\n",
        },
    )
    result = introspect(root)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert sorted(schema["scripts"]) == ["newfam_train_network.py", "sdxl_train_network.py", "train_network.py"]
    assert "gemma2" in schema["scripts"]["newfam_train_network.py"]["options"]
    assert schema["skipped"] == {
        "needs_more_train_network.py": "ModuleNotFoundError: No module named 'a_module_the_venv_lacks'"
    }
    named = introspect(root, "--script", "needs_more_train_network.py")  # asked for by name: its error counts
    assert named.returncode != 0 and "a_module_the_venv_lacks" in named.stderr


def test_a_base_script_that_cannot_be_imported_still_fails(tmp_path):
    root = checkout(
        tmp_path / "sd",
        {
            "train_network.py": "import a_module_the_venv_lacks\n" + TRAIN_NETWORK.format(extra=""),
            "sdxl_train_network.py": SUBSCRIPT.format(extra=""),
        },
    )
    result = introspect(root)
    assert result.returncode != 0 and "a_module_the_venv_lacks" in result.stderr


def test_the_shipped_snapshot_has_every_network_script_of_its_release():
    schema = shipped_schema()
    assert set(schema.scripts) == V0_10_1_SCRIPTS
    assert all(len(options) > 150 for options in schema.scripts.values())
    assert {family.script for family in FAMILIES.values()} <= set(schema.scripts)
    assert scripts_without_family(schema.scripts) == ["anima_train_network.py"]
    assert option_count(schema).endswith("in 7 scripts; not yet a model.family in kohya-wrap: anima_train_network.py")


# the scripts of the installed sd-scripts that no family trains with yet, each seen and named on purpose
NO_FAMILY_YET = {"anima_train_network.py"}


@pytest.mark.sdscripts
def test_every_network_script_of_the_installed_sd_scripts_has_a_schema_and_a_family_or_is_named(real_sdscripts):
    """A new *train_network.py in sd-scripts fails here: it gets a schema by itself, but it needs a family
    (sdscripts/families.py) or a place in NO_FAMILY_YET, which `vendor install` then names."""
    from kohya_wrap.sdscripts.locate import locate_sd_scripts

    present = {path.name for path in real_sdscripts.glob("*train_network.py")}
    schema = load_option_schema(locate_sd_scripts())
    assert present and set(schema.scripts) == present
    untabled = scripts_without_family(present)
    new = sorted(set(untabled) - NO_FAMILY_YET)
    assert not new, f"sd-scripts has network scripts kohya-wrap has not met: {new} — add a family or name them"
    if untabled:
        assert option_count(schema).endswith("not yet a model.family in kohya-wrap: " + ", ".join(untabled))


def with_model(root: Path, lines: str) -> Path:
    spec = root / "kohya-wrap.toml"
    text = spec.read_text(encoding="utf-8").replace("[model]\n", "[model]\n" + lines, 1)
    spec.write_text(text, encoding="utf-8")
    return root


def standalone(root: Path, training: str) -> Path:
    """The project without the sd15 preset, with its own [dataset] and [training]."""
    spec = root / "kohya-wrap.toml"
    text = spec.read_text(encoding="utf-8").replace('extends = "sd15-character"\n', "")
    spec.write_text(
        text + "[dataset]\nresolution = 512\n[training]\nmax_train_steps = 10\n" + training, encoding="utf-8"
    )
    return root


def test_a_family_sd_scripts_added_validates_plans_and_is_named(project, base_model, cli):
    """anima is not in kohya-wrap's table, but the shipped v0.10.1 schema has anima_train_network.py: the
    spec validates against that script, plan renders its command with networks.lora_anima, and check
    says what kohya-wrap cannot check for it."""
    qwen = base_model.with_name("qwen3.safetensors")
    qwen.write_bytes(b"\0" * 16)
    root = standalone(with_model(project(), 'family = "anima"\n'), f'qwen3 = "{qwen.as_posix()}"\n')
    checked = cli("check", root)
    assert checked.code == 0, checked.out + checked.err
    assert "model.family: 'anima' is not in kohya-wrap's family table: it trains with anima_train_network.py" in (
        checked.out
    )
    planned = cli("plan", root, "--json")
    assert planned.code == 0, planned.err
    assert "anima_train_network.py" in " ".join(json.loads(planned.out)["command"])
    train = (root / "config" / "train.toml").read_text(encoding="utf-8")
    assert 'network_module = "networks.lora_anima"' in train and f'qwen3 = "{qwen}"' in train
    typo = cli("check", root, "--set", "training.qwen3_max_token_lenght=256")  # checked against anima's own options
    assert typo.code == 2 and "did you mean 'qwen3_max_token_length'" in typo.err


def test_each_family_names_the_model_files_it_needs(project, base_model, cli):
    """From sd-scripts' docs/<script>.md: Lumina needs --gemma2 and --ae, HunyuanImage --text_encoder,
    --byt5 and --vae, FLUX clip_l, t5xxl and ae; a relative path is made absolute (sd-scripts runs in its
    own folder)."""
    lumina = standalone(with_model(project(folder_name="lumina"), 'family = "lumina"\n'), "")
    result = cli("check", lumina)
    assert result.code == 2 and "model.ae: Lumina needs ae — set model.ae to the file's path" in result.err
    (lumina / "ae.safetensors").write_bytes(b"\0" * 16)
    with_model(lumina, 'ae = "ae.safetensors"\n')
    result = cli("check", lumina)
    assert result.code == 2
    assert (
        "training.gemma2: Lumina needs the Gemma2 text encoder (lumina_train_network.py --gemma2) — set "
        "training.gemma2 to the file's path"
    ) in result.err
    (lumina / "gemma 2.safetensors").write_bytes(b"\0" * 16)
    assert cli("plan", lumina, "--set", "training.gemma2=gemma 2.safetensors").code == 0
    train = (lumina / "config" / "train.toml").read_text(encoding="utf-8")
    assert (
        f'gemma2 = "{lumina / "gemma 2.safetensors"}"' in train and 'network_module = "networks.lora_lumina"' in train
    )
    hunyuan = standalone(with_model(project(folder_name="hunyuan"), 'family = "hunyuan_image"\n'), "")
    result = cli("check", hunyuan)
    assert result.code == 2 and "model.vae: HunyuanImage needs vae" in result.err
    sd3 = standalone(with_model(project(folder_name="sd3"), 'family = "sd3"\n'), "")  # a single file may hold them
    assert cli("check", sd3).code == 0


@pytest.mark.parametrize(
    "family, message",
    [
        (
            "nosuch",
            "model.family: 'nosuch' is not a family kohya-wrap knows, and sd-scripts v0.10.1 (snapshot) has no "
            "nosuch_train_network.py — use one of sd15, sd2, sdxl, flux, sd3, lumina, hunyuan_image, anima",
        ),
        (
            "SD 3!",
            "model.family: 'SD 3!' is not a model family — use one of sd15, sd2, sdxl, flux, sd3, lumina, "
            "hunyuan_image",
        ),
    ],
)
def test_a_family_no_sd_scripts_trains_is_refused(project, cli, family, message):
    result = cli("check", with_model(project(), f'family = "{family}"\n'))
    assert result.code == 2 and message in result.err, result.err


def test_the_table_s_families_still_refuse_parts_they_do_not_take(project, base_model, cli):
    result = cli("check", with_model(project(), f'family = "sdxl"\nclip_l = "{base_model.as_posix()}"\n'))
    assert result.code == 2 and 'clip_l only apply to family = "flux"' in result.err


def test_another_family_s_lora_module_is_flagged(project, base_model, cli):
    """A project that extends the sd15 preset (networks.lora) but trains sd3: networks.lora would look for
    SD's UNet layers in an MMDiT."""
    root = with_model(project(), 'family = "sd3"\n')
    result = cli("check", root)
    assert (
        "training.network_module: networks.lora is the LoRA module of another model family; sd3_train_network.py "
        'trains sd3 LoRAs with networks.lora_sd3 — set training.network_module = "networks.lora_sd3"'
    ) in result.out
    fixed = cli("check", root, "--set", "training.network_module=networks.lora_sd3")
    assert "is the LoRA module of another model family" not in fixed.out
    lycoris = cli("check", root, "--set", "training.network_module=lycoris.kohya")
    assert "is the LoRA module of another model family" not in lycoris.out


def safetensors_with(path: Path, keys: list[str]) -> Path:
    """A .safetensors file whose header names `keys` (one float each): what `check` reads."""
    import struct

    header = {key: {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]} for i, key in enumerate(keys)}
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0" * 4 * len(keys))
    return path


def test_an_sd3_base_without_its_text_encoders_names_each_missing_file(project, tmp_path, cli):
    """sd3.5_medium.safetensors holds the MMDiT and VAE only: without --clip_l/--clip_g/--t5xxl,
    sd3_train_network.py logs "not included in the checkpoint and … not provided" and trains without them."""
    from kohya_wrap.sdscripts.sd3files import SD3_TEXT_ENCODERS

    base = safetensors_with(tmp_path / "sd3.5_medium.safetensors", ["model.diffusion_model.x_embedder.proj.weight"])
    root = standalone(with_model(project(folder_name="sd3"), 'family = "sd3"\n'), "")
    on_base = ("--set", f'model.base="{base.as_posix()}"')
    result = cli("check", root, *on_base)
    assert result.code == 2, result.out
    for where, name in (("model.clip_l", "CLIP-L"), ("training.clip_g", "CLIP-G"), ("model.t5xxl", "T5-XXL")):
        assert f"{where}: sd3.5_medium.safetensors holds no {name} text encoder, and {where} is not set" in result.out
    encoder = safetensors_with(tmp_path / "encoder.safetensors", ["x"])
    given = ("--set", f'model.clip_l="{encoder.as_posix()}"', "--set", f'model.t5xxl="{encoder.as_posix()}"')
    result = cli("check", root, *on_base, *given)
    assert result.code == 2 and "training.clip_g: " in result.out and "model.clip_l: sd3.5" not in result.out
    assert cli("check", root, *on_base, *given, "--set", f'training.clip_g="{encoder.as_posix()}"').code == 0
    whole = safetensors_with(tmp_path / "sd3_medium_incl_clips.safetensors", [key for *_, key in SD3_TEXT_ENCODERS])
    assert cli("check", root, "--set", f'model.base="{whole.as_posix()}"').code == 0  # one file holding them all
