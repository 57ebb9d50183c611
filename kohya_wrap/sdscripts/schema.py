"""What the installed sd-scripts accepts: option names, types, defaults, choices — and checks against it.

sd-scripts silently ignores unknown keys in `--config_file` (a misspelt `network_dimm` trains with the
default and exits 0) and never converts value types, so every key we render is checked here first.
`load_option_schema()` is the one place that decides where the schema comes from: the installed
sd-scripts' own, read by running `introspect.py` inside its venv (cached per version), or, when none is
installed — or a spec names one the user has not trusted (locate.py), which is never run — the snapshot
shipped in `kohya_wrap/data/option_schema/` for the pinned version.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kohya_wrap.errors import KohyaWrapError, Problem
from kohya_wrap.launch.process import run
from kohya_wrap.paths import PACKAGE_DIR, user_cache_dir

if TYPE_CHECKING:
    from kohya_wrap.sdscripts.locate import SdScripts

SNAPSHOT_DIR = PACKAGE_DIR / "data" / "option_schema"
DATASET_LEVELS = ("general", "dataset", "subset")

# Training options whose value kohya-wrap derives from the spec and the project layout; where to set each.
OWNED_OPTIONS: dict[str, str] = {
    "pretrained_model_name_or_path": "set model.base",
    "output_name": "set name",
    "output_dir": "kohya-wrap saves to the project's model/ folder",
    "logging_dir": "kohya-wrap logs to the project's log/ folder",
    "train_data_dir": "add [[concepts]]",
    "reg_data_dir": "add [[concepts]] with is_reg = true",
    "in_json": "kohya-wrap trains from concept folders; add [[concepts]]",
    "dataset_config": "kohya-wrap renders config/dataset.toml from the spec",
    "config_file": "kohya-wrap renders config/train.toml from the spec",
    "output_config": "kohya-wrap renders config/train.toml from the spec",
    "sample_prompts": "set sample.prompts",
    "sample_every_n_epochs": "set sample.every_n_epochs",
    "sample_every_n_steps": "set sample.every_n_steps",
    "sample_sampler": "set sample.sampler",
    "sample_at_first": "set sample.at_first",
    "resolution": "set dataset.resolution",
    "vae": "set model.vae",
    "v2": 'set model.family = "sd2"',
    "v_parameterization": "set model.v_parameterization",
    "clip_l": "set model.clip_l",
    "t5xxl": "set model.t5xxl",
    "ae": "set model.ae",
}

# Options sd-scripts removed in favour of another one (a did-you-mean cannot guess these).
KNOWN_REWRITES: dict[str, str] = {
    "use_8bit_adam": 'set optimizer_type = "AdamW8bit" instead',
    "use_lion_optimizer": 'set optimizer_type = "Lion" instead',
}

# dataset_config subset keys kohya-wrap writes for each concept.
OWNED_SUBSET_KEYS: dict[str, str] = {
    "image_dir": "kohya-wrap uses the concept's folder image/<repeats>_<token> <class>",
    "num_repeats": "set repeats",
    "class_tokens": "set token and class",
    "is_reg": "set is_reg on the concept itself",
    "metadata_file": "kohya-wrap trains from concept folders",
    "conditioning_data_dir": "ControlNet datasets are not supported",
}


@dataclass(frozen=True)
class OptionInfo:
    """One argparse option of a training script (no help text: that stays in sd-scripts)."""

    name: str
    type: str  # int | float | str | bool | custom:<callable>
    action: str
    nargs: Any = None
    default: Any = None
    choices: tuple[Any, ...] | None = None

    @property
    def is_list(self) -> bool:
        if self.type == "bool":  # store_true/store_false record nargs=0
            return False
        return self.nargs not in (None, "?", 0) or self.action in ("append", "extend")


@dataclass(frozen=True)
class OptionSchema:
    source: str  # human-readable: where this schema was read from
    commit: str | None
    scripts: dict[str, dict[str, OptionInfo]]
    dataset_keys: dict[str, dict[str, str]]  # level (general | dataset | subset) -> key -> type name

    # ------------------------------------------------------------------ lookups

    def options(self, script: str) -> dict[str, OptionInfo]:
        try:
            return self.scripts[script]
        except KeyError:
            raise KohyaWrapError(
                f"the sd-scripts option schema ({self.source}) has no {script}",
                "this sd-scripts version lacks that script; pick another model.family or upgrade sd-scripts",
            ) from None

    def default(self, script: str, name: str) -> Any:
        option = self.options(script).get(name)
        return option.default if option else None

    # ------------------------------------------------------------------ checks

    def check_training(self, script: str, training: dict[str, Any]) -> list[Problem]:
        options = self.options(script)
        general = self.dataset_keys.get("general", {})
        problems = []
        for key, value in training.items():
            where = f"training.{key}"
            if key in OWNED_OPTIONS:
                problems.append(
                    Problem(where, "is set by kohya-wrap", OWNED_OPTIONS[key] + " instead and remove this key")
                )
            elif key in general and key != "batch_size":
                problems.append(
                    Problem(where, "is a dataset option", f"move it to [dataset] ({key} = {_toml_repr(value)})")
                )
            elif key not in options:
                problems.append(
                    Problem(
                        where,
                        f"{script} of {self.source} has no such option",
                        KNOWN_REWRITES.get(key) or _did_you_mean(key, options),
                    )
                )
            else:
                problem = _check_option_value(options[key], value)
                if problem:
                    problems.append(Problem(where, *problem))
        return problems

    def check_dataset(self, dataset: dict[str, Any]) -> list[Problem]:
        general = self.dataset_keys.get("general", {})
        problems = []
        for key, value in dataset.items():
            if key in OWNED_SUBSET_KEYS:
                problems.append(Problem(f"dataset.{key}", "is set by kohya-wrap per concept", OWNED_SUBSET_KEYS[key]))
            elif key not in general:
                problems.append(
                    Problem(
                        f"dataset.{key}",
                        f"sd-scripts' dataset_config ({self.source}) has no such key",
                        _did_you_mean(key, general),
                    )
                )
            else:
                problem = _check_dataset_value(general[key], value)
                if problem:
                    problems.append(Problem(f"dataset.{key}", *problem))
        return problems

    def check_subset(self, index: int, concept: dict[str, Any], own: set[str]) -> list[Problem]:
        """A concept's keys: `own` are kohya-wrap's concept fields, every other one an sd-scripts subset key."""
        subset = self.dataset_keys.get("subset", {})
        problems = []
        for key, value in concept.items():
            where = f"concepts[{index}].{key}"
            if key in own:
                continue
            if key in OWNED_SUBSET_KEYS:
                problems.append(Problem(where, "is set by kohya-wrap", OWNED_SUBSET_KEYS[key]))
            elif key not in subset:
                problems.append(
                    Problem(
                        where,
                        "is neither a concept field nor an sd-scripts subset option",
                        _did_you_mean(key, [*own, *subset]),
                    )
                )
            else:
                problem = _check_dataset_value(subset[key], value)
                if problem:
                    problems.append(Problem(where, *problem))
        return problems

    def check_choice(self, script: str, option: str, value: Any, where: str) -> list[Problem]:
        info = self.options(script).get(option)
        if info and info.choices and value not in info.choices:
            return [
                Problem(
                    where,
                    f"'{value}' is not one of sd-scripts' choices",
                    "use one of: " + ", ".join(map(str, info.choices)),
                )
            ]
        return []


def _toml_repr(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def _did_you_mean(key: str, names) -> str:
    close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.75)
    return f"did you mean '{close[0]}'?" if close else "remove it, or check the spelling against sd-scripts' --help"


_SCALAR_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    # argparse type callables sd-scripts uses; what each accepts on a command line
    "custom:int_or_float": (int, float),
    "custom:Path": (str,),
}
_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string (in quotes)",
    "bool": "true or false",
    "custom:int_or_float": "a number",
    "custom:Path": "a path (a string in quotes)",
}


def _scalar_ok(type_name: str, value: Any) -> bool:
    allowed = _SCALAR_TYPES.get(type_name)
    if allowed is None:  # a custom argparse type: sd-scripts never applies it to config values
        return isinstance(value, (str, int, float, bool))
    if isinstance(value, bool) and bool not in allowed:
        return False
    return isinstance(value, allowed)


def _check_option_value(option: OptionInfo, value: Any) -> tuple[str, str] | None:
    items = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not option.is_list:
        return (f"{_toml_repr(value)} is a list, but this option takes one value", "write a single value")
    if option.nargs == "+" and isinstance(value, list) and not value:
        return ("is an empty list", "give at least one value or remove the key")
    for item in items:
        if not _scalar_ok(option.type, item):
            return (f"{_toml_repr(item)} has the wrong type", f"write {_TYPE_WORDS.get(option.type, option.type)}")
        if option.choices and item not in option.choices:
            return (
                f"{_toml_repr(item)} is not one of sd-scripts' choices",
                "use one of: " + ", ".join(map(str, option.choices)),
            )
    return None


def _matches_type_name(type_name: str, value: Any) -> bool:
    """Check a value against a dataset_config type name from the schema snapshot (int, float|int,
    int_or_pair, float_pair, dict, list[str], ...). Integers pass for floats: we render them as floats."""
    alternatives = type_name.split("|")
    if len(alternatives) > 1:
        return any(_matches_type_name(alt, value) for alt in alternatives)
    if type_name.endswith("_or_pair"):
        inner = type_name[: -len("_or_pair")]
        return _matches_type_name(inner, value) or _matches_type_name(f"{inner}_pair", value)
    if type_name.endswith("_pair"):
        inner = type_name[: -len("_pair")]
        return isinstance(value, list) and len(value) == 2 and all(_matches_type_name(inner, v) for v in value)
    if type_name.startswith("list[") and type_name.endswith("]"):
        return isinstance(value, list) and all(_matches_type_name(type_name[5:-1], v) for v in value)
    if type_name == "dict":
        return isinstance(value, dict)
    if type_name in _SCALAR_TYPES:
        return _scalar_ok(type_name, value)
    return True  # a type name this version of kohya-wrap does not know: sd-scripts will judge it


def _type_words(type_name: str) -> str:
    words = []
    for alt in type_name.split("|"):
        if alt.endswith("_or_pair"):
            inner = _TYPE_WORDS.get(alt[: -len("_or_pair")], alt)
            words.append(f"{inner} or a pair of them like [512, 768]")
        elif alt.endswith("_pair"):
            words.append(f"a pair [a, b] of {alt[: -len('_pair')]}s")
        else:
            words.append(_TYPE_WORDS.get(alt, {"dict": "a table"}.get(alt, alt)))
    return " or ".join(dict.fromkeys(words))


def _check_dataset_value(type_name: str, value: Any) -> tuple[str, str] | None:
    if _matches_type_name(type_name, value):
        return None
    return (f"{_toml_repr(value)} has the wrong type", f"write {_type_words(type_name)}")


def coerce_dataset_value(type_name: str, value: Any) -> Any:
    """voluptuous rejects an integer literal where sd-scripts' dataset_config wants a float."""
    if type_name == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type_name.endswith("float_pair") and isinstance(value, list):
        return [float(v) for v in value]
    return value


def coerce_option_value(option: OptionInfo, value: Any) -> Any:
    """The value as sd-scripts' code expects it, since --config_file values skip argparse conversion."""
    if option.is_list and not isinstance(value, list):
        value = [value]
    if option.type == "float":
        return [float(v) for v in value] if isinstance(value, list) else float(value)
    return value


# ---------------------------------------------------------------------------------------------- loading


def parse_schema(data: dict[str, Any], source: str) -> OptionSchema:
    scripts = {
        script: {
            name: OptionInfo(
                name=name,
                type=info["type"],
                action=info.get("action", "store"),
                nargs=info.get("nargs"),
                default=info.get("default"),
                choices=tuple(info["choices"]) if info.get("choices") is not None else None,
            )
            for name, info in body["options"].items()
        }
        for script, body in data["scripts"].items()
    }
    return OptionSchema(
        source=source,
        commit=(data.get("sd_scripts") or {}).get("commit"),
        scripts=scripts,
        dataset_keys={
            level: dict(keys) for level, keys in data.get("dataset_config", {}).items() if level in DATASET_LEVELS
        },
    )


def snapshot_files() -> list[Path]:
    return sorted(SNAPSHOT_DIR.glob("sd-scripts-*.json"))


def load_snapshot(path: Path) -> OptionSchema:
    data = json.loads(path.read_text(encoding="utf-8"))
    describe = (data.get("sd_scripts") or {}).get("describe") or path.stem.removeprefix("sd-scripts-")
    return parse_schema(data, f"sd-scripts {describe} (snapshot)")


def shipped_schema() -> OptionSchema:
    files = snapshot_files()
    if not files:
        raise KohyaWrapError(f"no sd-scripts option schema in {SNAPSHOT_DIR}", "reinstall kohya-wrap")
    return load_snapshot(files[-1])


# ---------------------------------------------------------------------------------------------- live

INTROSPECT = Path(__file__).with_name("introspect.py")


def schema_cache_dir() -> Path:
    return user_cache_dir() / "option-schema"


def fingerprint(sd: "SdScripts") -> str:
    """Identifies what the introspection would read: the scripts and library sources (paths, sizes,
    modification times) and the Python that imports them. Stats only, so the cached path stays fast."""
    digest = hashlib.sha256(f"{sd.root}\0{sd.python}\0{INTROSPECT.stat().st_mtime_ns}".encode())
    files = sorted([*sd.root.glob("*.py"), *(sd.root / "library").rglob("*.py")])
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(sd.root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def run_introspection(python: Path, tree: Path, out: Path) -> None:
    """Build each script's argparse parser inside sd-scripts' own venv and dump it (introspect.py)."""
    try:
        result = run([str(python), str(INTROSPECT), "--sd-scripts", str(tree), "--out", str(out)], timeout=600)
    except OSError as exc:
        raise KohyaWrapError(
            f"cannot run {python} ({exc.strerror})", "check the sd-scripts venv (`kohya-wrap vendor status`)"
        ) from None
    except subprocess.TimeoutExpired:
        raise KohyaWrapError(
            f"reading sd-scripts' options from {tree} with {python} took over 10 minutes and was stopped",
            "check that its venv is complete (`kohya-wrap vendor status`, `kohya-wrap vendor install`)",
        ) from None
    if result.returncode != 0:
        tail = [line for line in result.stderr.strip().splitlines() if line.strip()][-1:] or [
            f"exit code {result.returncode}"
        ]
        raise KohyaWrapError(
            f"reading sd-scripts' options from {tree} with {python} failed: {tail[0]}",
            "check that its venv is complete (`kohya-wrap vendor status`, `kohya-wrap vendor install`)",
        )


def live_schema(sd: "SdScripts") -> OptionSchema:
    """The options of the installed sd-scripts, introspected once per version and cached. Never for an
    sd-scripts the user has not trusted: that would run a program a project names."""
    if not sd.trusted:
        raise KohyaWrapError(
            f"not reading the options of {sd.root} with {sd.python}: a spec names them and you have not trusted them",
            "`kohya-wrap vendor use PATH --python PY` trusts them",
        )
    path = schema_cache_dir() / f"{fingerprint(sd)}.json"
    if not path.is_file():
        run_introspection(sd.python, sd.root, path)
    data = json.loads(path.read_text(encoding="utf-8"))
    info = data.get("sd_scripts") or {}
    label = info.get("describe") or (info.get("commit") or "")[:12] or "unknown version"
    return parse_schema(data, f"sd-scripts {label} ({sd.origin})")


def load_option_schema(sd: "SdScripts | None" = None) -> OptionSchema:
    """The schema to validate against: the installed sd-scripts' own when there is one (read live,
    cached per version), else the snapshot shipped for the pinned version. An sd-scripts a spec names
    and the user has not trusted is never run: the snapshot then (`check` says why)."""
    if sd is not None and sd.runnable:
        return live_schema(sd)
    return shipped_schema()
