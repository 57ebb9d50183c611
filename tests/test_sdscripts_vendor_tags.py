"""Older sd-scripts releases install with no extra flag (markers `sdscripts` and `slow`): each tag from a
fresh venv, and a fresh v0.10.1 moved back to v0.8.8 and forward again. v0.8.0-v0.9.1 pin opencv-python
4.7/4.8, built against NumPy 1, while PyPI now serves NumPy 2: kohya-wrap pins numpy<2 itself and keeps
it in the lock (docs/sd-scripts.md).

Needs KOHYA_WRAP_SD_MIRROR (a local clone or bare mirror of kohya-ss/sd-scripts) and the network or a
package cache for pip. Each fresh install puts torch and the requirements into a new venv: about 2 minutes
and 6 GB here (removed after each test). KOHYA_WRAP_SD_TAGS="v0.8.0 v0.8.8 v0.9.1" picks the tags."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

pytestmark = [pytest.mark.sdscripts, pytest.mark.slow]

MIRROR = os.environ.get("KOHYA_WRAP_SD_MIRROR")
TAGS = os.environ.get("KOHYA_WRAP_SD_TAGS", "v0.8.0 v0.8.8 v0.9.1").split()
EXCLUDE = ["--exclude", "configs/qwen3_06b/tokenizer.json"]  # a blob some mirrors lack


@pytest.fixture
def vendor(tmp_path, monkeypatch):
    if not MIRROR or not Path(MIRROR).exists():
        pytest.skip("set KOHYA_WRAP_SD_MIRROR to a local clone or mirror of kohya-ss/sd-scripts")
    root = tmp_path / "vendor"
    monkeypatch.setenv("KOHYA_WRAP_VENDOR", str(root))
    yield root
    shutil.rmtree(root, ignore_errors=True)  # ~6 GB each: pytest keeps its last temp folders


def lock_of(vendor: Path) -> dict:
    return tomllib.loads((vendor / "sd-scripts.lock").read_text(encoding="utf-8"))


def numpy_major(vendor: Path) -> int:
    version = subprocess.run(
        [str(vendor / "venv" / "bin" / "python"), "-c", "import numpy; print(numpy.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return int(version.split(".")[0])


@pytest.mark.parametrize("tag", TAGS)
def test_an_older_release_installs_with_no_flag(vendor, cli, tag):
    result = cli("vendor", "install", "--source", MIRROR, "--ref", tag, *EXCLUDE)
    assert result.code == 0, result.out + result.err
    # the table knew the release: pinned before pip ran, no second install
    assert "kohya-wrap pinned numpy<2 (opencv-python==" in result.out
    assert "installing the requirements again" not in result.out
    assert lock_of(vendor)["compat_constraints"] == ["numpy<2"]
    assert numpy_major(vendor) == 1
    status = json.loads(cli("vendor", "status", "--json", "--no-torch").out)
    assert status["lock"]["compat_constraints"] == ["numpy<2"] and status["matches_lock"]
    assert "network_dim" in cli("vendor", "options", "--grep", "network_dim").out


def test_upgrade_from_a_fresh_install_to_an_older_release_and_back(vendor, cli):
    """The issue's case: a fresh v0.10.1, then `vendor upgrade --ref v0.8.8` with no flag."""
    fresh = cli("vendor", "install", "--source", MIRROR, "--ref", "v0.10.1", *EXCLUDE)
    assert fresh.code == 0, fresh.out + fresh.err
    assert "compat_constraints" not in lock_of(vendor) and numpy_major(vendor) == 2

    down = cli("vendor", "upgrade", "--ref", "v0.8.8")
    assert down.code == 0, down.out + down.err
    assert "kohya-wrap pinned numpy<2 (opencv-python==4.8.1.78 is built against NumPy 1)" in down.out
    assert lock_of(vendor)["ref"] == "v0.8.8" and lock_of(vendor)["compat_constraints"] == ["numpy<2"]
    assert numpy_major(vendor) == 1
    assert "pip pins:   numpy<2 (kohya-wrap" in cli("vendor", "status", "--no-torch").out

    up = cli("vendor", "upgrade", "--ref", "v0.10.1")
    assert up.code == 0, up.out + up.err
    assert "compat_constraints" not in lock_of(vendor)  # v0.10.1 runs with NumPy 2: the pin is dropped
    assert numpy_major(vendor) == 2
