"""Which sd-scripts runs training: a checkout plus the Python of its own venv — and whether kohya-wrap
may run it.

In order: the project's `[sd_scripts]` section (`kohya-wrap vendor use PATH`, e.g. the sd-scripts inside
a kohya_ss GUI install), then KOHYA_WRAP_SD_SCRIPTS / KOHYA_WRAP_SD_PYTHON, then the vendored checkout
under the vendor dir (see paths.vendor_dir).

Trust: a spec is data, and a project may come from anyone, so a checkout and Python it names are run
only once the user has trusted that pair with `kohya-wrap vendor use` (remembered per user in
paths.trusted_sd_scripts_file(), keyed by real paths: the checkout's, and the Python's folder's plus its
name — the folder is where Python looks for its venv's pyvenv.cfg, so a project cannot borrow a trusted
interpreter through a symlink and bring its own venv). The environment variables and the vendored
install are the user's own and always trusted; a spec naming one of them is trusted too. A trusted
pair is run by its real paths, never through the links a project names.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.fsutil import write_text_atomic
from kohya_wrap.paths import trusted_sd_scripts_file, vendor_dir

TRUST_FORMAT = 1


@dataclass(frozen=True)
class SdScripts:
    root: Path
    python: Path
    origin: str = "vendor"  # project | environment | vendor
    # May kohya-wrap run it? Default: the user's own (environment, vendor) yes, a spec's no.
    trusted: bool = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.trusted is None:
            object.__setattr__(self, "trusted", self.origin != "project")

    @property
    def present(self) -> bool:
        return (self.root / "train_network.py").is_file()

    @property
    def python_present(self) -> bool:
        return self.python.is_file()

    @property
    def usable(self) -> bool:
        return self.present and self.python_present

    @property
    def runnable(self) -> bool:
        """Installed, and kohya-wrap may run it: what introspection, the probe and training need."""
        return self.usable and self.trusted

    def script(self, name: str) -> Path:
        return self.root / name


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def guess_python(root: Path) -> Path:
    """The venv that usually sits beside or inside an sd-scripts checkout (kohya_ss GUI: ../venv)."""
    candidates = [venv_python(root.parent / "venv"), venv_python(root / "venv"), venv_python(root / ".venv")]
    return next((c for c in candidates if c.is_file()), candidates[0])


# ---------------------------------------------------------------------------------------------- trust


def trust_key(root: Path, python: Path) -> tuple[str, str] | None:
    """What a pair is trusted by: the checkout's real path, and the real path of the Python's folder
    plus its name (None for a path that cannot be resolved)."""
    try:
        return os.path.realpath(root), os.path.join(os.path.realpath(python.parent), python.name)
    except (OSError, ValueError):  # a NUL byte, a symlink loop on some platforms
        return None


def _own_pairs() -> list[tuple[Path, Path]]:
    """The user's own sd-scripts: the vendored one, and the one the environment variables name."""
    vendored = vendor_dir()
    pairs = [(vendored / "sd-scripts", venv_python(vendored / "venv"))]
    explicit = os.environ.get("KOHYA_WRAP_SD_SCRIPTS")
    if explicit:
        root = Path(explicit).expanduser().absolute()
        python_env = os.environ.get("KOHYA_WRAP_SD_PYTHON")
        pairs.append((root, Path(python_env).expanduser().absolute() if python_env else guess_python(root)))
    return pairs


def _read_trusted() -> list[dict[str, str]]:
    """The remembered pairs; a missing or wrong-shaped file trusts nothing."""
    try:
        data = json.loads(trusted_sd_scripts_file().read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return []
    entries = data.get("trusted") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return []
    return [
        entry
        for entry in entries
        if isinstance(entry, dict) and isinstance(entry.get("root"), str) and isinstance(entry.get("python"), str)
    ]


def trusted_pair(root: Path, python: Path) -> tuple[Path, Path] | None:
    """The real paths to run `root` with `python` by, when the user trusts that pair; else None."""
    key = trust_key(root, python)
    if key is None:
        return None
    own = [trust_key(r, p) for r, p in _own_pairs()]
    remembered = [(entry["root"], entry["python"]) for entry in _read_trusted()]
    if key in own or key in remembered:
        return Path(key[0]), Path(key[1])
    return None


def trust(root: Path, python: Path) -> tuple[Path, Path]:
    """Remember that the user trusts `root` run by `python` (atomically, under a lock); the real paths."""
    from filelock import FileLock

    key = trust_key(root, python)
    if key is None:
        raise KohyaWrapError(f"{root}, {python}: cannot resolve these paths", "give existing, plain paths")
    path = trusted_sd_scripts_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_name(path.name + ".lock")), timeout=30):
        entries = [e for e in _read_trusted() if (e["root"], e["python"]) != key]
        entries.append(
            {"root": key[0], "python": key[1], "trusted_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        )
        write_text_atomic(path, json.dumps({"format": TRUST_FORMAT, "trusted": entries}, indent=1) + "\n")
    return Path(key[0]), Path(key[1])


def trust_command(sd: SdScripts, project_root: Path | None) -> str:
    """The exact command that trusts what a spec names."""
    words = ["kohya-wrap", "vendor", "use", str(sd.root), "--python", str(sd.python)]
    if project_root is not None:
        words.append(str(project_root))
    return shlex.join(words)


def untrusted_error(sd: SdScripts, project_root: Path | None, action: str) -> KohyaWrapError:
    return KohyaWrapError(
        f"the spec's [sd_scripts] names {sd.root} run by {sd.python}, which you have not trusted: kohya-wrap "
        f"runs no program a project names until you do, so it will not {action} with it",
        f"if you trust that checkout and Python, run `{trust_command(sd, project_root)}` once (remembered for "
        "you), then try again",
    )


def require_trusted(sd: SdScripts, project_root: Path | None, action: str) -> None:
    """Stop (exit 2, with the command that trusts it) before running an sd-scripts the user has not trusted."""
    if not sd.trusted:
        raise untrusted_error(sd, project_root, action)


def require_trainable(sd: SdScripts, project_root: Path) -> None:
    """Stop before training without an sd-scripts to train with, or with one the user has not trusted."""
    if not sd.usable:
        raise KohyaWrapError(
            f"no sd-scripts to train with (looked in {sd.root})",
            "run `kohya-wrap vendor install`, or `kohya-wrap vendor use PATH`",
        )
    require_trusted(sd, project_root, "train")


# ---------------------------------------------------------------------------------------------- locate


def locate_sd_scripts(project_root: Path | None = None, project_setting: dict | None = None) -> SdScripts:
    """`project_setting` is the spec's raw `[sd_scripts]` table; its paths are relative to the project."""
    if project_setting and project_setting.get("path"):
        base = project_root or Path.cwd()
        root = (base / Path(str(project_setting["path"])).expanduser()).absolute()
        python_setting = project_setting.get("python")
        python = (base / Path(str(python_setting)).expanduser()).absolute() if python_setting else guess_python(root)
        trusted = trusted_pair(root, python)
        if trusted is not None:
            return SdScripts(trusted[0], trusted[1], "project", trusted=True)
        return SdScripts(root, python, "project", trusted=False)
    explicit = os.environ.get("KOHYA_WRAP_SD_SCRIPTS")
    if explicit:
        root = Path(explicit).expanduser().absolute()
        python_env = os.environ.get("KOHYA_WRAP_SD_PYTHON")
        return SdScripts(
            root, Path(python_env).expanduser().absolute() if python_env else guess_python(root), "environment"
        )
    vendored = vendor_dir()
    return SdScripts(vendored / "sd-scripts", venv_python(vendored / "venv"), "vendor")
