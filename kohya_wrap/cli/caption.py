"""`kohya-wrap caption`: BLIP sentences or WD14 tags for every training image without a caption."""

from __future__ import annotations

from pathlib import Path

import click

from kohya_wrap.cli.base import project_dir_argument, set_option
from kohya_wrap.cli.output import echo, echo_json
from kohya_wrap.errors import ExitCode, KohyaWrapError


@click.command()
@project_dir_argument
@click.option(
    "--model",
    "kind",
    type=click.Choice(["blip", "wd14"]),
    required=True,
    help="blip: a sentence per image; wd14: booru tags.",
)
@click.option(
    "--model-path",
    help="Local model folder or Hugging Face repo id (default: $KOHYA_WRAP_BLIP_MODEL / $KOHYA_WRAP_WD14_MODEL, else "
    "Salesforce/blip-image-captioning-large / SmilingWolf/wd-swinv2-tagger-v3).",
)
@click.option("--concept", "concept_name", help="Only this concept (default: every training concept).")
@click.option("--batch-size", type=click.IntRange(1, 1024), default=8, show_default=True)
@click.option("--prefix", help="First item of every caption (default: the concept's trigger token).")
@click.option("--no-prefix", is_flag=True, help="No prefix at all.")
@click.option("--suffix", default="", help="Last item of every caption.")
@click.option("--overwrite", is_flag=True, help="Replace existing captions (default: skip images that have one).")
@click.option("--append", is_flag=True, help="Merge into existing captions: new items after the old ones, none twice.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--beams", type=click.IntRange(1, 16), default=3, show_default=True, help="blip: beam search width.")
@click.option(
    "--top-p", type=click.FloatRange(0, 1, min_open=True), help="blip: nucleus sampling instead of beam search."
)
@click.option("--min-length", type=click.IntRange(0, 500), default=5, show_default=True, help="blip: tokens.")
@click.option("--max-length", type=click.IntRange(1, 500), default=75, show_default=True, help="blip: tokens.")
@click.option("--general-threshold", type=click.FloatRange(0, 1), default=0.35, show_default=True, help="wd14.")
@click.option("--character-threshold", type=click.FloatRange(0, 1), default=0.85, show_default=True, help="wd14.")
@click.option("--exclude", default="", help="wd14: comma-separated tags never written.")
@click.option("--keep-underscores", is_flag=True, help="wd14: blue_eyes stays blue_eyes (default: blue eyes).")
@click.option("--rating", is_flag=True, help="wd14: add the most likely rating tag (off by default).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@set_option
def caption(
    directory: Path,
    kind: str,
    model_path: str | None,
    concept_name: str | None,
    batch_size: int,
    prefix: str | None,
    no_prefix: bool,
    suffix: str,
    overwrite: bool,
    append: bool,
    device: str,
    beams: int,
    top_p: float | None,
    min_length: int,
    max_length: int,
    general_threshold: float,
    character_threshold: float,
    exclude: str,
    keep_underscores: bool,
    rating: bool,
    as_json: bool,
    overrides: tuple[str, ...],
) -> int:
    """Caption training images with BLIP or a WD14 tagger: one sidecar per image (the project's
    caption_extension), trigger token first. Images that already have a caption are skipped, so an
    interrupted run continues where it stopped."""
    from kohya_wrap.caption import (
        BlipOptions,
        JobOptions,
        TaggerOptions,
        caption_project,
        load_captioner,
        locate_model,
        model_reference,
        plan_jobs,
    )
    from kohya_wrap.cli.progress import ImageProgress
    from kohya_wrap.spec.load import load_project

    if min_length > max_length:
        raise KohyaWrapError(
            f"--min-length {min_length} is above --max-length {max_length}", "lower --min-length or raise --max-length"
        )
    loaded = load_project(directory, overrides)
    plan = plan_jobs(loaded, JobOptions(concept_name, prefix, no_prefix, suffix, overwrite, append))
    total = sum(len(c.jobs) for c in plan)
    reference = model_reference(kind, model_path)
    captioner = None
    if total:
        excluded = frozenset(t.strip() for t in exclude.split(",") if t.strip())
        captioner = load_captioner(
            kind,
            locate_model(kind, reference),
            BlipOptions(beams, top_p, min_length, max_length, device),
            TaggerOptions(general_threshold, character_threshold, excluded, keep_underscores, rating, device),
        )
    done = caption_project(
        loaded,
        plan,
        captioner,
        batch_size,
        progress=lambda label, count: ImageProgress.for_output("caption", label, count, as_json),
    )
    results = [
        {
            "label": c.jobs.label,
            "folder": str(c.jobs.folder),
            "written": len(c.report.written),
            "skipped": c.jobs.skipped,
            "seconds": round(c.seconds, 3),
            "failed": [{"path": str(p), "reason": r} for p, r in c.report.failed]
            + [{"path": str(p), "reason": "existing caption is not UTF-8, left untouched"} for p in c.jobs.unreadable],
        }
        for c in done
    ]
    if as_json:
        echo_json({"model": reference, "kind": kind, "concepts": results})
        return ExitCode.OK
    for entry in results:
        rate = f" ({entry['written'] / entry['seconds']:.1f} img/s)" if entry["written"] and entry["seconds"] else ""
        echo(
            f"{entry['label']}: {entry['written']} caption(s) written{rate}, {entry['skipped']} already captioned"
            + (f", {len(entry['failed'])} failed" if entry["failed"] else "")
        )
        for failure in entry["failed"]:
            echo(f"  {Path(failure['path']).name}: {failure['reason']}", style="yellow")
    if total:
        echo(f"model: {reference}")
    return ExitCode.OK
