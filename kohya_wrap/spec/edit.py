"""Edit the user's spec in place: comments and layout kept (tomlkit), written atomically, the previous
file kept as `<spec>.bak` so the edit can be undone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.fsutil import copy_file_atomic, write_text_atomic


def _parse(spec_file: Path):
    import tomlkit  # only the commands that edit a spec pay for it

    try:
        return tomlkit.parse(spec_file.read_text(encoding="utf-8"))
    except tomlkit.exceptions.ParseError as exc:
        raise KohyaWrapError(f"{spec_file}: not valid TOML ({exc})", "fix the syntax first") from None


def _write(spec_file: Path, document) -> None:
    import tomlkit

    copy_file_atomic(spec_file, spec_file.with_name(spec_file.name + ".bak"))
    write_text_atomic(spec_file, tomlkit.dumps(document))


def set_table(spec_file: Path, name: str, values: dict[str, Any]) -> None:
    """Replace (or add) the top-level table `name` with `values`."""
    import tomlkit

    document = _parse(spec_file)
    table = tomlkit.table()
    for key, value in values.items():
        table[key] = value
    document[name] = table
    _write(spec_file, document)


def set_concept_source(spec_file: Path, label: str, source: str) -> bool:
    """Write `source` into the spec's [[concepts]] entry called `label` (its token, or its class for a
    regularization concept); False when the spec file has no such entry (it comes from a preset)."""
    document = _parse(spec_file)
    for concept in document.get("concepts") or []:
        is_reg = bool(concept.get("is_reg", False))
        if (concept.get("class", "") if is_reg else concept.get("token", "")) == label:
            concept["source"] = source
            _write(spec_file, document)
            return True
    return False
