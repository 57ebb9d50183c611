"""`init`: a new project — the user's `kohya-wrap.toml` (validated before it is written; a previous one
kept as `.bak`), the kohya folder tree, and each concept's source photos prepared into it (`prep`), or
copied verbatim with `--no-prep`. Returns what it did; the CLI says it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kohya_wrap.dataset.importer import ImportResult, import_images
from kohya_wrap.dataset.prep import ConceptPrep, PrepOptions, prep_project
from kohya_wrap.errors import KohyaWrapError, clip, file_error, shown
from kohya_wrap.fsutil import copy_file_atomic, write_text_atomic
from kohya_wrap.interop.kohya_ss import spec_from_kohya_ss
from kohya_wrap.paths import ProjectLayout
from kohya_wrap.sdscripts.naming import safe_name
from kohya_wrap.spec.load import LoadedSpec, load_project, load_spec_data
from kohya_wrap.spec.models import HF_PREFIX
from kohya_wrap.spec.overrides import apply_overrides, parse_override
from kohya_wrap.spec.write import render_spec_toml
from kohya_wrap.workers import Progress, no_progress

DEFAULT_PRESET = "sd15-character"


@dataclass(frozen=True)
class InitOptions:
    preset: str | None = None
    token: str | None = None
    class_: str = ""
    repeats: int = 10
    images: Path | None = None
    base_model: str | None = None
    name: str | None = None
    from_kohya_ss: Path | None = None
    force: bool = False
    overrides: tuple[str, ...] = ()
    no_prep: bool = False  # copy the photos verbatim instead of preparing them


@dataclass
class ConceptImport:
    folder: Path
    result: ImportResult | None  # None: nothing to import
    missing_source: Path | None = None  # its source folder is gone


@dataclass
class InitResult:
    loaded: LoadedSpec
    wrote_spec: bool  # False: an existing spec was kept
    ignored_options: bool = False  # spec options given while an existing spec was kept
    notes: list[str] = field(default_factory=list)  # what a kohya_ss config held that does not map
    imports: list[ConceptImport] = field(default_factory=list)  # copied verbatim (--no-prep)
    prepared: list[ConceptPrep] = field(default_factory=list)  # prepared by prep


def default_name(token: str) -> str:
    """The LoRA name when none is given: `<token>_v1`, in the characters a name may hold."""
    ascii_token = safe_name(token)
    return f"{ascii_token}_v1" if ascii_token else "my_lora"


def command_line_model(value: str) -> str:
    """A model given on the command line: a local path is relative to the current folder (written into
    the spec absolute, since the spec's own relative paths are relative to the project); hf:// as is."""
    return value if value.startswith(HF_PREFIX) else str(Path(value).expanduser().absolute())


def concept_entry(token: str | None, class_: str, repeats: int, images: Path | None) -> dict[str, Any]:
    if not token:
        raise KohyaWrapError(
            "init needs --token (the trigger word the LoRA learns)", "e.g. --token mytoken --class woman"
        )
    concept: dict[str, Any] = {"token": token, "class": class_, "repeats": repeats}
    if images is not None:
        concept["source"] = str(images.expanduser().absolute())
    return concept


def spec_from_options(options: InitOptions) -> dict[str, Any]:
    concept = concept_entry(options.token, options.class_, options.repeats, options.images)
    data: dict[str, Any] = {
        "extends": options.preset or DEFAULT_PRESET,
        "name": options.name or default_name(concept["token"]),
    }
    if options.base_model:
        data["model"] = {"base": command_line_model(options.base_model)}
    data["concepts"] = [concept]
    return data


def spec_from_kohya_ss_file(options: InitOptions, notes: list[str]) -> dict[str, Any]:
    """The spec a GUI config describes; what does not map goes into `notes`."""
    path = options.from_kohya_ss
    assert path is not None
    try:
        gui = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, RecursionError) as exc:  # no access, not UTF-8, [[[[…]]]]
        raise file_error(exc, path) from None
    except json.JSONDecodeError as exc:
        raise KohyaWrapError(
            f"{path}: not a readable kohya_ss JSON config ({exc})", "export it again from the GUI's Save config"
        ) from None
    if not isinstance(gui, dict):
        raise KohyaWrapError(
            f"{path}: not a kohya_ss config (expected a JSON object)", "pass the file the GUI's Save config writes"
        )

    def subfolders(folder: str) -> list[str]:
        directory = Path(folder).expanduser()
        try:
            return sorted(p.name for p in directory.iterdir() if p.is_dir()) if directory.is_dir() else []
        except OSError:  # unreadable, or no real path (a 10 MB string): it holds no concept folders here
            return []

    result = spec_from_kohya_ss(gui, subfolders=subfolders)
    notes += [clip(f"{item.key} = {shown(item.value)}: {item.reason}") for item in result.unmapped]
    notes += [clip(note) for note in result.notes]
    data = dict(result.spec)
    if options.preset:
        data["extends"] = options.preset
    if options.name:
        data["name"] = options.name
    if options.base_model:
        data.setdefault("model", {})["base"] = command_line_model(options.base_model)
    if options.token:
        data["concepts"] = [
            *data.get("concepts", []),
            concept_entry(options.token, options.class_, options.repeats, options.images),
        ]
    if not data.get("concepts"):
        raise KohyaWrapError(
            f"{path}: no concepts: its train_data_dir holds no <repeats>_<name> folders on this machine",
            "add --token T (and --class C, --images SRC) to define one",
        )
    if not data.get("name"):  # GUI presets carry no output name: the documented default, from the first token
        token = next((c.get("token") for c in data["concepts"] if c.get("token")), "")
        data["name"] = default_name(str(token))
    return data


def write_new_spec(layout: ProjectLayout, user: dict[str, Any], overrides: tuple[str, ...]) -> LoadedSpec:
    """Validate first, so an invalid spec is never written; keep the previous spec as .bak (undo)."""
    # written into the spec: they are the user's choices (an --unset as the spec's own `unset` list)
    parsed = [parse_override(text) for text in overrides]
    user = apply_overrides(user, [o for o in parsed if not o.unset])
    unsets = [".".join(map(str, o.path)) for o in parsed if o.unset]
    if unsets:
        user["unset"] = [*user.get("unset", []), *unsets]
    loaded = load_spec_data(user, layout.spec_file)
    layout.root.mkdir(parents=True, exist_ok=True)
    if layout.spec_file.exists():
        copy_file_atomic(layout.spec_file, layout.spec_file.with_name(layout.spec_file.name + ".bak"))
    write_text_atomic(layout.spec_file, render_spec_toml({k: v for k, v in user.items() if v is not None}))
    return loaded


def fill_concept_folders(
    loaded: LoadedSpec, extra_images: Path | None, no_prep: bool, progress: Progress = no_progress
) -> tuple[list[ConceptImport], list[ConceptPrep]]:
    """Create every concept folder and fill it from its `source`: prepared by `prep` (orientation,
    alpha, a size sd-scripts trains at; rejected files never enter the folder), or copied verbatim with
    `no_prep`. `extra_images` (init --images on an existing project) go to the first training concept,
    and become its source in the spec."""
    layout = loaded.layout
    imports: list[ConceptImport] = []
    prepared: list[ConceptPrep] = []
    first_training = next(c for c in loaded.settings.concepts if not c.is_reg)
    for item in loaded.settings.concepts:
        item.folder.mkdir(parents=True, exist_ok=True)
        extra = extra_images if extra_images is not None and item is first_training else None
        source = extra or (Path(item.concept.source).expanduser() if item.concept.source else None)
        if source is None:
            continue
        source = source if source.is_absolute() else layout.root / source
        if not source.is_dir():
            imports.append(ConceptImport(item.folder, None, missing_source=source))
        elif no_prep:
            imports.append(ConceptImport(item.folder, import_images(source, item.folder)))
        else:
            prepared += prep_project(loaded, PrepOptions(concept=item.label, source=extra), progress)
    return imports, prepared


def init_project(directory: Path, options: InitOptions, progress: Progress = no_progress) -> InitResult:
    layout = ProjectLayout.at(directory)
    if layout.root.exists() and not layout.root.is_dir():
        raise KohyaWrapError(f"{layout.root}: exists and is not a folder", "choose another project folder")
    kept = layout.spec_file.exists() and not options.force
    notes: list[str] = []
    if kept:
        loaded = load_project(layout.root, options.overrides)
    else:
        user = spec_from_kohya_ss_file(options, notes) if options.from_kohya_ss else spec_from_options(options)
        loaded = write_new_spec(layout, user, options.overrides)
    for folder in layout.tree():
        folder.mkdir(parents=True, exist_ok=True)
    extra = options.images.expanduser().absolute() if kept and options.images is not None else None
    imports, prepared = fill_concept_folders(loaded, extra, options.no_prep, progress)
    return InitResult(
        loaded,
        wrote_spec=not kept,
        ignored_options=kept and bool(options.from_kohya_ss or options.token),
        notes=notes,
        imports=imports,
        prepared=prepared,
    )
