"""Focused tests of the small modules: atomic writes, the written spec, locating sd-scripts, the
launch command."""

from __future__ import annotations

import sys

import pytest

from kohya_wrap.fsutil import write_text_atomic
from kohya_wrap.launch.command import build_launch_command, command_line
from kohya_wrap.paths import ProjectLayout, vendor_dir
from kohya_wrap.sdscripts.locate import locate_sd_scripts
from kohya_wrap.sdscripts.schema import load_option_schema
from kohya_wrap.spec.load import resolve_extends, validate_spec
from kohya_wrap.spec.settings import derive_settings

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "captions" / "a.txt"
    write_text_atomic(target, "first 中文")
    assert target.read_text(encoding="utf-8") == "first 中文"

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("kohya_wrap.fsutil.os.replace", broken_replace)
    with pytest.raises(OSError):
        write_text_atomic(target, "second")
    assert target.read_text(encoding="utf-8") == "first 中文"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]  # no temp file left


def test_the_spec_init_writes_reads_back_identically(tmp_path):
    from kohya_wrap.spec.write import render_spec_toml

    user = {
        "extends": "sd15-character",
        "name": "tok_v1",
        "model": {"base": "/m.safetensors"},
        "concepts": [
            {"token": "tok", "class": "woman", "repeats": 10, "source": '/photos/我的 "照片"'},
            {"class": "woman", "repeats": 1, "is_reg": True},
        ],
        "training": {"network_args": ["conv_dim=4"]},
    }
    text = render_spec_toml(user)
    assert tomllib.loads(text) == user
    assert text.count("[[concepts]]") == 2 and "# [sample]" in text
    merged, _ = resolve_extends(tomllib.loads(text), str(tmp_path / "kohya-wrap.toml"), tmp_path)
    assert validate_spec(merged, "x", load_option_schema()).concepts[1].folder_name == "1_woman"


def test_locate_sd_scripts(tmp_path, monkeypatch):
    monkeypatch.setenv("KOHYA_WRAP_VENDOR", str(tmp_path / "v"))
    assert vendor_dir() == tmp_path / "v"
    default = locate_sd_scripts()
    assert (
        default.root == tmp_path / "v" / "sd-scripts" and default.python == tmp_path / "v" / "venv" / "bin" / "python"
    )
    assert not default.present
    checkout = tmp_path / "kohya_ss" / "sd-scripts"
    checkout.mkdir(parents=True)
    (checkout / "train_network.py").write_text("")
    (checkout / "venv" / "bin").mkdir(parents=True)
    (checkout / "venv" / "bin" / "python").write_text("")
    monkeypatch.setenv("KOHYA_WRAP_SD_SCRIPTS", str(checkout))
    found = locate_sd_scripts()
    assert found.present and found.python == checkout / "venv" / "bin" / "python"


def test_launch_command_is_an_argument_list(tmp_path, monkeypatch):
    monkeypatch.setenv("KOHYA_WRAP_SD_SCRIPTS", str(tmp_path / "sd scripts"))
    spec = validate_spec(
        {
            "name": "n",
            "model": {"base": "/m", "family": "sdxl"},
            "concepts": [{"token": "t", "repeats": 1}],
            "dataset": {"resolution": 1024},
            "training": {"max_train_steps": 10, "mixed_precision": "bf16"},
            "launch": {"num_processes": 2},
        },
        "x",
        load_option_schema(),
    )
    layout = ProjectLayout(tmp_path / "it's 项目")
    argv = build_launch_command(
        spec.launch, derive_settings(spec, load_option_schema(), layout), layout, locate_sd_scripts(), cores=16
    )
    assert argv[1:3] == ["-m", "accelerate.commands.launch"]
    assert argv[argv.index("--num_cpu_threads_per_process") + 1] == "8"  # 16 cores / 2 processes
    assert argv[argv.index("--mixed_precision") + 1] == "bf16" and "--multi_gpu" in argv
    assert argv[-5] == str(tmp_path / "sd scripts" / "sdxl_train_network.py")
    assert argv[-3] == str(layout.train_config)
    assert "'" + str(layout.train_config).replace("'", "'\"'\"'") + "'" in command_line(argv)


def test_bucket_settings_round_like_sd_scripts(project):
    from kohya_wrap.spec.load import load_project

    root = project()
    loaded = load_project(root, ["dataset.min_bucket_reso=100", "dataset.max_bucket_reso=1000"])
    settings = loaded.settings.bucket
    assert (settings.min_reso, settings.max_reso, settings.reso_steps) == (64, 1024, 64)
    assert (
        load_project(root, ["dataset.enable_bucket=false", "dataset.min_bucket_reso=100"]).settings.bucket.min_reso
        == 100
    )
