"""Presets: partial specs that projects `extends`. Built-in ones ship in presets/; user ones live in
KOHYA_WRAP_PRESETS and the user config dir, and shadow built-ins of the same name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.fsutil import copy_file_atomic
from kohya_wrap.paths import builtin_presets_dir, user_preset_dirs


@dataclass(frozen=True)
class Preset:
    name: str
    path: Path
    origin: str  # "built-in" or "user"

    @property
    def summary(self) -> str:
        """The preset's first comment line that is not the command heading it ("" where the file cannot be
        read: the listing still shows the others, and using the preset names what is wrong with it)."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        for line in text.splitlines():
            text = line.lstrip("# ").strip()
            if line.startswith("#") and text and not text.startswith("kohya-wrap ") and not text.startswith("Use:"):
                return text
            if line.strip() and not line.startswith("#"):
                break
        return ""


def _scan(directory: Path, origin: str) -> list[Preset]:
    if not directory.is_dir():
        return []
    return [Preset(p.stem, p.absolute(), origin) for p in sorted(directory.glob("*.toml"))]


def all_presets() -> list[Preset]:
    """Every preset, user ones first; a name appears once (the first found wins)."""
    found: dict[str, Preset] = {}
    for directory in user_preset_dirs():
        for preset in _scan(directory, "user"):
            found.setdefault(preset.name, preset)
    for preset in _scan(builtin_presets_dir(), "built-in"):
        found.setdefault(preset.name, preset)
    return sorted(found.values(), key=lambda p: (p.origin != "built-in", p.name))


def _looks_like_path(ref: str) -> bool:
    return ref.endswith(".toml") or "/" in ref or "\\" in ref


def find_preset(ref: str, relative_to: Path | None = None) -> Preset:
    """A preset by name, or by path (relative to the file that names it)."""
    if _looks_like_path(ref):
        path = Path(ref).expanduser()
        if not path.is_absolute() and relative_to is not None:
            path = relative_to / path
        if not path.is_file():
            raise KohyaWrapError(f"preset file {path} does not exist", "check the path in `extends`")
        return Preset(path.stem, path.absolute(), "file")
    presets = {p.name: p for p in all_presets()}
    if ref in presets:
        return presets[ref]
    import difflib

    close = difflib.get_close_matches(ref, list(presets), n=1)
    hint = f"did you mean '{close[0]}'?" if close else "see `kohya-wrap presets list`"
    raise KohyaWrapError(f"no preset named '{ref}'", hint)


def copy_preset(ref: str, target: Path, force: bool = False) -> Path:
    """Copy a preset to a file (or into a folder) to customise it; never overwrites without force."""
    preset = find_preset(ref)
    destination = target / f"{preset.name}.toml" if target.is_dir() else target
    if destination.exists() and not force:
        raise KohyaWrapError(f"{destination} already exists", "choose another path or pass --force")
    copy_file_atomic(preset.path, destination)
    return destination
