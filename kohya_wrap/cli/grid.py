"""`kohya-wrap grid`: saved checkpoints × LoRA weights (× prompts, seeds, cfg, steps, samplers) as
labelled image grids, rendered by the vendored sd-scripts."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click

from kohya_wrap.cli import cli, project_dir_argument, set_option
from kohya_wrap.cli.output import echo, echo_json
from kohya_wrap.errors import ExitCode, KohyaWrapError


def _numbers(option: str, text: str | None, kind):
    if text is None:
        return None
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise KohyaWrapError(f"{option} {text}: not a comma-separated list of {'integers' if kind is int else 'numbers'}", f"e.g. {option} 1,2,3") from None
    if not values:
        raise KohyaWrapError(f"{option}: no values", f"e.g. {option} 1,2")
    return list(dict.fromkeys(values))


@cli.command()
@project_dir_argument
@click.option("--run", "run_id", help="The run whose checkpoints to use (default: the latest run; without runs, model/).")
@click.option("--checkpoints", default="all", show_default=True, help="all, last, or a comma list of file names / labels (step 12, epoch 2, final).")
@click.option("--weights", help="LoRA multipliers, e.g. 0,0.5,1 (0 = the base model, as a control). Default: 1.")
@click.option("--prompts", "prompt_args", multiple=True, help="A prompt, or a file with one per line; repeatable. Default: [sample] prompts.")
@click.option("--negative", help="Negative prompt (default: [sample] negative).")
@click.option("--seeds", help="e.g. 1,2,3 (default: [sample] seed).")
@click.option("--cfg", help="e.g. 5,7 (default: [sample] cfg).")
@click.option("--steps", help="e.g. 20,30 (default: [sample] steps).")
@click.option("--sampler", "samplers", help="e.g. euler_a,ddim (default: [sample] sampler).")
@click.option("--size", help="WxH of each cell (default: [sample] width/height, else the training resolution).")
@click.option("--x", "x_axis", help="Axis across: checkpoint, weight, prompt, seed, cfg, steps or sampler (default: weight).")
@click.option("--y", "y_axis", help="Axis down (default: checkpoint).")
@click.option("--batch-size", type=click.IntRange(1, 64), default=1, show_default=True, help="gen_img.py batch size.")
@click.option("--json", "as_json", is_flag=True, help="Print grid.json's summary as one JSON object.")
@set_option
def grid(directory: Path, run_id: str | None, checkpoints: str, weights: str | None, prompt_args: tuple[str, ...], negative: str | None,
         seeds: str | None, cfg: str | None, steps: str | None, samplers: str | None, size: str | None, x_axis: str | None,
         y_axis: str | None, batch_size: int, as_json: bool, overrides: tuple[str, ...]) -> int:
    """Render a labelled X/Y grid of the saved LoRA checkpoints × weights (and prompts, seeds, cfg, steps,
    samplers; axes beyond two make one grid per value) with the project's own model and sd-scripts.
    Cells already rendered with the same settings come from a cache."""
    from kohya_wrap import grid as g
    from kohya_wrap.cli.progress import ImageProgress
    from kohya_wrap.sdscripts.modelref import resolve_model_refs
    from kohya_wrap.spec.load import load_project

    loaded = load_project(directory, overrides)
    spec, layout, sd = loaded.spec, loaded.layout, loaded.sd_scripts
    if spec.model.family not in ("sd15", "sd2", "sdxl"):
        raise KohyaWrapError(f"grid: family {spec.model.family} is not supported yet", "grids render SD 1.x, SD 2.x and SDXL LoRAs")
    if not (sd.usable and (sd.root / "gen_img.py").is_file()):
        raise KohyaWrapError(f"grid needs sd-scripts' gen_img.py and its Python (looked in {sd.root})", "run `kohya-wrap vendor install`, or `kohya-wrap vendor use PATH`")

    run_dir, outputs = _pick_run(layout.runs_dir, run_id)
    paths = g.list_checkpoints(layout.model_dir, spec.name, outputs)
    chosen = g.select_checkpoints(paths, spec.name, checkpoints)
    if not chosen:
        raise KohyaWrapError(f"{layout.model_dir}: no saved {spec.name}*.safetensors checkpoints", "train first (`kohya-wrap run`), with save_every_n_epochs or save_every_n_steps for more than the final one")

    sample = spec.sample
    prompts = _prompts(prompt_args, negative, sample)
    width, height = _size(size, sample, spec.dataset.size)
    request = g.GridRequest(
        checkpoints=chosen, weights=_numbers("--weights", weights, float) or [1.0], prompts=prompts,
        seeds=_numbers("--seeds", seeds, int) or [sample.seed if sample.seed is not None else 1],
        cfgs=_numbers("--cfg", cfg, float) or [sample.cfg], steps=_numbers("--steps", steps, int) or [sample.steps],
        samplers=[s.strip() for s in samplers.split(",") if s.strip()] if samplers else [sample.sampler], width=width, height=height)
    x, y, pages = g.layout(request, x_axis, y_axis)

    refs = {r.field: r for r in resolve_model_refs(spec.model, layout.root)}
    base = refs["base"]
    if base.value is None:
        raise KohyaWrapError(base.problem.where + ": " + base.problem.what, base.problem.fix) if base.problem else KohyaWrapError("model.base: cannot be resolved")
    extra = []
    if "vae" in refs and refs["vae"].value:
        extra += ["--vae", refs["vae"].value]
    training = spec.training.set_fields()
    if training.get("tokenizer_cache_dir"):
        extra += ["--tokenizer_cache_dir", str(layout.root / Path(str(training["tokenizer_cache_dir"])).expanduser())]
    if training.get("clip_skip"):
        extra += ["--clip_skip", str(training["clip_skip"])]
    if spec.model.v_parameterization:
        extra.append("--v_parameterization")
    generator = g.Generator(sd.python, sd.root, base.value, spec.model.family, extra)

    keys = g.cells_by_key(request, g.base_identity(base.value, loaded.schema.commit))
    cache = layout.root / ".kohya-wrap" / "grid-cache"
    todo = {}
    for cell, key in keys.items():
        if not (cache / f"{key}.png").is_file():
            todo.setdefault(key, cell)
    unique = len(set(keys.values()))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    parent = (run_dir / "grids") if run_dir else (layout.root / "grids")
    folder = parent / stamp
    suffix = 1
    while folder.exists():
        suffix += 1
        folder = parent / f"{stamp}-{suffix}"
    folder.mkdir(parents=True)
    networks = [c for c in chosen if any(cell.checkpoint == c for cell in todo.values())]
    outcome = g.RenderOutcome()
    if todo:
        with ImageProgress.for_output("grid", spec.name, len(todo), as_json) as progress:
            outcome = g.render_cells(generator, todo, networks, cache, folder / ".work", batch_size, folder / "gen.log",
                                     on_progress=lambda n: progress.advance(count=n), env=dict(os.environ))
    g.clear_work(folder / ".work")
    title = f"{spec.name} · run {run_dir.name if run_dir else '—'} · {width}×{height}"
    meta = {"project": spec.name, "run": run_dir.name if run_dir else None, "created": stamp, "base": base.value,
            "sd_scripts_commit": loaded.schema.commit, "rendered": outcome.rendered, "cached": unique - len(todo),
            "failed": len(outcome.failed)}
    data = g.write_grid(folder, request, keys, cache, x, y, pages, title, outcome.failed, meta)
    if outcome.interrupted:
        echo(f"interrupted: {outcome.rendered} cell(s) rendered and kept in the cache; the grid so far is in {folder}", style="yellow")
        raise KeyboardInterrupt
    if as_json:
        echo_json({"folder": str(folder), **{k: data[k] for k in ("axes", "pages", "rendered", "cached", "failed")},
                   "cells": len(data["cells"])})
    else:
        echo(f"grid: {unique} cell(s) — {outcome.rendered} rendered, {unique - len(todo)} from the cache, {len(outcome.failed)} failed")
        for page in data["pages"]:
            echo(f"  {folder / page['image']}" + (f"  ({page['label']})" if pages else ""))
        for entry in data["cells"]:
            if entry["status"] != "ok":
                echo(f"  failed: {entry['checkpoint_label']}, weight {entry['weight']:g}, seed {entry['seed']}: {entry['error']}", style="red")
        echo(f"cells and grid.json: {folder}")
    return ExitCode.FAILED if outcome.failed else ExitCode.OK


def _pick_run(runs_dir: Path, run_id: str | None) -> tuple[Path | None, list[str] | None]:
    """The run to take checkpoints (and their order) from: --run, else the newest with a record."""
    from kohya_wrap.paths import find_run

    folder = find_run(runs_dir, run_id)
    if folder is None:
        return None, None
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return folder, None
    return folder, [o["path"] for o in manifest.get("outputs", [])]


def _prompts(prompt_args: tuple[str, ...], negative: str | None, sample) -> list:
    from kohya_wrap.grid import Prompt

    prompts = []
    for value in prompt_args:
        path = Path(value).expanduser()
        if path.is_file():
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError:
                raise KohyaWrapError(f"--prompts {path}: not UTF-8", "save the prompt file as UTF-8") from None
            prompts += [Prompt(line.strip(), negative or "") for line in lines if line.strip() and not line.lstrip().startswith("#")]
        else:
            prompts.append(Prompt(value.strip(), negative or ""))
    if not prompt_args:
        for item in sample.prompts:
            text = item if isinstance(item, str) else item.text
            own = None if isinstance(item, str) else item.negative
            prompts.append(Prompt(text.strip(), (negative if negative is not None else own if own is not None else sample.negative) or ""))
    if not prompts:
        raise KohyaWrapError("grid: no prompts", "pass --prompts \"…\" (or a file), or add prompts to the spec's [sample] section")
    return list(dict.fromkeys(prompts))


def _size(size: str | None, sample, resolution) -> tuple[int, int]:
    if size:
        try:
            width, height = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise KohyaWrapError(f"--size {size}: not WxH", "e.g. --size 512x768") from None
        if width % 8 or height % 8 or min(width, height) < 64:
            raise KohyaWrapError(f"--size {size}: sides must be multiples of 8 and at least 64", "e.g. --size 512x768")
        return width, height
    default = resolution or (512, 512)
    return sample.width or default[0], sample.height or default[1]
