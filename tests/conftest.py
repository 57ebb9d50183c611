"""Shared fixtures: tiny real images, projects on disk, and the CLI run through its real entry point."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pytest

from kohya_wrap.cli import main

REPO = Path(__file__).resolve().parents[1]


# Read before any test runs: _isolated_env removes them from each test's environment.
REAL_SD_SCRIPTS = os.environ.get("KOHYA_WRAP_SD_SCRIPTS")
REAL_SD_PYTHON = os.environ.get("KOHYA_WRAP_SD_PYTHON")
TEST_CACHE = Path(os.environ.get("KOHYA_WRAP_TEST_CACHE", Path.home() / ".cache" / "kohya-wrap-tests"))


@pytest.fixture
def real_sdscripts(monkeypatch) -> Path:
    """The real sd-scripts checkout named by KOHYA_WRAP_SD_SCRIPTS (and KOHYA_WRAP_SD_PYTHON), with the
    demo model built once under KOHYA_WRAP_TEST_CACHE across runs; the test skips without it."""
    if not REAL_SD_SCRIPTS or not Path(REAL_SD_SCRIPTS, "train_network.py").is_file():
        pytest.skip("set KOHYA_WRAP_SD_SCRIPTS (and KOHYA_WRAP_SD_PYTHON)")
    monkeypatch.setenv("KOHYA_WRAP_SD_SCRIPTS", REAL_SD_SCRIPTS)
    if REAL_SD_PYTHON:
        monkeypatch.setenv("KOHYA_WRAP_SD_PYTHON", REAL_SD_PYTHON)
    monkeypatch.setenv("XDG_CACHE_HOME", str(TEST_CACHE / "xdg"))
    return Path(REAL_SD_SCRIPTS)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    """No test sees the developer's presets, config dir, HF cache or sd-scripts."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.setenv("KOHYA_WRAP_VENDOR", str(home / "vendor"))
    for var in ("KOHYA_WRAP_PRESETS", "KOHYA_WRAP_SD_SCRIPTS", "KOHYA_WRAP_SD_PYTHON", "NO_COLOR"):
        monkeypatch.delenv(var, raising=False)


def make_image(path: Path, size: tuple[int, int], color=(120, 80, 200)) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def make_images(
    folder: Path, sizes: Iterable[tuple[int, int]], ext: str = ".png", caption: str | None = "mytoken woman"
) -> list[Path]:
    paths = []
    for index, size in enumerate(sizes):
        path = make_image(folder / f"img{index:03d}{ext}", size, (index * 7 % 255, 90, 160))
        if caption is not None:
            path.with_suffix(".txt").write_text(f"{caption}, photo {index}", encoding="utf-8")
        paths.append(path)
    return paths


@pytest.fixture
def base_model(tmp_path) -> Path:
    """A stand-in local model file: check only needs it to exist."""
    path = tmp_path / "models" / "base.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * 16)
    return path


SPEC_TEMPLATE = """\
extends = "sd15-character"
name = "mytoken_v1"

[model]
base = "{base}"

[[concepts]]
token = "mytoken"
class = "woman"
repeats = 10
{extra}
"""


@pytest.fixture
def project(tmp_path, base_model):
    """A valid project with 10 captioned images; returns its folder."""

    def build(extra: str = "", sizes=None, folder_name: str = "proj") -> Path:
        root = tmp_path / folder_name
        root.mkdir(parents=True, exist_ok=True)
        (root / "kohya-wrap.toml").write_text(
            SPEC_TEMPLATE.format(base=base_model.as_posix(), extra=extra), encoding="utf-8"
        )
        make_images(root / "image" / "10_mytoken woman", sizes or [(512, 512)] * 10)
        return root

    return build


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Run `kohya-wrap ARGS` through the real entry point (error boundary included)."""

    def run(*args: str | os.PathLike) -> Result:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def copy_fixture(name: str, target: Path) -> Path:
    source = REPO / "tests" / "fixtures" / name
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copyfile(source, target)
    return target


@pytest.fixture(scope="session")
def trainer(tmp_path_factory) -> Path:
    """The stand-in sd-scripts of tests/standin_trainer.py, built once per session."""
    from standin_trainer import build_standin_trainer

    return build_standin_trainer(tmp_path_factory.mktemp("trainer") / "sd-scripts")


@pytest.fixture
def on_standin(trainer, monkeypatch) -> Path:
    """Train with the stand-in: it is the located sd-scripts, run by this Python."""
    monkeypatch.setenv("KOHYA_WRAP_SD_SCRIPTS", str(trainer))
    monkeypatch.setenv("KOHYA_WRAP_SD_PYTHON", sys.executable)
    return trainer


REPLAYS = REPO / "tests" / "fixtures" / "sdscripts_logs"  # output recorded from real sd-scripts runs


@pytest.fixture
def replay(on_standin, monkeypatch):
    """`replay(name, speed)`: the stand-in sd-scripts replays the recording `name` at `speed`× real time."""

    def use(fixture: str, speed: float = 50) -> None:
        monkeypatch.setenv("KOHYA_WRAP_REPLAY", str(REPLAYS / f"{fixture}.jsonl"))
        monkeypatch.setenv("KOHYA_WRAP_REPLAY_SPEED", str(speed))

    return use


def recorded_run_project(root: Path) -> Path:
    """The project the recordings were made with: `rec_lora`, 3 images of 64 px, 6 steps, seed 42."""
    (root / "model").mkdir(parents=True)
    (root / "m.safetensors").write_bytes(b"x")
    (root / "kohya-wrap.toml").write_text(
        f'name = "rec_lora"\n[model]\nbase = "{(root / "m.safetensors").as_posix()}"\n[[concepts]]\ntoken = '
        '"mytoken"\nclass = "woman"\nrepeats = 1\n'
        "[dataset]\nresolution = 64\n[training]\nmax_train_steps = 6\nseed = 42\n",
        encoding="utf-8",
    )
    make_images(root / "image" / "1_mytoken woman", [(64, 64)] * 3)
    return root


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


@pytest.fixture
def chromium() -> str:
    """A Chromium/Chrome binary ($KOHYA_WRAP_CHROMIUM, or one on the PATH), else the test skips
    (before any run is made)."""
    binary = os.environ.get("KOHYA_WRAP_CHROMIUM") or next(
        (found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None
    )
    if binary is None:
        pytest.skip("no chromium binary found: install chromium (apt-get install chromium), or set KOHYA_WRAP_CHROMIUM")
    return binary


@dataclass
class BrowserPage:
    screenshot: Path
    console: list[str]  # console messages and uncaught errors
    dom: str


def load_page(binary: str, url: str, work: Path, window: str) -> BrowserPage:
    """The page in headless Chromium, offline (every host unresolvable): a screenshot, what its console
    said, and the DOM after its scripts ran."""
    import subprocess

    shot = work / "shot.png"
    common = [
        binary,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--hide-scrollbars",
        "--no-first-run",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={work / 'chromium-profile'}",
    ]
    run = subprocess.run(
        [*common, "--enable-logging=stderr", "--v=0", f"--screenshot={shot}", f"--window-size={window}", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.is_file(), run.stderr[-3000:]
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    return BrowserPage(shot, console, dom.stdout)
