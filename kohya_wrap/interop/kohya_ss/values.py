"""Values of a kohya_ss GUI config: what one setting that is not carried over looks like and why
(``Unmapped`` and the reasons), and the conversion of the GUI's loosely typed values ("1", 1, 1.0,
"true", "") into the spec's types."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from kohya_wrap.errors import shown
from kohya_wrap.sdscripts.prompts import format_number


@dataclass(frozen=True)
class Unmapped:
    """One setting that could not be carried over, and why."""

    key: str
    value: object
    reason: str


# --------------------------------------------------------------------------
# reasons
# --------------------------------------------------------------------------

R_GUI_ONLY = "GUI-only setting"
R_NO_EQUIV = "no sd-scripts equivalent"
R_NO_SPEC_FIELD = "no kohya-wrap spec field"
R_UNKNOWN = "unknown key"
R_SECRET = "secret: not copied into the spec"
R_LAYOUT = "set by the kohya-wrap project layout"
R_NO_GUI_FIELD = "the kohya_ss GUI has no field for it"


def _bad(detail: str) -> str:
    return f"value not understood: {detail}"


def _inactive(detail: str) -> str:
    return f"inactive: {detail}"


# --------------------------------------------------------------------------
# value conversion
# --------------------------------------------------------------------------


class _BadValue(ValueError):
    pass


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _to_float(value: object) -> float:
    if isinstance(value, bool):
        raise _BadValue(f"{shown(value)} is not a number")
    if isinstance(value, (int, float)):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            raise _BadValue(f"{shown(value)} is not a number") from None
    else:
        raise _BadValue(f"{shown(value)} is not a number")
    if not math.isfinite(result):
        raise _BadValue(f"{shown(value)} is not a finite number")
    return result


def _to_int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    number = _to_float(value)
    if not number.is_integer():
        raise _BadValue(f"{shown(value)} is not a whole number")
    return int(number)


def _to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise _BadValue(f"{shown(value)} is not true/false")


def _to_str(value: object) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool) or value is None:
        raise _BadValue(f"{shown(value)} is not text")
    if isinstance(value, (int, float)):
        return format_number(value)
    raise _BadValue(f"{shown(value)} is not text")


def _to_args(value: object) -> list[str]:
    """The GUI's parsing of an "extra arguments" box: drop quotes, split on blanks."""
    if isinstance(value, str):
        return value.replace('"', "").split()
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return [v for v in value if v.strip()]
    raise _BadValue(f"{shown(value)} is not a list of arguments")


_CONVERT: dict[str, Callable[[object], Any]] = {
    "int": _to_int,
    "float": _to_float,
    "flag": _to_bool,
    "bool": _to_bool,
    "str": _to_str,
    "args": _to_args,
}


def _parse_scalar(text: str) -> object:
    """`True` / `12` / `0.5` / anything else -> bool / int / float / str."""
    if text in ("True", "False", "true", "false"):
        return text.lower() == "true"
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def _same(a: object, b: object) -> bool:
    """Equality that treats 1 == 1.0 == "1" and "" == None."""
    if _blank(a) and _blank(b):
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        try:
            return _to_bool(a) == _to_bool(b)
        except _BadValue:
            return False
    if isinstance(a, str) and isinstance(b, str):
        return a.strip() == b.strip()
    try:
        return _to_float(a) == _to_float(b)
    except _BadValue:
        return a == b


def _join(base: str, *parts: str) -> str:
    sep = "\\" if "\\" in base and "/" not in base else "/"
    head = base.rstrip("/\\")
    return (head or base[:1]) + ("" if not head else sep) + sep.join(parts)
