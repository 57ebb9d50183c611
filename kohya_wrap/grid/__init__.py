"""`grid`: the saved LoRA checkpoints × LoRA weights (× prompts, seeds, cfg, steps, samplers) rendered by
the vendored sd-scripts' own generation script, and laid out as labelled grid images.

SD 1.x, SD 2.x and SDXL: all the cells that share a sampler render in one `gen_img.py` process, so the base
model loads once (grid/render.py). FLUX, SD3, Lumina, HunyuanImage and a family sd-scripts added with a
HunyuanImage-style `<family>_minimal_inference.py` (Anima): one process per cell, through that script, which
takes one prompt and has no sampler choice (grid/minimal.py).

A cell is cached under `.kohya-wrap/grid-cache/` by a key over everything that decides its pixels (the
checkpoint's SHA-256, the base model's path, size and time, the sd-scripts commit, the cell's settings;
grid/cells.py), so a grid with one more column renders only that column, and weight 0 (the base model) renders
once for all checkpoints. grid/pages.py draws the pages and writes grid.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.fsutil import free_name
from kohya_wrap.grid.cells import (
    AXES,
    SCRIPT_SAMPLER,
    Cell,
    Checkpoint,
    GridRequest,
    Prompt,
    axes_layout,
    base_identity,
    cells_by_key,
    list_checkpoints,
    select_checkpoints,
)
from kohya_wrap.grid.minimal import MinimalGenerator, minimal_generator, render_minimal_cells
from kohya_wrap.grid.pages import write_grid
from kohya_wrap.grid.render import Generator, RenderOutcome, clear_work, render_cells
from kohya_wrap.sdscripts.families import FAMILIES, Family, Inference, family_named
from kohya_wrap.sdscripts.locate import require_trusted
from kohya_wrap.sdscripts.modelref import resolve_model_refs
from kohya_wrap.sdscripts.render import render_configs
from kohya_wrap.spec.load import LoadedSpec
from kohya_wrap.training.record import RunFiles, RunRecord, find_run, read_record
from kohya_wrap.workers import Progress, no_progress

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = [
    "AXES",
    "Cell",
    "Checkpoint",
    "Generator",
    "MinimalGenerator",
    "GridOptions",
    "GridRequest",
    "GridResult",
    "Prompt",
    "RenderOutcome",
    "make_grid",
    "render_cells",
]


@dataclass(frozen=True)
class GridOptions:
    """`kohya-wrap grid`'s choices; None takes the [sample] section's (or the run's) value."""

    run_id: str | None = None
    checkpoints: str = "all"
    weights: list[float] | None = None
    prompts: list[Prompt] | None = None
    seeds: list[int] | None = None
    cfgs: list[float] | None = None
    steps: list[int] | None = None
    samplers: list[str] | None = None
    size: tuple[int, int] | None = None
    x: str | None = None
    y: str | None = None
    batch_size: int = 1


@dataclass
class GridResult:
    folder: Path
    data: dict[str, Any]  # grid.json
    cells: int  # distinct cells
    rendered: int
    cached: int
    failed: dict[str, str]
    interrupted: bool
    pages_axes: list[str]
    from_run: dict[str, str] = field(default_factory=dict)  # default → where the run's value came from


def default_prompts(loaded: LoadedSpec, negative: str | None) -> list[Prompt]:
    """The [sample] prompts, each with its own negative prompt, else `negative`, else the section's;
    without any, each training concept's trigger and class ("mytoken woman"), what the LoRA learned."""
    sample = loaded.spec.sample
    if not sample.prompts:
        texts = dict.fromkeys(c.class_tokens for c in loaded.spec.concepts if not c.is_reg and c.class_tokens)
        return [Prompt(text, (negative if negative is not None else sample.negative) or "") for text in texts]
    prompts = []
    for item in sample.prompts:
        text = item if isinstance(item, str) else item.text
        own = None if isinstance(item, str) else item.negative
        prompts.append(
            Prompt(
                text.strip(), (negative if negative is not None else own if own is not None else sample.negative) or ""
            )
        )
    return prompts


def _run_outputs(runs_dir: Path, run_id: str | None) -> tuple[Path | None, RunRecord | None]:
    """The run to take checkpoints (and their order) and defaults from: `run_id`, else the newest with a
    record."""
    folder = find_run(runs_dir, run_id)
    if folder is None:
        return None, None
    return folder, read_record(folder)


def _pair(value: Any) -> tuple[int, int] | None:
    """A size as specs, records and dataset.toml write it: 512, [512, 768] or "512,768"."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    try:
        if isinstance(value, (list, tuple)) and len(value) == 2:
            width, height = int(value[0]), int(value[1])
        elif value is not None and not isinstance(value, bool):
            width = height = int(value)
        else:
            return None
    except (TypeError, ValueError):
        return None
    return (width, height) if width > 0 and height > 0 else None


def run_sample_size(run_dir: Path, record: RunRecord, dataset_name: str) -> tuple[tuple[int, int], str] | None:
    """The size a run sampled at — its [sample] width and height, else the resolution it trained at — and
    what that is: from the record's settings (format 2), else the run's spec.json, else its dataset.toml."""
    run = f"run {run_dir.name}"
    settings = record.settings or {}
    resolution, size = _pair(settings.get("resolution")), _pair(settings.get("sample_size"))
    if size or resolution:
        return _described(size or resolution, resolution, run, "its record")
    try:
        spec = json.loads(RunFiles(run_dir).spec.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        spec = None
    if isinstance(spec, dict):
        sample, dataset = spec.get("sample"), spec.get("dataset")
        sample = sample if isinstance(sample, dict) else {}
        resolution = _pair(dataset.get("resolution")) if isinstance(dataset, dict) else None
        if resolution:
            size = (_pair(sample.get("width")) or resolution)[0], (_pair(sample.get("height")) or resolution)[1]
            return _described(size, resolution, run, "its spec.json")
    try:
        with open(run_dir / dataset_name, "rb") as handle:
            dataset_toml = tomllib.load(handle)
    except (OSError, ValueError):
        return None
    general, sets = dataset_toml.get("general") or {}, dataset_toml.get("datasets") or [{}]
    first = sets[0] if isinstance(sets, list) and sets and isinstance(sets[0], dict) else {}
    resolution = _pair(first.get("resolution")) or _pair(general.get("resolution"))
    return _described(resolution, resolution, run, f"its {dataset_name}") if resolution else None


def _described(
    size: tuple[int, int], resolution: tuple[int, int] | None, run: str, source: str
) -> tuple[tuple[int, int], str]:
    what = f"the resolution {run} trained at" if size == resolution else f"the [sample] size {run} used"
    return size, f"{size[0]}×{size[1]}, {what} ({source})"


def _model_files(loaded: LoadedSpec) -> dict[str, str]:
    """The [model] files (base, vae, clip_l, t5xxl, ae) resolved as training resolves them."""
    refs = {r.field: r for r in resolve_model_refs(loaded.spec.model, loaded.layout.root)}
    base = refs["base"]
    if base.value is None:
        if base.problem:
            raise KohyaWrapError(base.problem.where + ": " + base.problem.what, base.problem.fix)
        raise KohyaWrapError("model.base: cannot be resolved")
    return {field: ref.value for field, ref in refs.items() if ref.value}


def _generator(loaded: LoadedSpec) -> tuple[Generator, str]:
    spec, sd, settings = loaded.spec, loaded.sd_scripts, loaded.settings
    refs = _model_files(loaded)
    base = refs["base"]
    extra = []
    if refs.get("vae"):
        extra += ["--vae", refs["vae"]]
    if settings.tokenizer_cache_dir is not None:
        extra += ["--tokenizer_cache_dir", str(settings.tokenizer_cache_dir)]
    clip_skip = spec.training.clip_skip
    if clip_skip:
        extra += ["--clip_skip", str(clip_skip)]
    if spec.model.v_parameterization:
        extra.append("--v_parameterization")
    # in the precision the LoRA trained in: an SDXL UNet in fp32 renders 5-10x slower (and on a GPU needs
    # twice the memory) than in the bf16 or fp16 it trained in
    precision = {"bf16": "--bf16", "fp16": "--fp16"}.get(settings.mixed_precision)
    if precision:
        extra.append(precision)
    return Generator(sd.python, sd.root, base, settings.family, settings.network_module, extra), base


def _minimal_generator(loaded: LoadedSpec, family: Family, inference: Inference) -> tuple[MinimalGenerator, str]:
    """The <family>_minimal_inference.py call, its model files taken from the train args kohya-wrap renders
    (sd-scripts' own option names, paths made absolute): what the LoRA was trained with."""
    models = _model_files(loaded)
    args = render_configs(loaded.spec, loaded.settings, loaded.layout, loaded.schema, models).train_args
    sd = loaded.sd_scripts
    generator = minimal_generator(
        sd.python, sd.root, family, inference.style, models["base"], args, loaded.settings.mixed_precision
    )
    return generator, models["base"]


def renderer(loaded: LoadedSpec) -> Inference:
    """The script that renders this project's grid cells, and how; refused where sd-scripts has none."""
    family = family_named(loaded.settings.family)
    inference = family.inference if family is not None else None
    if family is None or inference is None:
        rendered = ", ".join(name for name, known in FAMILIES.items() if known.inference)
        raise KohyaWrapError(
            f"grid: sd-scripts has no script that renders {loaded.settings.family} LoRAs",
            f"grids render {rendered} LoRAs, and those of a family whose <family>_minimal_inference.py takes "
            "HunyuanImage's arguments",
        )
    return inference


def make_grid(
    loaded: LoadedSpec,
    options: GridOptions,
    progress: Progress = no_progress,
    note: Callable[[str], None] | None = None,
) -> GridResult:
    """Render what the cache lacks and write the grid pages, the cells and grid.json into
    runs/<id>/grids/<time>/ (or grids/<time>/ without a run). Without `options.size` the cells render at
    the size the run trained with (sampled at), not the spec's current one; `note` hears which defaults
    came from the run and, before rendering starts, how many cells there are to render."""
    spec, layout, sd, settings = loaded.spec, loaded.layout, loaded.sd_scripts, loaded.settings
    inference = renderer(loaded)
    family = family_named(settings.family)
    assert family is not None  # renderer
    if not sd.usable or (not (sd.root / inference.script).is_file() and family.known):
        raise KohyaWrapError(
            f"grid needs sd-scripts' {inference.script} and its Python (looked in {sd.root})",
            "run `kohya-wrap vendor install`, or `kohya-wrap vendor use PATH`",
        )
    if not (sd.root / inference.script).is_file():
        raise KohyaWrapError(
            f"grid: this sd-scripts has no {inference.script}, so it renders no {family.name} images "
            f"(looked in {sd.root})",
            f"kohya-wrap renders {family.name} grids with {inference.script} where sd-scripts ships it: "
            "`kohya-wrap vendor upgrade` to a release that has it",
        )
    minimal = inference.style != "gen_img"
    if minimal and options.samplers:
        raise KohyaWrapError(
            f"--sampler: {inference.script} has no sampler choice (it samples with the model's own flow-matching "
            "schedule), so a grid of samplers cannot be rendered",
            "drop --sampler",
        )
    if minimal and options.batch_size != 1:
        raise KohyaWrapError(
            f"--batch-size {options.batch_size}: {inference.script} renders one image per process",
            "drop --batch-size",
        )
    require_trusted(sd, layout.root, "render a grid")

    run_dir, record = _run_outputs(layout.runs_dir, options.run_id)
    outputs = [output.path for output in record.outputs] if record is not None else None
    chosen = select_checkpoints(
        list_checkpoints(layout.model_dir, settings.name, outputs), settings.name, options.checkpoints
    )
    if not chosen:
        raise KohyaWrapError(
            f"{layout.model_dir}: no saved {settings.name}*.safetensors checkpoints",
            "train first (`kohya-wrap run`), with save_every_n_epochs or save_every_n_steps "
            "for more than the final one",
        )
    sample = spec.sample
    prompts = options.prompts or default_prompts(loaded, None)
    if not prompts:
        raise KohyaWrapError(
            "grid: no prompts", 'pass --prompts "…" (or a file), or add prompts to the spec\'s [sample] section'
        )
    from_run: dict[str, str] = {}
    width, height = options.size or settings.sample_size
    if options.size is None and run_dir is not None and record is not None:
        found = run_sample_size(run_dir, record, layout.dataset_config.name)
        if found:
            (width, height), from_run["size"] = found
    if note is not None:
        for name, value in from_run.items():
            now = "{}×{}".format(*settings.sample_size)
            differs = f"; the spec now says {now}" if name == "size" and now != f"{width}×{height}" else ""
            note(f"{name}: {value}{differs} (--{name} to choose)")
    request = GridRequest(
        checkpoints=chosen,
        weights=options.weights or [1.0],
        prompts=prompts,
        seeds=options.seeds or [sample.seed if sample.seed is not None else 1],
        cfgs=options.cfgs or [sample.cfg],
        steps=options.steps or [sample.steps],
        samplers=[SCRIPT_SAMPLER] if minimal else options.samplers or [sample.sampler],
        width=width,
        height=height,
    )
    x, y, pages = axes_layout(request, options.x, options.y)

    generator: Generator | MinimalGenerator
    if minimal:
        generator, base = _minimal_generator(loaded, family, inference)
        shared = generator.shared
    else:
        generator, base = _generator(loaded)
        shared = " ".join([generator.network_module, *generator.extra])
    # what renders the same cell differently is part of its cache key: the base model, the sd-scripts commit,
    # and the options every cell shares (VAE, clip skip, v-parameterization, precision, the LoRA module; the
    # minimal scripts' model files)
    keys = cells_by_key(request, f"{base_identity(base, loaded.schema.commit)}|{shared}")
    cache = layout.root / ".kohya-wrap" / "grid-cache"
    todo: dict[str, Cell] = {}
    for cell, key in keys.items():
        if not (cache / f"{key}.png").is_file():
            todo.setdefault(key, cell)
    unique = len(set(keys.values()))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    parent = RunFiles(run_dir).grids if run_dir else (layout.root / "grids")
    folder = parent / free_name(parent, stamp)
    folder.mkdir(parents=True)
    networks = [c for c in chosen if any(cell.checkpoint == c for cell in todo.values())]
    outcome = RenderOutcome()
    if note is not None:
        cached = f", {unique - len(todo)} from the cache" if unique > len(todo) else ""
        note(
            f"grid: {unique} cell(s) at {width}×{height}: {len(todo)} to render{cached}"
            + (f" ({inference.script} loads the models for each cell)" if minimal and todo else "")
            + (" (gen_img.py loads the base model first)" if todo and not minimal else "")
        )
    if todo:
        with progress(settings.name, len(todo)) as bar:
            if isinstance(generator, MinimalGenerator):
                outcome = render_minimal_cells(
                    generator, todo, cache, folder / ".work", folder / "gen.log", lambda n: bar.advance(count=n)
                )
            else:
                outcome = render_cells(
                    generator,
                    todo,
                    networks,
                    cache,
                    folder / ".work",
                    options.batch_size,
                    folder / "gen.log",
                    on_progress=lambda n: bar.advance(count=n),
                )
    clear_work(folder / ".work")
    title = f"{settings.name} · run {run_dir.name if run_dir else '—'} · {width}×{height}"
    meta = {
        "project": settings.name,
        "run": run_dir.name if run_dir else None,
        "created": stamp,
        "base": base,
        "sd_scripts_commit": loaded.schema.commit,
        "renderer": inference.script,
        "rendered": outcome.rendered,
        "cached": unique - len(todo),
        "failed": len(outcome.failed),
        "size": [width, height],
        "from_run": from_run,
    }
    data = write_grid(folder, request, keys, cache, x, y, pages, title, outcome.failed, meta)
    return GridResult(
        folder, data, unique, outcome.rendered, unique - len(todo), outcome.failed, outcome.interrupted, pages, from_run
    )
