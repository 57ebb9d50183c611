"""What the user says wins: a value set in the spec or with --set beats a preset's, even where sd-scripts
would let another option win (max_train_epochs over max_train_steps, unet_lr over learning_rate), and a
preset's value can be removed (--unset, or the spec's `unset` list)."""

from __future__ import annotations

import json
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


def plan_of(cli, root, *args):
    result = cli("plan", root, "--json", *args)
    assert result.code == 0, result.err
    train = tomllib.loads((root / "config" / "train.toml").read_text(encoding="utf-8"))
    return json.loads(result.out), {k: v for section in train.values() for k, v in section.items()}


def test_set_max_train_steps_beats_the_presets_epochs(project, cli):
    root = project()  # extends sd15-character: max_train_epochs = 10
    plan, train = plan_of(cli, root, "--set", "training.max_train_steps=4")
    assert plan["total_steps"] == 4 and train["max_train_steps"] == 4 and "max_train_epochs" not in train
    assert any(
        "max_train_epochs = 10 is dropped" in note and "max_train_steps = 4 wins" in note for note in plan["notes"]
    )
    human = cli("plan", root, "--set", "training.max_train_steps=4")
    assert "4 total optimization steps" in human.out and "the preset's training.max_train_epochs" in human.out


def test_the_specs_own_steps_beat_the_presets_epochs_but_not_its_own(project, cli):
    root = project("[training]\nmax_train_steps = 6\n")
    plan, train = plan_of(cli, root)
    assert plan["total_steps"] == 6 and "max_train_epochs" not in train
    plan, train = plan_of(cli, root, "--set", "training.max_train_epochs=1")  # the command line outranks the spec
    assert train["max_train_epochs"] == 1 and plan["epochs"] == 1


def test_set_learning_rate_beats_the_presets_unet_lr(project, cli):
    root = project()  # the preset sets unet_lr = 1e-4 and text_encoder_lr = 5e-5
    _, train = plan_of(cli, root, "--set", "training.learning_rate=2e-4")
    assert train["learning_rate"] == 2e-4 and "unet_lr" not in train and train["text_encoder_lr"] == [5e-5]
    _, kept = plan_of(cli, root)
    assert kept["unet_lr"] == 1e-4  # nothing set by the user: the preset stands


def test_unset_removes_a_presets_value(project, cli):
    root = project()
    _, train = plan_of(cli, root, "--unset", "training.text_encoder_lr")
    assert "text_encoder_lr" not in train
    missing = cli("plan", root, "--unset", "training.no_such_key")
    assert missing.code == 2 and "--unset training.no_such_key: the spec and its presets do not set it" in missing.err
    spec = root / "kohya-wrap.toml"
    spec.write_text(
        'unset = ["training.text_encoder_lr", "training.unet_lr"]\n' + spec.read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    _, train = plan_of(cli, root)
    assert "text_encoder_lr" not in train and "unet_lr" not in train


def test_init_writes_an_unset_into_the_spec(tmp_path, cli, base_model):
    root = tmp_path / "p"
    made = cli("init", root, "--token", "t", "--base-model", base_model, "--unset", "training.unet_lr")
    assert made.code == 0, made.err
    data = tomllib.loads((root / "kohya-wrap.toml").read_text(encoding="utf-8"))
    assert data["unset"] == ["training.unet_lr"]
