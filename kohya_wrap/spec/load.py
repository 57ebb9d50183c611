"""Read a spec, along one path for every command: the user's TOML → `--set` overrides (an `extends`
override first, so it picks the preset chain) → the preset chain merged under it → one validation that
reports every problem → the derived settings.

The result is a `LoadedSpec`: the frozen ProjectSpec, its project layout, where each part came from, the
sd-scripts and option schema it was checked against, and its derived Settings. Relative paths in a spec
(model files, concept sources) are relative to the project directory.
"""

from __future__ import annotations

import copy
import difflib
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from kohya_wrap.errors import KohyaWrapError, Problem, SpecError, file_error, shown
from kohya_wrap.paths import SPEC_FILENAME, ProjectLayout
from kohya_wrap.presets import find_preset
from kohya_wrap.sdscripts.families import FAMILIES, family_named, family_of_script, scripts_without_family
from kohya_wrap.sdscripts.locate import SdScripts, locate_sd_scripts
from kohya_wrap.sdscripts.schema import OptionSchema, load_option_schema
from kohya_wrap.spec.models import ConceptSpec, ProjectSpec
from kohya_wrap.spec.overrides import apply_overrides, parse_override, spec_unsets, user_wins
from kohya_wrap.spec.settings import Settings, derive_settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError


@dataclass(frozen=True)
class LoadedSpec:
    spec: ProjectSpec
    layout: ProjectLayout
    chain: tuple[str, ...]  # the spec file, then each preset it extends, nearest first
    schema: OptionSchema
    sd_scripts: SdScripts
    settings: Settings
    notes: tuple[str, ...] = ()  # what loading decided for the user (e.g. a preset value dropped)


def find_spec_file(directory: str | Path) -> Path:
    path = Path(directory).expanduser()
    candidate = path if path.is_file() else path / SPEC_FILENAME
    if not candidate.is_file():
        raise KohyaWrapError(f"{candidate}: no project spec here", f"run `kohya-wrap init {directory}` to create one")
    return candidate.absolute()


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise KohyaWrapError(f"{path}: not valid TOML ({exc})", "fix the syntax at that line") from None
    except (OSError, UnicodeDecodeError, RecursionError) as exc:  # no access, a folder, not UTF-8, [[[[…]]]]
        raise file_error(exc, path) from None


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; anything else (arrays included) in `override` replaces `base`'s."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def resolve_extends(data: dict[str, Any], origin: str, base_dir: Path) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Merge `data` over the chain of presets it extends; returns the merged dict and the chain of sources."""
    chain = [origin]
    merged = data
    seen = {origin}
    parent_ref, parent_dir = data.get("extends"), base_dir
    while parent_ref is not None:
        if not isinstance(parent_ref, str):
            raise SpecError(
                origin,
                [
                    Problem(
                        "extends", f"{parent_ref!r} is not a preset name or path", 'write extends = "sd15-character"'
                    )
                ],
            )
        preset = find_preset(parent_ref, relative_to=parent_dir)
        key = str(preset.path)
        if key in seen:
            cycle = " → ".join([*chain, key])
            raise SpecError(
                origin,
                [
                    Problem(
                        "extends", f"presets extend each other in a cycle: {cycle}", "remove one of the extends lines"
                    )
                ],
            )
        seen.add(key)
        chain.append(key)
        parent_data = read_toml(preset.path)
        merged = deep_merge(parent_data, merged)
        parent_ref, parent_dir = parent_data.get("extends"), preset.path.parent
    merged["extends"] = data.get("extends")
    return merged, tuple(chain)


# ---------------------------------------------------------------------------------------------- errors


def _format_loc(loc: Iterable[str | int]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _model_class(annotation: Any) -> "type[BaseModel] | None":
    """The BaseModel inside an annotation (X, list[X], X | None), for walking error locations."""
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_class(arg)
        if found is not None:
            return found
    return None


def _field_names(model: "type[BaseModel]") -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _walk(loc: tuple[Any, ...], root: "type[BaseModel]") -> tuple[tuple[Any, ...], "type[BaseModel] | None"]:
    """Cut an error location at the end of the real field path (pydantic appends union member names)."""
    model: type[BaseModel] | None = root
    kept: list[Any] = []
    for part in loc:
        if isinstance(part, int):
            kept.append(part)
            continue
        if model is None:
            break
        fields = {info.alias or name: info for name, info in model.model_fields.items()}
        if part not in fields:
            break
        kept.append(part)
        model = _model_class(fields[part].annotation)
    return tuple(kept), model


_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string (in quotes)",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
}


def _describe(value: Any) -> str:
    kind = {
        bool: "true/false",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)
    text = shown(value) if not isinstance(value, (dict, list)) else kind
    return f"{text} ({kind})" if text != kind else kind


def problems_from_validation(exc: "ValidationError", root: "type[BaseModel]") -> list[Problem]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    problems: list[Problem] = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        if error["type"] == "extra_forbidden":
            path, model = _walk(loc[:-1], root)
            key = loc[-1]
            allowed = _field_names(model) if model is not None else []
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            fix = f"did you mean '{close[0]}'?" if close else f"remove it (allowed here: {', '.join(allowed)})"
            problems.append(Problem(_format_loc((*path, key)), "unknown key", fix))
            continue
        path, _ = _walk(loc, root)
        groups.setdefault(path, []).append(error)
    for path, errors in groups.items():
        problems.append(_problem_for(path, errors))
    return problems


def _problem_for(path: tuple[Any, ...], errors: list[dict[str, Any]]) -> Problem:
    where = _format_loc(path)
    first = errors[0]
    if first["type"] == "missing":
        return Problem(where, "is required", "add it to the spec")
    if first["type"] == "value_error":
        message = str(first["ctx"]["error"]) if "ctx" in first else first["msg"]
        head, sep, rest = message.partition(": ")
        if sep and head.replace(".", "").replace("_", "").isalnum() and " " not in head:
            where = f"{where}.{head}" if where and not head.startswith(where.split(".")[0] + ".") else head
            message = rest
        what, _, fix = message.partition(" — ")
        return Problem(where, what, fix)
    if first["type"] in _BOUNDS:
        return Problem(
            where,
            f"{_describe(first['input'])} is {_BOUNDS[first['type']]}",
            "it " + first["msg"].removeprefix("Input ").lower(),
        )
    expected = [(_EXPECTED.get(e["type"]) or e["msg"].removeprefix("Input should be ")) for e in errors]
    expected = list(dict.fromkeys(expected))
    return Problem(where, f"{_describe(first['input'])} has the wrong type", f"write {' or '.join(expected)}")


_BOUNDS = {
    "greater_than": "too small",
    "greater_than_equal": "too small",
    "less_than": "too large",
    "less_than_equal": "too large",
    "too_short": "too short",
    "too_long": "too long",
}
_SECTION_ORDER = ("extends", "name", "model", "concepts", "dataset", "training", "sample", "launch", "sd_scripts")


def _section_rank(problem: Problem) -> int:
    head = problem.where.split(".")[0].split("[")[0]
    return _SECTION_ORDER.index(head) if head in _SECTION_ORDER else len(_SECTION_ORDER)


def validate_spec(data: dict[str, Any], source: str, schema: "OptionSchema") -> "ProjectSpec":
    """Validate once: the Pydantic models, then every sd-scripts key against the option schema."""
    from pydantic import ValidationError

    problems: list[Problem] = []
    try:
        spec = ProjectSpec.model_validate(data)
    except ValidationError as exc:
        problems = problems_from_validation(exc, ProjectSpec)
    problems += schema_problems(data, schema)
    if problems:
        raise SpecError(source, _unique(problems))
    return spec


def _unique(problems: list[Problem]) -> list[Problem]:
    """One line per field (Pydantic's wins over the schema's), in the spec's section order."""
    seen: dict[str, Problem] = {}
    for problem in problems:
        seen.setdefault(problem.where, problem)
    return sorted(seen.values(), key=_section_rank)


def schema_problems(data: dict[str, Any], schema: OptionSchema) -> list[Problem]:
    """The sd-scripts-named parts of a raw (merged) spec dict, checked against the option schema; the
    Pydantic models check the rest."""
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    family = family_named(model.get("family", "sd15")) if isinstance(model.get("family", "sd15"), str) else None
    if family is None:
        return []  # the model's own validation reports the family
    script = family.script
    if script not in schema.scripts:
        if not family.known:
            others = [family_of_script(name) for name in scripts_without_family(schema.scripts)]
            return [
                Problem(
                    "model.family",
                    f"'{family.name}' is not a family kohya-wrap knows, and {schema.source} has no {script}",
                    f"use one of {', '.join([*FAMILIES, *others])}",
                )
            ]
        return [
            Problem(
                "model.family",
                f"'{family.name}' trains with {script}, which {schema.source} does not have",
                "upgrade sd-scripts (`kohya-wrap vendor upgrade --ref TAG`) or pick another family",
            )
        ]
    problems: list[Problem] = []
    training = data.get("training")
    if isinstance(training, dict):
        problems += schema.check_training(script, training)
    dataset = data.get("dataset")
    if isinstance(dataset, dict):
        problems += schema.check_dataset(dataset)
    concepts = data.get("concepts")
    if isinstance(concepts, list):
        own = {info.alias or name for name, info in ConceptSpec.model_fields.items()}
        for index, concept in enumerate(concepts):
            if isinstance(concept, dict):
                problems += schema.check_subset(index, concept, own)
    sample = data.get("sample")
    if isinstance(sample, dict) and isinstance(sample.get("sampler"), str):
        problems += schema.check_choice(script, "sample_sampler", sample["sampler"], "sample.sampler")
    return problems


def resolve_spec(
    user: dict[str, Any], spec_file: Path, overrides: Iterable[str] = ()
) -> tuple[dict[str, Any], tuple[str, ...], list[str]]:
    """The user's spec with `--set`/`--unset` overrides and its preset chain merged in, and notes.
    `--set extends=NAME` is applied before the chain is resolved (it chooses the chain); every other
    override after (so it overrides a preset's value too), then the spec's own `unset` list; last, a
    preset value sd-scripts would let overrule what the user set is dropped (spec/overrides.py)."""
    parsed = [parse_override(text) for text in overrides]
    chooses_chain = [o for o in parsed if o.path == ["extends"]]
    rest = [o for o in parsed if o.path != ["extends"]]
    merged, chain = resolve_extends(apply_overrides(user, chooses_chain), str(spec_file), spec_file.parent)
    merged, unsets = spec_unsets(apply_overrides(merged, rest), str(spec_file))
    merged = apply_overrides(merged, unsets)
    merged, notes = user_wins(merged, user, rest)
    return merged, chain, notes


def load_spec_data(
    user: dict[str, Any],
    spec_file: Path,
    overrides: Iterable[str] = (),
    schema: OptionSchema | None = None,
    configs: Path | None = None,
) -> LoadedSpec:
    """The one loading path (`load_project` reads the file; `init` validates what it is about to write).
    `configs`: where sd-scripts' configs go instead of config/ (a sweep trial's own folder)."""
    layout = ProjectLayout.at(spec_file.parent, configs)
    merged, chain, notes = resolve_spec(user, spec_file, overrides)
    setting = merged.get("sd_scripts")
    sd = locate_sd_scripts(layout.root, setting if isinstance(setting, dict) else None)
    schema = schema or load_option_schema(sd)
    spec = validate_spec(merged, str(spec_file), schema)
    return LoadedSpec(
        spec=spec,
        layout=layout,
        chain=chain,
        schema=schema,
        sd_scripts=sd,
        settings=derive_settings(spec, schema, layout),
        notes=tuple(notes),
    )


def load_project(
    directory: str | Path,
    overrides: Iterable[str] = (),
    schema: OptionSchema | None = None,
    configs: Path | None = None,
) -> LoadedSpec:
    """`schema` replaces the one of the project's sd-scripts (e.g. another version's, for a diff)."""
    spec_file = find_spec_file(directory)
    return load_spec_data(read_toml(spec_file), spec_file, overrides, schema, configs)
