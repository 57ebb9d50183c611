"""Where things live: a project's kohya folder tree, user presets, the vendored sd-scripts.

Everything here is computed from the environment at call time, so tests redirect it with env vars.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from kohya_wrap.errors import KohyaWrapError

SPEC_FILENAME = "kohya-wrap.toml"
PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ProjectLayout:
    """The folder tree kohya users already know, rooted at an absolute project directory."""

    root: Path
    configs: Path | None = None  # where sd-scripts' configs are rendered, when not config/ (a sweep's trials)

    @classmethod
    def at(cls, directory: str | os.PathLike[str], configs: Path | None = None) -> "ProjectLayout":
        return cls(Path(directory).expanduser().absolute(), configs)

    def path(self, value: str | os.PathLike[str]) -> Path:
        """A path the spec names: `~` expanded, a relative one relative to the project folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.root / path

    @property
    def spec_file(self) -> Path:
        return self.root / SPEC_FILENAME

    @property
    def image_dir(self) -> Path:
        return self.root / "image"

    @property
    def reg_dir(self) -> Path:
        return self.root / "reg"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def config_dir(self) -> Path:
        return self.configs if self.configs is not None else self.root / "config"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def train_config(self) -> Path:
        return self.config_dir / "train.toml"

    @property
    def dataset_config(self) -> Path:
        return self.config_dir / "dataset.toml"

    @property
    def sample_prompts(self) -> Path:
        return self.config_dir / "sample_prompts.txt"

    def tree(self) -> tuple[Path, ...]:
        """The folders `init` creates (concept folders come from the spec)."""
        return (self.image_dir, self.log_dir, self.model_dir, self.config_dir, self.runs_dir)


def user_config_dir() -> Path:
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "kohya-wrap"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "kohya-wrap"


def user_data_dir() -> Path:
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "kohya-wrap"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "kohya-wrap"


def user_cache_dir() -> Path:
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "kohya-wrap" / "cache"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kohya-wrap"


def trusted_sd_scripts_file() -> Path:
    """The sd-scripts checkouts and Pythons the user trusted with `kohya-wrap vendor use` (per user: a
    project can name one, but only the user can trust it)."""
    return user_config_dir() / "trusted-sd-scripts.json"


def user_preset_dirs() -> list[Path]:
    """KOHYA_WRAP_PRESETS (os.pathsep-separated) first, then the user config dir's presets/."""
    dirs = [Path(p).expanduser() for p in os.environ.get("KOHYA_WRAP_PRESETS", "").split(os.pathsep) if p]
    dirs.append(user_config_dir() / "presets")
    return dirs


def builtin_presets_dir() -> Path:
    """Presets ship inside the wheel as kohya_wrap/_presets; a source checkout reads presets/ directly."""
    packaged = PACKAGE_DIR / "_presets"
    return packaged if packaged.is_dir() else PACKAGE_DIR.parent / "presets"


def vendor_dir() -> Path:
    """Home of the sd-scripts checkout, its venv and the lock: KOHYA_WRAP_VENDOR, the source checkout's
    vendor/ (a pyproject.toml and a vendor/ folder beside the package; all it holds but its README is
    git-ignored), or (installed as a package) the user data dir. One that exists but is no folder (e.g.
    KOHYA_WRAP_VENDOR naming a file) is an error that says so."""
    if os.environ.get("KOHYA_WRAP_VENDOR"):
        found, named = Path(os.environ["KOHYA_WRAP_VENDOR"]).expanduser().absolute(), "KOHYA_WRAP_VENDOR"
    else:
        source_vendor = PACKAGE_DIR.parent / "vendor"
        if (PACKAGE_DIR.parent / "pyproject.toml").is_file() and source_vendor.is_dir():
            return source_vendor
        found, named = user_data_dir() / "vendor", "the vendor folder"
    if os.path.lexists(found) and not found.is_dir():
        raise KohyaWrapError(
            f"{named} ({found}) is a file, where kohya-wrap keeps sd-scripts and its venv in a folder",
            "point KOHYA_WRAP_VENDOR at a folder (`vendor install` creates it), or unset it to use the default"
            if named == "KOHYA_WRAP_VENDOR"
            else "move or remove that file, then run the command again",
        )
    return found


def relative(path: Path, root: Path) -> str:
    """`path` as it is shown to users: relative to `root` (with /) where it lies inside, else whole."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
