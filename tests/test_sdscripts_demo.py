"""`kohya-wrap demo` with the real sd-scripts (marker `sdscripts`): builds the tiny model in sd-scripts'
venv (once, into KOHYA_WRAP_TEST_CACHE), trains for real on the CPU, keeps a complete record."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.sdscripts


def test_real_demo(tmp_path, real_sdscripts, cli):
    result = cli("demo", tmp_path / "demo", "--plain", "--steps", "4")
    assert result.code == 0, result.out + result.err
    root = tmp_path / "demo"
    assert (root / "model" / "kwdemo.safetensors").stat().st_size > 1_000_000
    assert "step 4/4" in result.out and "model saved" in result.out
    run = next(p for p in (root / "runs").iterdir() if p.is_dir())
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["verdict"] == "trained" and manifest["steps"] == {"planned": 4, "reached": 4}
    assert "trained" in cli("runs", root).out
