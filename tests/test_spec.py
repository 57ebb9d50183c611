"""The spec models and loader: presets chain, --set, and every problem reported at once, one line each."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kohya_wrap.errors import KohyaWrapError, SpecError
from kohya_wrap.sdscripts.schema import load_option_schema
from kohya_wrap.spec.load import deep_merge, load_project, validate_spec
from kohya_wrap.spec.overrides import apply_overrides, parse_override

SCHEMA = load_option_schema()


def minimal(**overrides) -> dict:
    data = {
        "name": "mytoken_v1",
        "model": {"base": "/models/base.safetensors"},
        "concepts": [{"token": "mytoken", "class": "woman", "repeats": 10}],
        "dataset": {"resolution": 512},
        "training": {"max_train_epochs": 10},
    }
    return deep_merge(data, overrides)


def problems(data: dict) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        validate_spec(data, "kohya-wrap.toml", SCHEMA)
    return {p.where: p.line() for p in info.value.problems}


def test_minimal_spec_is_valid_and_frozen():
    spec = validate_spec(minimal(), "kohya-wrap.toml", SCHEMA)
    assert spec.concepts[0].folder_name == "10_mytoken woman"
    assert spec.model.script == "train_network.py"
    with pytest.raises(ValidationError, match="frozen"):
        spec.name = "other"


def test_non_ascii_name_is_rejected_with_an_ascii_suggestion():
    found = problems(minimal(name="我的lora_v1"))
    assert 'name = "lora_v1"' in found["name"]


def test_misspelt_training_key_suggests_the_right_one():
    found = problems(minimal(training={"network_dimm": 16}))
    assert "did you mean 'network_dim'?" in found["training.network_dimm"]


def test_wrong_type_and_negative_learning_rate():
    found = problems(minimal(training={"network_dim": "sixteen", "learning_rate": -1e-4}))
    assert "network_dim" in found["training.network_dim"] and "'sixteen'" in found["training.network_dim"]
    assert "greater than 0" in found["training.learning_rate"]


def test_all_problems_are_reported_together():
    found = problems(
        minimal(name="ä", training={"network_dimm": 1, "optimizer_type": 8}, launch={"gpu_ids": "zero"}, modell={})
    )
    assert {"name", "training.network_dimm", "training.optimizer_type", "launch.gpu_ids", "modell"} <= set(found)
    assert "did you mean 'model'?" in found["modell"]


def test_keys_kohya_wrap_owns_are_redirected():
    found = problems(
        minimal(training={"output_dir": "/x", "pretrained_model_name_or_path": "/m", "caption_extension": ".txt"})
    )
    assert "kohya-wrap saves to the project's model/ folder" in found["training.output_dir"]
    assert "set model.base" in found["training.pretrained_model_name_or_path"]
    assert "move it to [dataset]" in found["training.caption_extension"]


def test_options_of_another_script_are_unknown_for_this_family():
    assert (
        "has no such option"
        in problems(minimal(training={"cache_text_encoder_outputs": True}))["training.cache_text_encoder_outputs"]
    )
    spec = validate_spec(minimal(model={"family": "sdxl"}, training={"cache_text_encoder_outputs": True}), "x", SCHEMA)
    assert spec.model.script == "sdxl_train_network.py"


def test_choices_from_the_schema():
    found = problems(
        minimal(training={"mixed_precision": "fp8"}, sample={"prompts": ["a"], "every_n_epochs": 1, "sampler": "magic"})
    )
    assert "training.mixed_precision" in found
    assert "euler_a" in found["sample.sampler"]


def test_dataset_and_concept_options_are_checked_against_dataset_config():
    found = problems(
        minimal(
            dataset={"flip_augg": True, "keep_tokens": "1"},
            concepts=[{"token": "t", "repeats": 1, "num_repeats": 3, "flip_aug": "yes"}],
        )
    )
    assert "did you mean 'flip_aug'?" in found["dataset.flip_augg"]
    assert "dataset.keep_tokens" in found
    assert "set repeats" in found["concepts[0].num_repeats"]
    assert "concepts[0].flip_aug" in found


def test_cross_field_rules_name_the_fix():
    found = problems(minimal(model={"family": "flux"}))
    assert "model.clip_l" in found and "FLUX needs" in found["model.clip_l"]
    assert "add prompts" in problems(minimal(sample={"every_n_epochs": 1}))["sample.prompts"]
    grid_only = validate_spec(
        minimal(sample={"prompts": ["x"]}), "kohya-wrap.toml", SCHEMA
    )  # grid's defaults, no sampling
    assert grid_only.sample.prompts == ["x"] and not grid_only.sample.enabled
    assert (
        "num_machines"
        in problems(
            minimal(
                launch={
                    "num_processes": 3,
                    "num_machines": 2,
                    "main_process_ip": "10.0.0.1",
                    "main_process_port": 29500,
                }
            )
        )["launch.num_processes"]
    )
    assert "max_train_epochs" in problems({**minimal(), "training": {}})["training.max_train_epochs"]
    assert "dataset.resolution" in problems({**minimal(), "dataset": {}})


def test_concept_rules():
    found = problems(
        minimal(
            concepts=[{"token": "a/b", "repeats": 0}, {"class": "woman", "repeats": 1, "is_reg": True, "token": "x"}]
        )
    )
    assert "concepts[0].token" in found and "concepts[0].repeats" in found
    assert "remove token" in found["concepts[1].token"]


def test_parse_override_values_are_toml():
    assert (lambda o: (o.path, o.value))(parse_override("training.learning_rate=2e-4")) == (
        ["training", "learning_rate"],
        2e-4,
    )
    assert (lambda o: (o.path, o.value))(parse_override("dataset.resolution=[512, 768]")) == (
        ["dataset", "resolution"],
        [512, 768],
    )
    assert (lambda o: (o.path, o.value))(parse_override("name=plain text")) == (["name"], "plain text")
    assert (lambda o: (o.path, o.value))(parse_override("concepts.0.repeats=5")) == (["concepts", 0, "repeats"], 5)
    with pytest.raises(KohyaWrapError):
        parse_override("no-equals-sign")


def test_apply_overrides_never_changes_the_input():
    data = minimal()
    changed = apply_overrides(data, ["concepts.0.repeats=5", "training.network_dim=8"])
    assert changed["concepts"][0]["repeats"] == 5 and data["concepts"][0]["repeats"] == 10
    with pytest.raises(KohyaWrapError, match="no item 3"):
        apply_overrides(data, ["concepts.3.repeats=1"])


def test_extends_chain_with_user_presets(tmp_path, monkeypatch):
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "mine.toml").write_text('extends = "sd15-character"\n[training]\nnetwork_dim = 8\n', encoding="utf-8")
    monkeypatch.setenv("KOHYA_WRAP_PRESETS", str(presets))
    project = tmp_path / "p"
    project.mkdir()
    (project / "kohya-wrap.toml").write_text(
        'extends = "mine"\nname = "x"\n[model]\nbase = "m.safetensors"\n[[concepts]]\ntoken = "t"\nrepeats = '
        "2\n[training]\nlearning_rate = 3e-4\n",
        encoding="utf-8",
    )
    loaded = load_project(project)
    assert loaded.spec.training.network_dim == 8  # from mine
    assert loaded.spec.training.learning_rate == 3e-4  # from the project
    assert loaded.spec.dataset.resolution == 512  # from sd15-character
    assert [p.split("/")[-1] for p in loaded.chain] == ["kohya-wrap.toml", "mine.toml", "sd15-character.toml"]
    assert load_project(project, ["training.network_dim=4"]).spec.training.network_dim == 4


def test_extends_cycle_is_rejected(tmp_path, monkeypatch):
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n', encoding="utf-8")
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n', encoding="utf-8")
    (tmp_path / "kohya-wrap.toml").write_text('extends = "a.toml"\nname = "x"\n', encoding="utf-8")
    with pytest.raises(SpecError, match="1 problem") as info:
        load_project(tmp_path)
    assert "cycle" in info.value.problems[0].what


def test_toml_syntax_error_names_the_file(tmp_path):
    (tmp_path / "kohya-wrap.toml").write_text('name = "x\n', encoding="utf-8")
    with pytest.raises(KohyaWrapError, match="not valid TOML"):
        load_project(tmp_path)


def test_missing_spec_says_how_to_create_one(tmp_path):
    with pytest.raises(KohyaWrapError) as info:
        load_project(tmp_path)
    assert "kohya-wrap init" in info.value.hint


def test_bucket_steps_must_suit_the_script():
    assert (
        "multiple of 64, which train_network.py requires"
        in problems(minimal(dataset={"resolution": 512, "bucket_reso_steps": 32}))["dataset.bucket_reso_steps"]
    )
    validate_spec(minimal(model={"family": "sdxl"}, dataset={"resolution": 1024, "bucket_reso_steps": 32}), "x", SCHEMA)
