"""Edit the user's spec in place: comments and layout kept (tomlkit), written atomically, the previous
file kept as `<spec>.bak` so the edit can be undone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.fsutil import copy_file_atomic, write_text_atomic


def set_table(spec_file: Path, name: str, values: dict[str, Any]) -> None:
    """Replace (or add) the top-level table `name` with `values`."""
    import tomlkit

    text = spec_file.read_text(encoding="utf-8")
    try:
        document = tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise KohyaWrapError(f"{spec_file}: not valid TOML ({exc})", "fix the syntax first") from None
    table = tomlkit.table()
    for key, value in values.items():
        table[key] = value
    document[name] = table
    copy_file_atomic(spec_file, spec_file.with_name(spec_file.name + ".bak"))
    write_text_atomic(spec_file, tomlkit.dumps(document))
