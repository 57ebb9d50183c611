#!/usr/bin/env python3
"""Dump the command-line options and dataset-config keys of a kohya-ss/sd-scripts checkout as JSON.

This file runs INSIDE sd-scripts' own virtual environment (`<venv python> introspect.py ...`), so it
uses only the standard library at import time and never imports kohya_wrap.

kohya-wrap validates and renders sd-scripts configuration files itself.  Rather than keeping a
hand-written list of sd-scripts' options (which drifts with every release), this script reads the
real objects from a pinned sd-scripts checkout and writes a stable JSON snapshot that is committed
under ``kohya_wrap/data/option_schema/``.

What it reads
-------------
* For each network-training script of the checkout (every ``*train_network.py``: ``train_network.py``,
  ``sdxl_train_network.py``, ``flux_train_network.py``, ``sd3_train_network.py``, … — what a release
  adds is read without a change here) its parser factory ``setup_parser()``: the module is imported by
  path with importlib (its ``__main__`` block does not run) and ``parser._actions`` is walked.
  Per option (keyed by ``dest``): flags, type, action, nargs, default, choices.  No help text.
  ``store_true``/``store_false`` get type ``"bool"``; a ``type=None`` store is ``"str"`` (what
  argparse delivers); any other callable is ``"custom:<name>"``.  Defaults and choices that are
  not JSON values are written as their ``repr``.
* From ``library/config_util.py`` the ``ConfigSanitizer`` voluptuous schema dicts, built the way
  ``train_network.py`` builds them (``ConfigSanitizer(True, True, False, True)``:
  DreamBooth + fine-tuning + dropout).  For DreamBooth-style datasets (subsets are folders with
  ``class_tokens``, no ``metadata_file``) the keys allowed in ``[general]``,
  ``[[datasets]]`` and ``[[datasets.subsets]]`` are listed with a readable type name, plus the
  keys marked ``Required``.  Only the mapping from validator objects to type names is written
  by hand (see ``validator_type_name``).

Usage (with the sd-scripts virtual environment's Python)::

    python kohya_wrap/sdscripts/introspect.py [--sd-scripts DIR] [--out FILE] [--script NAME ...]

Without ``--script`` every ``*train_network.py`` of the checkout is read; one that cannot be imported
(a dependency its venv lacks) is left out and named under ``"skipped"`` with the error, unless it is
``train_network.py`` itself. A script named with ``--script`` that this version does not have is left
out (older releases have no flux_train_network.py); at least one must be read.

``--sd-scripts`` defaults to the current directory; it is put first on ``sys.path`` and made the
working directory.  Output is pretty-printed with sorted keys, so two runs give identical bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

FORMAT = 1
BASE_SCRIPT = "train_network.py"  # the one every other network-training script builds on
SCRIPT_GLOB = "*train_network.py"


def discover_scripts(sd_dir: Path) -> tuple[str, ...]:
    """Every network-training script of the checkout, train_network.py first, the rest sorted."""
    names = sorted(path.name for path in sd_dir.glob(SCRIPT_GLOB) if path.is_file())
    return tuple(sorted(names, key=lambda name: (name != BASE_SCRIPT, name)))


PARSER_FACTORY = "setup_parser"


# --------------------------------------------------------------------------------------------
# argparse


def _json_value(value: Any) -> Any:
    """value itself when it is a JSON value (and survives a round trip), else its repr."""
    try:
        if json.loads(json.dumps(value)) == value:
            return value
    except (TypeError, ValueError):
        pass
    return repr(value)


def _action_names(parser: argparse.ArgumentParser) -> dict[type, str]:
    names: dict[type, str] = {}
    for name, cls in parser._registries.get("action", {}).items():
        if name is not None and isinstance(cls, type):
            names.setdefault(cls, name)
    return names


def _type_name(action: argparse.Action, action_name: str) -> str:
    if action_name in ("store_true", "store_false") or isinstance(action, argparse.BooleanOptionalAction):
        return "bool"
    t = action.type
    if t is None:
        if action_name in ("store_const", "append_const"):
            return "const"
        if action_name == "count":
            return "int"
        return "str"
    if t in (str, int, float, bool):
        return t.__name__
    name = getattr(t, "__name__", None) or repr(t)
    return f"custom:{name}"


def describe_parser(parser: argparse.ArgumentParser) -> dict[str, dict[str, Any]]:
    names = _action_names(parser)
    options: dict[str, dict[str, Any]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        action_name = names.get(type(action)) or f"custom:{type(action).__name__}"
        entry = {
            "flags": list(action.option_strings),
            "type": _type_name(action, action_name),
            "action": action_name,
            "nargs": _json_value(action.nargs),
            "default": _json_value(action.default),
            "choices": None if action.choices is None else [_json_value(c) for c in action.choices],
        }
        if action.dest in options:
            raise SystemExit(
                f"error: two options share dest {action.dest!r}: {options[action.dest]['flags']} and {entry['flags']}"
            )
        options[action.dest] = entry
    return options


def import_by_path(path: Path):
    """Import a top-level script as a module named after its file (so that e.g.
    ``sdxl_train_network``'s own ``import train_network`` finds the same module)."""
    name = path.stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"error: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------
# dataset config (voluptuous)


def _voluptuous():
    try:
        import voluptuous
    except ImportError:  # a checkout whose venv lacks it: plain types and keys only
        return None
    return voluptuous


def validator_type_name(v: Any, config_sanitizer: type, named: dict[int, str]) -> str:
    """Readable name for one voluptuous validator used in ConfigSanitizer's schema dicts."""
    voluptuous = _voluptuous()
    if id(v) in named:
        return named[id(v)]
    if v is None:
        return "null"
    if v in (bool, int, float, str):
        return v.__name__
    if v is dict:
        return "dict"
    if v is list:
        return "list"
    if voluptuous is not None and isinstance(v, voluptuous.Any):
        return "|".join(validator_type_name(x, config_sanitizer, named) for x in v.validators)
    if isinstance(v, list):
        return "list[" + "|".join(validator_type_name(x, config_sanitizer, named) for x in v) + "]"
    if isinstance(v, functools.partial):
        twodim = getattr(config_sanitizer, "_ConfigSanitizer__validate_and_convert_twodim", None)
        scalar_or_twodim = getattr(config_sanitizer, "_ConfigSanitizer__validate_and_convert_scalar_or_twodim", None)
        klass = v.args[0] if v.args else None
        kname = klass.__name__ if isinstance(klass, type) else repr(klass)
        if v.func is twodim:
            return f"{kname}_pair"  # exactly [k, k]
        if v.func is scalar_or_twodim:
            return f"{kname}_or_pair"  # k, or [k, k]
    name = getattr(v, "__qualname__", None) or getattr(v, "__name__", None) or type(v).__name__
    return f"custom:{name}"


def _key_name(k: Any) -> tuple[str, bool]:
    voluptuous = _voluptuous()
    if voluptuous is not None and isinstance(k, voluptuous.Marker):
        return str(k.schema), isinstance(k, voluptuous.Required)
    return str(k), False


def describe_schema(schema: dict, config_sanitizer: type, named: dict[int, str]) -> tuple[dict[str, str], list[str]]:
    keys: dict[str, str] = {}
    required: list[str] = []
    for k, v in schema.items():
        name, is_required = _key_name(k)
        keys[name] = validator_type_name(v, config_sanitizer, named)
        if is_required:
            required.append(name)
    return keys, sorted(required)


def describe_dataset_config() -> dict[str, Any]:
    from library import config_util

    cs_cls = config_util.ConfigSanitizer
    # as train_network.py builds it (with masked_loss off): DreamBooth, fine tuning, dropout.
    sanitizer = cs_cls(True, True, False, True)
    named = {id(sanitizer.db_subset_schema): "subset"}
    general, general_req = describe_schema(sanitizer.general_schema, cs_cls, named)
    dataset, dataset_req = describe_schema(sanitizer.db_dataset_schema, cs_cls, named)
    subset, subset_req = describe_schema(sanitizer.db_subset_schema, cs_cls, named)
    return {
        "style": "dreambooth",
        "general": general,
        "dataset": dataset,
        "subset": subset,
        "required": {"general": general_req, "dataset": dataset_req, "subset": subset_req},
        "type_names": {
            "<T>_or_pair": "a T, or a list of exactly two Ts (a scalar s becomes (s, s))",
            "<T>_pair": "a list of exactly two Ts",
            "A|B": "any of the alternatives (voluptuous Any)",
            "list[subset]": "an array of subset tables ([[datasets.subsets]])",
            "float": "a TOML float only (voluptuous checks isinstance; an integer literal is rejected)",
            "int": "a TOML integer (isinstance check; true/false also pass, bool being an int subclass)",
        },
    }


# --------------------------------------------------------------------------------------------


def _git(sd_dir: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(sd_dir), *args], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def build_schema(sd_dir: Path, script_names: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The schema of `script_names`, or of every script `discover_scripts` finds (then a script other
    than train_network.py that fails to import is skipped, and named with its error)."""
    discovered = script_names is None
    names = discover_scripts(sd_dir) if script_names is None else script_names
    scripts: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    # Importing sd-scripts modules may print; keep stdout clean for the JSON.
    with contextlib.redirect_stdout(sys.stderr):
        for script in names:
            if not (sd_dir / script).is_file():
                continue
            try:
                module = import_by_path(sd_dir / script)
            except Exception as exc:  # noqa: BLE001 - a newer family's extra dependency: the others still count
                if not discovered or script == BASE_SCRIPT:
                    raise
                skipped[script] = f"{type(exc).__name__}: {exc}"[:300]
                continue
            factory = getattr(module, PARSER_FACTORY, None)
            if not callable(factory):
                if discovered and script != BASE_SCRIPT:
                    skipped[script] = f"no {PARSER_FACTORY}()"
                    continue
                raise SystemExit(f"error: {script} has no {PARSER_FACTORY}()")
            scripts[script] = {"options": describe_parser(factory())}
        if not scripts:
            raise SystemExit(f"error: {sd_dir} has none of {', '.join(names) or SCRIPT_GLOB}")
        dataset_config = describe_dataset_config()
    schema = {
        "format": FORMAT,
        "sd_scripts": {"commit": _git(sd_dir, "rev-parse", "HEAD"), "describe": _git(sd_dir, "describe", "--tags")},
        "scripts": scripts,
        "dataset_config": dataset_config,
    }
    if skipped:
        schema["skipped"] = skipped
    return schema


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sd-scripts", type=Path, default=Path.cwd(), help="sd-scripts checkout (default: current directory)"
    )
    p.add_argument("--out", type=Path, default=None, help="write the JSON here instead of stdout")
    p.add_argument(
        "--script",
        action="append",
        default=None,
        help=f"a training script to read (repeatable; default: every {SCRIPT_GLOB} of the checkout)",
    )
    args = p.parse_args(argv)

    sd_dir = args.sd_scripts.resolve()
    out = args.out.resolve() if args.out is not None else None  # before chdir
    if not (sd_dir / "library" / "config_util.py").is_file():
        raise SystemExit(f"error: {sd_dir} does not look like an sd-scripts checkout")
    os.chdir(sd_dir)
    sys.path.insert(0, str(sd_dir))

    schema = build_schema(sd_dir, tuple(args.script) if args.script else None)
    text = json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        temp = out.with_name(f".{out.name}.{os.getpid()}.tmp")  # atomic: a cache file is whole or absent
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
