"""Every shipped preset is valid against the option schema of the pinned sd-scripts, and documented."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import make_images
from kohya_wrap.paths import builtin_presets_dir
from kohya_wrap.presets import all_presets, find_preset
from kohya_wrap.sdscripts.families import family_named
from kohya_wrap.sdscripts.schema import load_option_schema
from kohya_wrap.spec.load import read_toml, resolve_extends, validate_spec

SHIPPED = sorted(p.stem for p in builtin_presets_dir().glob("*.toml"))
REQUIRED = {
    "sd15-character",
    "sd15-style",
    "sdxl-character",
    "sdxl-low-vram",
    "flux-character",
    "sd3-character",
    "lumina-character",
}


def test_the_required_presets_ship():
    assert REQUIRED <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_preset_validates_against_the_schema(name, tmp_path):
    project = {"extends": name, "name": "x", "concepts": [{"token": "t", "class": "c", "repeats": 1}]}
    merged, chain = resolve_extends(project, str(tmp_path / "kohya-wrap.toml"), tmp_path)
    spec = validate_spec(merged, name, load_option_schema())
    assert spec.training.max_train_epochs or spec.training.max_train_steps
    assert spec.dataset.resolution is not None and spec.model.base


@pytest.mark.parametrize("name", SHIPPED)
def test_preset_starts_with_the_command_that_uses_it(name):
    preset = find_preset(name)
    first = preset.path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# kohya-wrap init ") and f"--preset {name}" in first
    assert preset.summary and preset.origin == "built-in"
    assert read_toml(preset.path)  # parses


def test_low_vram_preset_has_the_memory_savers():
    spec = read_toml(find_preset("sdxl-low-vram").path)
    merged, _ = resolve_extends(spec, "sdxl-low-vram", find_preset("sdxl-low-vram").path.parent)
    training = merged["training"]
    assert (
        training["train_batch_size"] == 1
        and training["gradient_checkpointing"]
        and training["cache_text_encoder_outputs"]
    )
    assert training["optimizer_type"] in {"Adafactor", "AdamW8bit"}


def test_user_presets_shadow_built_ins(tmp_path, monkeypatch):
    (tmp_path / "sd15-character.toml").write_text(
        "# kohya-wrap init x --preset sd15-character\n# mine\n", encoding="utf-8"
    )
    monkeypatch.setenv("KOHYA_WRAP_PRESETS", str(tmp_path))
    found = {p.name: p for p in all_presets()}
    assert found["sd15-character"].origin == "user" and found["sd15-character"].summary == "mine"


# --- the presets of the families trained with a script of their own (SD3, Lumina) ---------------------------

FAMILY_PRESETS = {
    # preset: (family, script, network module, [model] hub files, [training] file options with a local path)
    "sd3-character": (
        "sd3",
        "sd3_train_network.py",
        "networks.lora_sd3",
        ("base", "clip_l", "t5xxl"),
        ("clip_g",),
    ),
    "lumina-character": (
        "lumina",
        "lumina_train_network.py",
        "networks.lora_lumina",
        ("base", "ae"),
        ("gemma2",),
    ),
}


def _merged_preset(name: str) -> dict:
    preset = find_preset(name)
    merged, _ = resolve_extends(read_toml(preset.path), name, preset.path.parent)
    return merged


def _fill_hub_cache(hf_home, refs) -> dict[str, str]:
    """Put a stand-in file for each hf://owner/repo/file ref where huggingface_hub looks offline (the cache's
    refs/main → snapshots/<commit>/<file>); returns ref → cached path."""
    cached = {}
    for ref in refs:
        owner, repo, filename = ref.removeprefix("hf://").split("/", 2)
        folder = hf_home / "hub" / f"models--{owner}--{repo}"
        (folder / "refs").mkdir(parents=True, exist_ok=True)
        (folder / "refs" / "main").write_text("0" * 40, encoding="utf-8")
        path = folder / "snapshots" / ("0" * 40) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not loaded")
        cached[ref] = str(path)
    return cached


def _init_project(cli, tmp_path, name: str):
    photos = make_images(tmp_path / "photos", [(1024 + 64 * i, 1024) for i in range(12)])
    root = tmp_path / f"{name} project"
    created = cli(
        "init", root, "--preset", name, "--token", "mytoken", "--class", "woman", "--images", photos[0].parent
    )
    assert created.code == 0, created.out + created.err
    return root


@pytest.mark.parametrize("name", sorted(FAMILY_PRESETS))
def test_family_preset_names_real_files_and_the_options_of_its_script(name):
    family, script, module, hub_fields, file_options = FAMILY_PRESETS[name]
    merged = _merged_preset(name)
    assert merged["model"]["family"] == family and merged["training"]["network_module"] == module
    for field in hub_fields:  # each hub file is a file of a repository, as the header's `hf download` fetches it
        owner, repo, filename = merged["model"][field].removeprefix("hf://").split("/", 2)
        assert filename.endswith(".safetensors") and f"{owner}/{repo}" in find_preset(name).path.read_text()
    options = load_option_schema().options(script)
    assert set(merged["training"]) <= set(options)  # every key is an option of this family's own script
    for option in file_options:
        assert option in options and not merged["training"][option].startswith("hf://")  # sd-scripts opens a path
    for required, _ in family_named(family).required:  # check names each required file: the preset sets them all
        assert merged["model"].get(required) or merged["training"].get(required)


@pytest.mark.parametrize("name", sorted(FAMILY_PRESETS))
def test_family_preset_checks_and_plans_offline(name, cli, tmp_path):
    """`init --preset` then `check`: offline (HF_HUB_OFFLINE, an empty cache) each hub file is named with the
    command that fetches it; with them in the cache and the [training] file in the project, check passes and
    plan renders every file as the absolute path sd-scripts opens."""
    family, script, module, hub_fields, file_options = FAMILY_PRESETS[name]
    root = _init_project(cli, tmp_path, name)
    merged = _merged_preset(name)
    refs = {field: merged["model"][field] for field in hub_fields}

    offline = cli("check", root)
    assert offline.code == 2
    for field, ref in refs.items():
        owner, repo, filename = ref.removeprefix("hf://").split("/", 2)
        assert f"model.{field}: {ref} is not in the Hugging Face cache" in offline.out
        assert f"hf download {owner}/{repo} {filename}" in offline.out

    cached = _fill_hub_cache(Path(os.environ["HF_HOME"]), refs.values())
    for option in file_options:
        local = root / merged["training"][option]
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(b"not loaded")
    checked = cli("check", root)
    assert checked.code == 0, checked.out + checked.err
    planned = cli("plan", root)
    assert planned.code == 0, planned.out + planned.err
    assert script in planned.out
    train = read_toml(root / "config" / "train.toml")
    flat = {key: value for section in train.values() for key, value in section.items()}
    assert flat["network_module"] == module
    for field, ref in refs.items():
        assert flat["pretrained_model_name_or_path" if field == "base" else field] == cached[ref]
    for option in file_options:
        assert flat[option] == str(root / merged["training"][option])


@pytest.mark.sdscripts
@pytest.mark.parametrize("name", sorted(FAMILY_PRESETS))
def test_the_real_script_reads_what_the_family_preset_plans(name, cli, tmp_path, real_sdscripts):
    """The rendered configs of the preset, read by the family's real script: its argument parser,
    read_config_from_file and dataset blueprint (tests/test_sdscripts_families.py's reader; no model load)."""
    from test_sdscripts_families import READER

    family, script, module, hub_fields, file_options = FAMILY_PRESETS[name]
    root = _init_project(cli, tmp_path, name)
    merged = _merged_preset(name)
    cached = _fill_hub_cache(Path(os.environ["HF_HOME"]), [merged["model"][f] for f in hub_fields])
    for option in file_options:
        (root / merged["training"][option]).parent.mkdir(parents=True, exist_ok=True)
        (root / merged["training"][option]).write_bytes(b"not loaded")
    planned = cli("plan", root, "--json")
    assert planned.code == 0, planned.out + planned.err
    names = [f for f in hub_fields if f != "base"] + list(file_options)
    read = subprocess.run(
        [
            os.environ.get("KOHYA_WRAP_SD_PYTHON", "python"),
            "-c",
            READER,
            str(real_sdscripts),
            script,
            str(root / "config" / "train.toml"),
            str(root / "config" / "dataset.toml"),
            " ".join(names),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert read.returncode == 0, read.stderr[-3000:]
    got = json.loads(read.stdout.strip().splitlines()[-1])
    assert got["network_module"] == module and got["pretrained"] == cached[merged["model"]["base"]]
    assert got["resolution"] == [1024, 1024] and got["num_repeats"] == [10]
    for field in hub_fields[1:]:
        assert got["model_files"][field] == cached[merged["model"][field]]
    for option in file_options:
        assert got["model_files"][option] == str(root / merged["training"][option])
