"""Every shipped preset is valid against the option schema of the pinned sd-scripts, and documented."""

from __future__ import annotations

import pytest

from kohya_wrap.paths import builtin_presets_dir
from kohya_wrap.presets import all_presets, find_preset
from kohya_wrap.sdscripts.schema import load_option_schema
from kohya_wrap.spec.load import read_toml, resolve_extends, validate_spec

SHIPPED = sorted(p.stem for p in builtin_presets_dir().glob("*.toml"))
REQUIRED = {"sd15-character", "sd15-style", "sdxl-character", "sdxl-low-vram", "flux-character"}


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
