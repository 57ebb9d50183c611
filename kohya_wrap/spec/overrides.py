"""What the user says wins: `--set KEY=VALUE`, `--unset KEY` (and a spec's `unset = [...]`), and the
options a preset sets that sd-scripts would let win over what the user set.

sd-scripts resolves some pairs of options its own way: `max_train_epochs` wins over `max_train_steps`,
and `unet_lr` over `learning_rate` for the U-Net. So a preset's `max_train_epochs = 10` silently beats
the user's `--set training.max_train_steps=4`. Here each value is ranked by who set it (a preset, then
the user's spec, then the command line), and where a value would be overruled by a lower-ranked one,
the lower-ranked one is dropped, with a note saying so.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from typing import Any, Iterable

from kohya_wrap.errors import KohyaWrapError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

UNSET = "unset:"  # `--unset KEY` reaches the cores as the override "unset:KEY"
Path_ = tuple[Any, ...]

# a key the user set → the keys sd-scripts would let win over it (library/train_util.py: max_train_epochs
# recomputes max_train_steps; train_network.py: unet_lr replaces learning_rate for the U-Net)
OVERRULED_BY: dict[Path_, tuple[Path_, ...]] = {
    ("training", "max_train_steps"): (("training", "max_train_epochs"),),
    ("training", "learning_rate"): (("training", "unet_lr"),),
}
PRESET, SPEC, COMMAND_LINE = 0, 1, 2
WHO = {PRESET: "the preset's", SPEC: "the spec's", COMMAND_LINE: "--set"}


@dataclass(frozen=True)
class Override:
    text: str  # as given, for messages
    path: list[str | int]
    value: Any = None
    unset: bool = False


def parse_override(text: str) -> Override:
    """`training.learning_rate=2e-4` → the path and 0.0002 (values are TOML, else plain strings);
    `unset:training.unet_lr` (what `--unset training.unet_lr` passes) → the path to remove."""
    if text.startswith(UNSET):
        key = text[len(UNSET) :].strip()
        if not key:
            raise KohyaWrapError("--unset: expected KEY.PATH", "e.g. --unset training.max_train_epochs")
        return Override(f"--unset {key}", _path(key), unset=True)
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise KohyaWrapError(f"--set {text}: expected KEY.PATH=VALUE", "e.g. --set training.learning_rate=2e-4")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return Override(f"--set {text}", _path(key), value)


def _path(key: str) -> list[str | int]:
    return [int(p) if p.isdigit() else p for p in key.strip().split(".")]


def _parent(data: dict[str, Any], override: Override, create: bool) -> Any:
    node: Any = data
    for part in override.path[:-1]:
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise KohyaWrapError(f"{override.text}: there is no item {part} at that path", "count items from 0")
            node = node[part]
        elif isinstance(node, dict) and (create or part in node):
            node = node.setdefault(part, {})
        elif isinstance(node, dict):
            return None
        else:
            raise KohyaWrapError(f"{override.text}: '{part}' is not a table", "check the key path")
    return node


def apply_overrides(data: dict[str, Any], overrides: Iterable[str | Override]) -> dict[str, Any]:
    """`data` with each override applied (a copy; `data` is not changed)."""
    result = copy.deepcopy(data)
    for item in overrides:
        override = parse_override(item) if isinstance(item, str) else item
        node = _parent(result, override, create=not override.unset)
        last = override.path[-1]
        if override.unset:
            if not (isinstance(node, dict) and last in node):
                raise KohyaWrapError(f"{override.text}: the spec and its presets do not set it", "check the key path")
            del node[last]
            continue
        if isinstance(last, int):
            if not isinstance(node, list) or last >= len(node):
                raise KohyaWrapError(f"{override.text}: there is no item {last} at that path", "count items from 0")
        elif not isinstance(node, dict):
            raise KohyaWrapError(f"{override.text}: the parent of '{last}' is not a table", "check the key path")
        node[last] = override.value
    return result


def spec_unsets(merged: dict[str, Any], origin: str) -> tuple[dict[str, Any], list[Override]]:
    """The spec's own `unset = ["training.unet_lr", …]` (keys its presets set that it removes), as
    overrides; `merged` without the key."""
    data = dict(merged)
    keys = data.pop("unset", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) and k.strip() for k in keys):
        raise KohyaWrapError(
            f"{origin}: unset = {keys!r} is not a list of key paths", 'e.g. unset = ["training.unet_lr"]'
        )
    return data, [Override(f"unset {key}", _path(key), unset=True) for key in keys]


def _get(data: dict[str, Any], path: Path_) -> Any:
    node: Any = data
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def rank(user: dict[str, Any], overrides: list[Override], path: Path_) -> int:
    """Who set `path`: the command line, else the user's spec, else (only) a preset."""
    if any(tuple(o.path) == path and not o.unset for o in overrides):
        return COMMAND_LINE
    return SPEC if _get(user, path) is not None else PRESET


def user_wins(
    merged: dict[str, Any], user: dict[str, Any], overrides: list[Override]
) -> tuple[dict[str, Any], list[str]]:
    """Drop the values sd-scripts would let overrule a higher-ranked one; a note for each."""
    result = copy.deepcopy(merged)
    notes = []
    for key, rivals in OVERRULED_BY.items():
        value = _get(result, key)
        if value is None:
            continue
        for rival in rivals:
            rival_value = _get(result, rival)
            if rival_value is None or rank(user, overrides, rival) >= rank(user, overrides, key):
                continue
            del _get(result, rival[:-1])[rival[-1]]
            notes.append(
                f"{WHO[rank(user, overrides, rival)]} {'.'.join(rival)} = {rival_value!r} is dropped: "
                f"{WHO[rank(user, overrides, key)]} {'.'.join(key)} = {value!r} wins (sd-scripts would let "
                f"{rival[-1]} win)"
            )
    return result, notes
