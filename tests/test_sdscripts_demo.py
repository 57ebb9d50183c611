"""`kohya-wrap demo` with the real sd-scripts (marker `sdscripts`): builds the tiny model in sd-scripts'
venv (once, into KOHYA_WRAP_TEST_CACHE), trains for real on the CPU, keeps a complete record."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.sdscripts

SD_SCRIPTS = os.environ.get("KOHYA_WRAP_SD_SCRIPTS")
CACHE = Path(os.environ.get("KOHYA_WRAP_TEST_CACHE", Path.home() / ".cache" / "kohya-wrap-tests"))


def test_real_demo(tmp_path, monkeypatch, cli):
    if not SD_SCRIPTS or not Path(SD_SCRIPTS, "train_network.py").is_file():
        pytest.skip("set KOHYA_WRAP_SD_SCRIPTS (and KOHYA_WRAP_SD_PYTHON)")
    monkeypatch.setenv("KOHYA_WRAP_SD_SCRIPTS", SD_SCRIPTS)
    if os.environ.get("KOHYA_WRAP_SD_PYTHON"):
        monkeypatch.setenv("KOHYA_WRAP_SD_PYTHON", os.environ["KOHYA_WRAP_SD_PYTHON"])
    monkeypatch.setenv("XDG_CACHE_HOME", str(CACHE / "xdg"))  # the demo model is built once across runs
    result = cli("demo", tmp_path / "demo", "--plain", "--steps", "4")
    assert result.code == 0, result.out + result.err
    root = tmp_path / "demo"
    assert (root / "model" / "kwdemo.safetensors").stat().st_size > 1_000_000
    assert "step 4/4" in result.out and "model saved" in result.out
    run = next(p for p in (root / "runs").iterdir() if p.is_dir())
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["verdict"] == "trained" and manifest["steps"] == {"planned": 4, "reached": 4}
    assert "trained" in cli("runs", root).out
