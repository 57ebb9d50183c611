"""kohya_ss GUI configs through the CLI: `init --from-kohya-ss` and `export --kohya-ss`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import REPO, make_images

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

FIXTURE = REPO / "tests" / "fixtures" / "kohya_ss" / "sd15_standard_save_config.json"


def gui_config(tmp_path: Path, base_model: Path) -> Path:
    """The GUI's folder layout: train_data_dir/<repeats>_<token> <class>, reg_data_dir/<repeats>_<class>."""
    data = json.loads(FIXTURE.read_text(encoding="utf-8"))
    gui_root = tmp_path / "kohya_ss project 训练"
    make_images(gui_root / "img" / "5_meichar woman", [(512, 512), (512, 768), (768, 512)])
    make_images(gui_root / "reg" / "1_woman", [(512, 512)] * 4, caption="woman")
    data.update(
        train_data_dir=str(gui_root / "img"),
        reg_data_dir=str(gui_root / "reg"),
        pretrained_model_name_or_path=str(base_model),
    )
    path = tmp_path / "gui.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_init_from_a_gui_config_derives_concepts_and_copies_images(tmp_path, cli, base_model):
    root = tmp_path / "from gui"
    result = cli("init", root, "--from-kohya-ss", gui_config(tmp_path, base_model), "--no-prep")
    assert result.code == 0, result.err
    assert "kohya_ss: output_dir" in result.out  # GUI settings the layout replaces are reported, not dropped
    spec = tomllib.loads((root / "kohya-wrap.toml").read_text(encoding="utf-8"))
    assert [(c.get("token"), c["class"], c["repeats"], c.get("is_reg", False)) for c in spec["concepts"]] == [
        ("meichar", "woman", 5, False),
        (None, "woman", 1, True),
    ]
    assert spec["training"]["network_dim"] == 32 and spec["dataset"]["resolution"] == 512
    assert len(list((root / "image" / "5_meichar woman").glob("*.png"))) == 3
    assert len(list((root / "reg" / "1_woman").glob("*.png"))) == 4
    plan = cli("plan", root, "--json")
    assert plan.code == 0, plan.err + plan.out
    assert json.loads(plan.out)["reg_images_x_repeats"] == 4


def test_gui_config_without_folders_needs_a_token(tmp_path, cli, base_model):
    result = cli("init", tmp_path / "p", "--from-kohya-ss", FIXTURE)
    assert result.code == 2 and "add --token" in result.err
    assert not (tmp_path / "p" / "kohya-wrap.toml").exists()
    ok = cli(
        "init",
        tmp_path / "p",
        "--from-kohya-ss",
        FIXTURE,
        "--token",
        "meichar",
        "--class",
        "woman",
        "--base-model",
        base_model,
    )
    assert ok.code == 0, ok.err


def test_export_then_import_keeps_the_settings(tmp_path, cli, project):
    root = project("\n[training]\nnetwork_dim = 8\nlearning_rate = 3e-4\n")
    out = tmp_path / "exported gui.json"
    result = cli("export", root, "--kohya-ss", out)
    assert result.code == 0, result.err
    gui = json.loads(out.read_text(encoding="utf-8"))
    assert gui["train_data_dir"] == str(root / "image") and gui["output_name"] == "mytoken_v1"
    assert gui["network_dim"] == 8 and float(gui["learning_rate"]) == 3e-4
    again = cli("init", tmp_path / "again", "--from-kohya-ss", out, "--no-prep")
    assert again.code == 0, again.err
    spec = tomllib.loads((tmp_path / "again" / "kohya-wrap.toml").read_text(encoding="utf-8"))
    assert spec["training"]["network_dim"] == 8 and spec["training"]["learning_rate"] == 3e-4
    assert spec["concepts"][0]["token"] == "mytoken" and spec["concepts"][0]["repeats"] == 10
    assert len(list((tmp_path / "again" / "image" / "10_mytoken woman").glob("*.png"))) == 10
