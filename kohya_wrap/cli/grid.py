"""`kohya-wrap grid`: saved checkpoints × LoRA weights (× prompts, seeds, cfg, steps, samplers) as
labelled image grids, rendered by the vendored sd-scripts."""

from __future__ import annotations

from pathlib import Path

import click

from kohya_wrap.cli.base import project_dir_argument, set_option
from kohya_wrap.cli.output import echo, echo_json
from kohya_wrap.errors import ExitCode, KohyaWrapError


def black_cells_note(data: dict) -> None:
    """The cells that came out black all over: NaNs in gen_img.py's output, not a picture."""
    black = [entry for entry in data["cells"] if entry.get("black")]
    for entry in black:
        echo(
            f"  black: {entry['checkpoint_label']}, weight {entry['weight']:g}, seed {entry['seed']} — the image "
            'is all black: the model\'s output had NaNs (gen.log: "invalid value encountered in cast")',
            style="yellow",
        )
    if black:
        echo(
            f"{len(black)} black cell(s): a LoRA weight, cfg or precision the model cannot take — try another weight "
            "or seed; in fp16, training and rendering in bf16 or fp32",
            style="yellow",
        )


def prompt_options(func):
    """--prompts and --negative, as `grid` and `compare` take them (read by prompts_option)."""
    func = click.option("--negative", help="Negative prompt (default: [sample] negative).")(func)
    return click.option(
        "--prompts",
        "prompt_args",
        multiple=True,
        help="A prompt, or a file with one per line; repeatable. Default: the spec's [sample] prompts.",
    )(func)


def numbers_option(option: str, text: str | None, kind):
    """A comma-separated option (`--weights 0,0.5,1`) as distinct numbers; None when not given."""
    if text is None:
        return None
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise KohyaWrapError(
            f"{option} {text}: not a comma-separated list of {'integers' if kind is int else 'numbers'}",
            f"e.g. {option} 1,2,3",
        ) from None
    if not values:
        raise KohyaWrapError(f"{option}: no values", f"e.g. {option} 1,2")
    return list(dict.fromkeys(values))


@click.command()
@project_dir_argument
@click.option(
    "--run", "run_id", help="The run whose checkpoints to use (default: the latest run; without runs, model/)."
)
@click.option(
    "--checkpoints",
    default="all",
    show_default=True,
    help="all, last, or a comma list of file names / labels (step 12, epoch 2, final).",
)
@click.option("--weights", help="LoRA multipliers, e.g. 0,0.5,1 (0 = the base model, as a control). Default: 1.")
@prompt_options
@click.option("--seeds", help="e.g. 1,2,3 (default: [sample] seed).")
@click.option("--cfg", help="e.g. 5,7 (default: [sample] cfg).")
@click.option("--steps", help="e.g. 20,30 (default: [sample] steps).")
@click.option(
    "--sampler",
    "samplers",
    help="e.g. euler_a,ddim (default: [sample] sampler). SD 1.x/2.x/SDXL only: the other families' scripts have none.",
)
@click.option(
    "--size",
    help="WxH of each cell (default: the size the run trained with — its [sample] width/height, else its "
    "resolution; without a run, the spec's).",
)
@click.option(
    "--x", "x_axis", help="Axis across: checkpoint, weight, prompt, seed, cfg, steps or sampler (default: weight)."
)
@click.option("--y", "y_axis", help="Axis down (default: checkpoint).")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="gen_img.py batch size (SD 1.x/2.x/SDXL).",
)
@click.option("--json", "as_json", is_flag=True, help="Print grid.json's summary as one JSON object.")
@set_option
def grid(
    directory: Path,
    run_id: str | None,
    checkpoints: str,
    weights: str | None,
    prompt_args: tuple[str, ...],
    negative: str | None,
    seeds: str | None,
    cfg: str | None,
    steps: str | None,
    samplers: str | None,
    size: str | None,
    x_axis: str | None,
    y_axis: str | None,
    batch_size: int,
    as_json: bool,
    overrides: tuple[str, ...],
) -> int:
    """Render a labelled X/Y grid of the saved LoRA checkpoints × weights (and prompts, seeds, cfg, steps,
    samplers; axes beyond two make one grid per value) with the project's own model and sd-scripts.
    Cells already rendered with the same settings come from a cache."""
    from kohya_wrap.cli.progress import ImageProgress
    from kohya_wrap.grid import GridOptions, default_prompts, make_grid, renderer
    from kohya_wrap.spec.load import load_project

    loaded = load_project(directory, overrides)
    script = renderer(loaded).script
    chosen_prompts = prompts_option(prompt_args, negative)
    if not chosen_prompts and not loaded.spec.sample.prompts and not as_json:
        shown = ", ".join(f'"{p.text}"' for p in default_prompts(loaded, negative))
        echo(f"prompts: {shown}, each concept's trigger and class (--prompts or the spec's [sample] prompts to choose)")
    options = GridOptions(
        run_id=run_id,
        checkpoints=checkpoints,
        weights=numbers_option("--weights", weights, float),
        prompts=chosen_prompts or default_prompts(loaded, negative),
        seeds=numbers_option("--seeds", seeds, int),
        cfgs=numbers_option("--cfg", cfg, float),
        steps=numbers_option("--steps", steps, int),
        samplers=[s.strip() for s in samplers.split(",") if s.strip()] if samplers else None,
        size=_size(size),
        x=x_axis,
        y=y_axis,
        batch_size=batch_size,
    )
    result = make_grid(
        loaded,
        options,
        progress=lambda label, total: ImageProgress.for_output(
            "grid",
            label,
            total,
            as_json,
            waiting=f"waiting for the first cell ({script} loads the model first)",
            unit="cell",
        ),
        note=None if as_json else echo,
    )
    folder, data = result.folder, result.data
    if result.interrupted:
        echo(
            f"interrupted: {result.rendered} cell(s) rendered and kept in the cache; the grid so far is in {folder}",
            style="yellow",
        )
        return ExitCode.INTERRUPTED  # said in full above: not the boundary's bare "interrupted" too
    if as_json:
        echo_json(
            {
                "folder": str(folder),
                **{k: data[k] for k in ("axes", "pages", "rendered", "cached", "failed", "black", "size", "from_run")},
                "cells": len(data["cells"]),
            }
        )
    else:
        echo(
            f"grid: {result.cells} cell(s) — {result.rendered} rendered, {result.cached} from the cache, "
            f"{len(result.failed)} failed"
        )
        for page in data["pages"]:
            echo(f"  {folder / page['image']}" + (f"  ({page['label']})" if result.pages_axes else ""))
        for entry in data["cells"]:
            if entry["status"] != "ok":
                echo(
                    f"  failed: {entry['checkpoint_label']}, weight {entry['weight']:g}, seed {entry['seed']}: "
                    f"{entry['error']}",
                    style="red",
                )
        black_cells_note(data)
        echo(f"cells and grid.json: {folder}")
    return ExitCode.FAILED if result.failed else ExitCode.OK


def prompts_option(prompt_args: tuple[str, ...], negative: str | None) -> list:
    """--prompts values: a prompt each, or a file of them (one per line, # comments); [] without any."""
    from kohya_wrap.grid import Prompt

    prompts = []
    for value in prompt_args:
        path = Path(value).expanduser()
        if path.is_file():
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError:
                raise KohyaWrapError(f"--prompts {path}: not UTF-8", "save the prompt file as UTF-8") from None
            prompts += [
                Prompt(line.strip(), negative or "")
                for line in lines
                if line.strip() and not line.lstrip().startswith("#")
            ]
        else:
            prompts.append(Prompt(value.strip(), negative or ""))
    return list(dict.fromkeys(prompts))


def _size(size: str | None) -> tuple[int, int] | None:
    if not size:
        return None
    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise KohyaWrapError(f"--size {size}: not WxH", "e.g. --size 512x768") from None
    if width % 8 or height % 8 or min(width, height) < 64:
        raise KohyaWrapError(f"--size {size}: sides must be multiples of 8 and at least 64", "e.g. --size 512x768")
    return width, height
