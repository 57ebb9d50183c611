"""Known incompatibilities of older sd-scripts releases with what PyPI serves today, resolved by kohya-wrap
itself: a release's requirements.txt pins packages but leaves their dependencies open, so pip installs
today's versions of those, which the pinned packages may not run with. Two ways in, one result:

- a table of rules keyed by what requirements.txt pins (e.g. opencv-python before 4.10 was built against
  NumPy 1, and PyPI now serves NumPy 2): applied before pip runs;
- a failure signature of the options probe after the install (NumPy's own "compiled using NumPy 1.x"
  message), for a release the table does not know: the requirements are installed once more with the
  matching constraint.

Either way the constraint goes into the lock (`compat_constraints`), so `vendor install` elsewhere gets the
same environment at once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Rule:
    """A package pinned below `below` by a release's requirements needs `constraint`."""

    packages: tuple[str, ...]
    below: tuple[int, ...]
    constraint: str
    why: str


# opencv-python 4.10.0.84 (June 2024) is the first built against NumPy 2; sd-scripts v0.8.0-v0.9.1 pin
# 4.7.0.68 or 4.8.1.78, whose cv2 fails to import under NumPy 2 ("numpy.core.multiarray failed to import").
RULES: tuple[Rule, ...] = (
    Rule(
        ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"),
        (4, 10),
        "numpy<2",
        "built against NumPy 1",
    ),
)

# What a module compiled against NumPy 1 prints when it is imported under NumPy 2, last line first.
NUMPY1_SIGNATURES = (
    "numpy.core.multiarray failed to import",
    "_ARRAY_API not found",
    "compiled using NumPy 1.x cannot be run in",
)
NUMPY1_CONSTRAINT = "numpy<2"

_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*==\s*([0-9][0-9A-Za-z.+!-]*)\s*(?:[;#].*)?$")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


def constrained_names(constraints: tuple[str, ...] | list[str]) -> set[str]:
    """The packages a list of pip constraints (or requirement lines) names."""
    names = set()
    for line in constraints:
        match = _NAME.match(line)
        if match and not line.lstrip().startswith(("#", "-")):
            names.add(canonical(match.group(1)))
    return names


@dataclass(frozen=True)
class Known:
    constraint: str
    reason: str  # e.g. "opencv-python==4.8.1.78 is built against NumPy 1"


def known_constraints(requirements: Path) -> list[Known]:
    """The constraints the table gives for a release's requirements.txt (none where it pins the
    constrained package itself: the release then chose its version)."""
    try:
        lines = requirements.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    pinned = {canonical(m.group(1)): m.group(2) for m in map(_PIN.match, lines) if m}
    named = constrained_names(lines)
    found: dict[str, Known] = {}
    for rule in RULES:
        target = canonical(_NAME.match(rule.constraint).group(1))  # type: ignore[union-attr]
        if target in named or rule.constraint in found:
            continue
        for package in rule.packages:
            version = pinned.get(canonical(package))
            if version is not None and version_tuple(version) < rule.below:
                found[rule.constraint] = Known(rule.constraint, f"{package}=={version} is {rule.why}")
                break
    return list(found.values())


def retry_constraint(message: str, applied: tuple[str, ...]) -> Known | None:
    """The constraint a failed options probe asks for (its message has a known signature), unless that
    package is constrained already."""
    signature = next((s for s in NUMPY1_SIGNATURES if s in message), None)
    if signature is None or "numpy" in constrained_names(applied):
        return None
    return Known(NUMPY1_CONSTRAINT, f"a package built against NumPy 1 failed to import ({signature})")


def merge(user: tuple[str, ...], compat: tuple[str, ...]) -> tuple[str, ...]:
    """The user's constraints, then kohya-wrap's for packages the user does not constrain."""
    mine = constrained_names(user)
    return tuple(dict.fromkeys([*user, *(c for c in compat if not constrained_names([c]) & mine)]))
