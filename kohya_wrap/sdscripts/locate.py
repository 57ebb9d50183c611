"""Which sd-scripts runs training: a checkout plus the Python of its own venv.

In order: the project's `[sd_scripts]` section (`kohya-wrap vendor use PATH`, e.g. the sd-scripts inside
a kohya_ss GUI install), then KOHYA_WRAP_SD_SCRIPTS / KOHYA_WRAP_SD_PYTHON, then the vendored checkout
under the vendor dir (see paths.vendor_dir).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from kohya_wrap.paths import vendor_dir


@dataclass(frozen=True)
class SdScripts:
    root: Path
    python: Path
    origin: str = "vendor"  # project | environment | vendor

    @property
    def present(self) -> bool:
        return (self.root / "train_network.py").is_file()

    @property
    def python_present(self) -> bool:
        return self.python.is_file()

    @property
    def usable(self) -> bool:
        return self.present and self.python_present

    def script(self, name: str) -> Path:
        return self.root / name


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def guess_python(root: Path) -> Path:
    """The venv that usually sits beside or inside an sd-scripts checkout (kohya_ss GUI: ../venv)."""
    candidates = [venv_python(root.parent / "venv"), venv_python(root / "venv"), venv_python(root / ".venv")]
    return next((c for c in candidates if c.is_file()), candidates[0])


def locate_sd_scripts(project_root: Path | None = None, project_setting: dict | None = None) -> SdScripts:
    """`project_setting` is the spec's raw `[sd_scripts]` table; its paths are relative to the project."""
    if project_setting and project_setting.get("path"):
        base = project_root or Path.cwd()
        root = (base / Path(str(project_setting["path"])).expanduser()).absolute()
        python = project_setting.get("python")
        return SdScripts(
            root, (base / Path(str(python)).expanduser()).absolute() if python else guess_python(root), "project"
        )
    explicit = os.environ.get("KOHYA_WRAP_SD_SCRIPTS")
    if explicit:
        root = Path(explicit).expanduser().absolute()
        python_env = os.environ.get("KOHYA_WRAP_SD_PYTHON")
        return SdScripts(
            root, Path(python_env).expanduser().absolute() if python_env else guess_python(root), "environment"
        )
    vendored = vendor_dir()
    return SdScripts(vendored / "sd-scripts", venv_python(vendored / "venv"), "vendor")
