"""`kohya-wrap compare`: a sweep's trials (or any runs) side by side on one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

import click

from kohya_wrap.cli.base import project_dir_argument
from kohya_wrap.cli.grid import prompt_options
from kohya_wrap.cli.output import echo, echo_json
from kohya_wrap.errors import ExitCode, KohyaWrapError


@click.command()
@project_dir_argument
@click.argument("run_ids", nargs=-1, metavar="[RUN]...")
@click.option("--sweep", "sweep_id", metavar="ID", help="This sweep (default: the latest one; a folder under sweeps/).")
@click.option("--weights", help="LoRA multipliers of the image grid, e.g. 0,0.5,1 (the default; 0 = the base model).")
@prompt_options
@click.option("--seed", type=int, help="The seed of every image (default: [sample] seed, else 1).")
@click.option("--no-images", is_flag=True, help="Skip the image grid (the page says so).")
@click.option("--json", "as_json", is_flag=True, help="Print what the page shows as one JSON object.")
def compare(
    directory: Path,
    run_ids: tuple[str, ...],
    sweep_id: str | None,
    weights: str | None,
    prompt_args: tuple[str, ...],
    negative: str | None,
    seed: int | None,
    no_images: bool,
    as_json: bool,
) -> int:
    """Compare runs on one HTML page: loss curves overlaid, the settings that differ, each run's verdict,
    time and s/step, and a grid of runs × LoRA weights (× prompts) rendered from each run's final LoRA with
    the same seed. Default: the latest sweep's trials (sweeps/<id>/compare.html); RUN ids compare those runs
    instead (runs/compare-<time>.html). Images render through `grid`, so cells rendered before come from its
    cache."""
    from kohya_wrap.cli.grid import numbers_option, prompts_option
    from kohya_wrap.cli.progress import ImageProgress
    from kohya_wrap.report import size_text
    from kohya_wrap.report.compare import (
        DEFAULT_WEIGHTS,
        Images,
        compare_data,
        render_images,
        select_runs,
        select_sweep,
        write_compare,
    )
    from kohya_wrap.spec.load import find_spec_file

    chosen_weights = numbers_option("--weights", weights, float) or list(
        DEFAULT_WEIGHTS
    )  # every option checked before any work
    chosen_prompts = prompts_option(prompt_args, negative)
    root = find_spec_file(directory).parent
    if run_ids and sweep_id:
        raise KohyaWrapError("--sweep and RUN ids both choose what to compare", "give one of them")
    selection = select_runs(root, run_ids) if run_ids else select_sweep(root, sweep_id)
    if no_images:
        images = Images(skipped=True)
    else:
        images = render_images(
            selection,
            chosen_weights,
            chosen_prompts or None,
            seed,
            negative,
            progress=lambda label, total: ImageProgress.for_output(
                "compare",
                label,
                total,
                as_json,
                waiting="waiting for the first cell (the model loads first)",
                unit="cell",
            ),
            note=None if as_json else echo,
        )
    path = write_compare(selection, images)
    size = path.stat().st_size
    problems = dict(images.problems)
    if images.note:
        problems = {"images": images.note}
    failed = images.failed or (not images.skipped and not images.cells and bool(problems))
    if as_json:
        echo_json({"page": str(path), "bytes": size, **compare_data(selection, images)})
        return ExitCode.FAILED if failed else ExitCode.OK
    for label, problem in problems.items():
        echo(f"{label}: no images — {problem}", style="yellow")
    for cell in images.black:
        echo(f"black: {cell} — all black: the model's output had NaNs (see that run's grid gen.log)", style="yellow")
    if images.failed:
        echo(f"{images.failed} image(s) failed to render: see the gen.log of the grid folders", style="red")
    echo(f"compare: {path} ({size_text(size)})")
    return ExitCode.FAILED if failed else ExitCode.OK
