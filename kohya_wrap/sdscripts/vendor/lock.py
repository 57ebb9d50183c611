"""Which sd-scripts kohya-wrap trains with, as a small TOML lock: the pin kohya-wrap ships (package data,
`kohya_wrap/data/sd-scripts.lock`) and the vendor dir's own lock that install/upgrade write. Kept apart
from git and pip so the version question can be answered without either."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.paths import PACKAGE_DIR

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LOCK_NAME = "sd-scripts.lock"
# the pin kohya-wrap ships: the starting point of every vendor dir without a lock of its own
SHIPPED_LOCK = PACKAGE_DIR / "data" / LOCK_NAME
DEFAULT_SOURCE = "https://github.com/kohya-ss/sd-scripts"


@dataclass(frozen=True)
class Lock:
    source: str
    ref: str
    commit: str
    exclude: tuple[str, ...] = ()
    # pip constraints the venv's requirements were installed with: the user's (--pip-constraint, kept
    # across upgrades) and kohya-wrap's for this release's known incompatibilities (vendor/compat.py,
    # worked out again for each ref)
    pip_constraints: tuple[str, ...] = ()
    compat_constraints: tuple[str, ...] = ()

    def text(self) -> str:
        body: dict[str, object] = {"source": self.source, "ref": self.ref, "commit": self.commit}
        if self.exclude:
            body["exclude"] = list(self.exclude)
        if self.pip_constraints:
            body["pip_constraints"] = list(self.pip_constraints)
        if self.compat_constraints:
            body["compat_constraints"] = list(self.compat_constraints)
        return (
            "# The sd-scripts version this vendor dir uses: written by `kohya-wrap vendor install/upgrade`.\n"
            "# It, the checkout and its venv live here (git-ignored in a source checkout); the pin kohya-wrap\n"
            "# ships is kohya_wrap/data/sd-scripts.lock.\n" + tomli_w.dumps(body)
        )

    def same_version(self, other: "Lock | None") -> bool:
        """The same ref at the same commit (the source may differ: a mirror of the same repository)."""
        return other is not None and (self.ref, self.commit) == (other.ref, other.commit)


def read_lock(path: Path) -> Lock:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return Lock(
            str(data["source"]),
            str(data["ref"]),
            str(data["commit"]),
            _strings(data.get("exclude", ())),
            _strings(data.get("pip_constraints", ())),
            _strings(data.get("compat_constraints", ())),
        )
    except (OSError, KeyError, TypeError, ValueError, RecursionError) as exc:  # ValueError: bad TOML, not UTF-8
        hint = (
            "reinstall kohya-wrap (the pin it ships is damaged)"
            if path == SHIPPED_LOCK
            else "delete it to start again from the pin kohya-wrap ships, then run `kohya-wrap vendor install`"
        )
        raise KohyaWrapError(f"{path}: not a readable sd-scripts lock ({type(exc).__name__}: {exc})", hint) from None


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"expected a list of strings, got {value!r}")
    return tuple(str(item) for item in value)


def shipped_lock() -> Lock | None:
    """The pin shipped with kohya-wrap (none only in a damaged install)."""
    return read_lock(SHIPPED_LOCK) if SHIPPED_LOCK.is_file() else None
