"""`vendor install / options / diff / upgrade` against the real sd-scripts repository (marker `sdscripts`).
Needs KOHYA_WRAP_SD_MIRROR: a local clone or bare mirror of kohya-ss/sd-scripts. Installs torch and
sd-scripts' requirements into a fresh venv (a few minutes, ~6 GB)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from conftest import make_images

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

pytestmark = pytest.mark.sdscripts

MIRROR = os.environ.get("KOHYA_WRAP_SD_MIRROR")
OLD, NEW = os.environ.get("KOHYA_WRAP_SD_OLD_REF", "v0.9.1"), os.environ.get("KOHYA_WRAP_SD_NEW_REF", "v0.10.1")
# blobs some mirrors lack (see docs/sd-scripts.md); excluding a path a version does not have is harmless
EXCLUDE = ["--exclude", "configs/qwen3_06b/tokenizer.json"]


def test_real_install_diff_and_upgrade(tmp_path, monkeypatch, cli):
    if not MIRROR or not Path(MIRROR).exists():
        pytest.skip("set KOHYA_WRAP_SD_MIRROR to a local clone or mirror of kohya-ss/sd-scripts")
    vendor = tmp_path / "vendor"
    monkeypatch.setenv("KOHYA_WRAP_VENDOR", str(vendor))
    installed = cli("vendor", "install", "--source", MIRROR, "--ref", NEW, *EXCLUDE)
    assert installed.code == 0, installed.out + installed.err
    assert "network_dim" in cli("vendor", "options", "--grep", "network_dim").out

    project = tmp_path / "project"
    project.mkdir()
    (project / "m.safetensors").write_bytes(b"x")
    (project / "kohya-wrap.toml").write_text(
        f'name = "p"\n[model]\nbase = "{(project / "m.safetensors").as_posix()}"\n[[concepts]]\ntoken = '
        '"tok"\nrepeats = 2\n'
        "[dataset]\nresolution = 512\n[training]\nmax_train_epochs = 2\nnetwork_dim = 8\nlearning_rate = 1e-4\n",
        encoding="utf-8",
    )
    make_images(project / "image" / "2_tok", [(512, 512)] * 2)
    # the tokenizer sd-scripts loads at start-up, where it looks first (check's pre-flight, offline here)
    tokenizer = project / "tokenizers" / "openai_clip-vit-large-patch14"
    tokenizer.mkdir(parents=True)
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
        (tokenizer / name).write_text("{}", encoding="utf-8")
    spec = project / "kohya-wrap.toml"
    spec.write_text(spec.read_text(encoding="utf-8") + 'tokenizer_cache_dir = "tokenizers"\n', encoding="utf-8")
    check = cli("check", project)
    assert check.code == 0 and f"sd-scripts {NEW} (vendor)" in check.out

    diff = cli("vendor", "diff", OLD, NEW, project)
    assert diff.code == 0, diff.err
    assert "options:" in diff.out and ("+ " in diff.out or "new script" in diff.out)

    # v0.9.x pins opencv-python 4.8, built against NumPy 1: without this pin its venv cannot import cv2
    upgraded = cli("vendor", "upgrade", "--ref", OLD, "--pip-constraint", "numpy<2", project)
    assert upgraded.code == 0, upgraded.out + upgraded.err
    assert tomllib.loads((vendor / "sd-scripts.lock").read_text(encoding="utf-8"))["ref"] == OLD
    after = cli("check", project)
    assert after.code == 0 and f"sd-scripts {OLD} (vendor)" in after.out
