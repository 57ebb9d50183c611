"""Where the sd-scripts that runs training lives: a checkout plus the Python of its own venv.

KOHYA_WRAP_SD_SCRIPTS (and KOHYA_WRAP_SD_PYTHON) point at an existing checkout, e.g. one that came with
a kohya_ss GUI install; otherwise the vendored one under the vendor dir (see paths.vendor_dir).
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

    @property
    def present(self) -> bool:
        return (self.root / "train_network.py").is_file()

    @property
    def python_present(self) -> bool:
        return self.python.is_file()

    def script(self, name: str) -> Path:
        return self.root / name


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def locate_sd_scripts() -> SdScripts:
    explicit = os.environ.get("KOHYA_WRAP_SD_SCRIPTS")
    root = Path(explicit).expanduser().absolute() if explicit else vendor_dir() / "sd-scripts"
    python_env = os.environ.get("KOHYA_WRAP_SD_PYTHON")
    if python_env:
        python = Path(python_env).expanduser().absolute()
    else:
        candidates = [_venv_python(root.parent / "venv"), _venv_python(root / "venv"), _venv_python(root / ".venv")]
        python = next((c for c in candidates if c.is_file()), candidates[0])
    return SdScripts(root=root, python=python)
