"""`kohya-wrap caption`: BLIP sentences or WD14 tags for every training image without a caption."""

from __future__ import annotations

import time
from pathlib import Path

import click

from kohya_wrap.cli import cli, project_dir_argument, set_option
from kohya_wrap.cli.output import echo, echo_json
from kohya_wrap.errors import ExitCode, KohyaWrapError


@cli.command()
@project_dir_argument
@click.option("--model", "kind", type=click.Choice(["blip", "wd14"]), required=True, help="blip: a sentence per image; wd14: booru tags.")
@click.option("--model-path", help="Local model folder or Hugging Face repo id (default: $KOHYA_WRAP_BLIP_MODEL / $KOHYA_WRAP_WD14_MODEL, else Salesforce/blip-image-captioning-large / SmilingWolf/wd-swinv2-tagger-v3).")
@click.option("--concept", "concept_name", help="Only this concept (default: every training concept).")
@click.option("--batch-size", type=click.IntRange(1, 1024), default=8, show_default=True)
@click.option("--prefix", help="First item of every caption (default: the concept's trigger token).")
@click.option("--no-prefix", is_flag=True, help="No prefix at all.")
@click.option("--suffix", default="", help="Last item of every caption.")
@click.option("--overwrite", is_flag=True, help="Replace existing captions (default: skip images that have one).")
@click.option("--append", is_flag=True, help="Merge into existing captions: new items after the old ones, none twice.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--beams", type=click.IntRange(1, 16), default=3, show_default=True, help="blip: beam search width.")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), help="blip: nucleus sampling instead of beam search.")
@click.option("--min-length", type=click.IntRange(0, 500), default=5, show_default=True, help="blip: tokens.")
@click.option("--max-length", type=click.IntRange(1, 500), default=75, show_default=True, help="blip: tokens.")
@click.option("--general-threshold", type=click.FloatRange(0, 1), default=0.35, show_default=True, help="wd14.")
@click.option("--character-threshold", type=click.FloatRange(0, 1), default=0.85, show_default=True, help="wd14.")
@click.option("--exclude", default="", help="wd14: comma-separated tags never written.")
@click.option("--keep-underscores", is_flag=True, help="wd14: blue_eyes stays blue_eyes (default: blue eyes).")
@click.option("--rating", is_flag=True, help="wd14: add the most likely rating tag (off by default).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@set_option
def caption(directory: Path, kind: str, model_path: str | None, concept_name: str | None, batch_size: int, prefix: str | None,
            no_prefix: bool, suffix: str, overwrite: bool, append: bool, device: str, beams: int, top_p: float | None,
            min_length: int, max_length: int, general_threshold: float, character_threshold: float, exclude: str,
            keep_underscores: bool, rating: bool, as_json: bool, overrides: tuple[str, ...]) -> int:
    """Caption training images with BLIP or a WD14 tagger: one sidecar per image (the project's
    caption_extension), trigger token first. Images that already have a caption are skipped, so an
    interrupted run continues where it stopped."""
    from kohya_wrap.caption import CaptionJob, locate_model, model_reference
    from kohya_wrap.cli.progress import ImageProgress
    from kohya_wrap.dataset.scan import scan_folder
    from kohya_wrap.sdscripts.render import concept_dir
    from kohya_wrap.spec.load import load_project

    if overwrite and append:
        raise KohyaWrapError("--overwrite and --append: choose one", "--overwrite replaces captions, --append adds to them")
    if min_length > max_length:
        raise KohyaWrapError(f"--min-length {min_length} is above --max-length {max_length}", "lower --min-length or raise --max-length")
    loaded = load_project(directory, overrides)
    layout = loaded.layout
    concepts = [c for c in loaded.spec.concepts if (c.label == concept_name if concept_name else not c.is_reg)]
    if not concepts:
        labels = ", ".join(c.label for c in loaded.spec.concepts)
        raise KohyaWrapError(f"--concept {concept_name}: no such concept in {layout.spec_file.name}", f"use one of: {labels}")
    plan = []
    for concept in concepts:
        folder = concept_dir(layout, concept)
        scan = scan_folder(folder, read_sizes=False)
        if not scan.exists:
            raise KohyaWrapError(f"{folder}: concept {concept.label!r} has no image folder yet", "run `kohya-wrap prep` (or `init --images`) first")
        extension = concept.subset_options().get("caption_extension", loaded.spec.dataset.caption_extension)
        lead = "" if no_prefix else prefix if prefix is not None else concept.token
        jobs, skipped, unreadable = [], 0, []
        for image in scan.images:
            target = Path(image.stem_path + extension)
            existing = None
            if target.exists():
                if not (overwrite or append):
                    skipped += 1
                    continue
                if append:
                    try:
                        existing = target.read_bytes().decode("utf-8").lstrip("\ufeff")
                    except UnicodeDecodeError:
                        unreadable.append(target)
                        continue
            jobs.append(CaptionJob(image.path, target, lead, suffix, existing))
        plan.append((concept, folder, jobs, skipped, unreadable))

    results = []
    captioner = None
    total = sum(len(jobs) for _, _, jobs, _, _ in plan)
    reference = model_reference(kind, model_path)
    if total:
        folder_of_model = locate_model(kind, reference)
        captioner = _load(kind, folder_of_model, device, beams, top_p, min_length, max_length, general_threshold,
                          character_threshold, exclude, keep_underscores, rating)
    from kohya_wrap.caption import run_captioner

    for concept, folder, jobs, skipped, unreadable in plan:
        started = time.monotonic()
        report = None
        if jobs:
            with ImageProgress.for_output("caption", concept.label, len(jobs), as_json) as progress:
                report = run_captioner(captioner, jobs, batch_size, on_done=lambda n: progress.advance(count=n))
        seconds = time.monotonic() - started
        results.append({
            "label": concept.label, "folder": str(folder), "written": len(report.written) if report else 0,
            "skipped": skipped, "seconds": round(seconds, 3),
            "failed": [{"path": str(p), "reason": r} for p, r in (report.failed if report else [])]
                      + [{"path": str(p), "reason": "existing caption is not UTF-8, left untouched"} for p in unreadable],
        })
    if as_json:
        echo_json({"model": reference, "kind": kind, "concepts": results})
        return ExitCode.OK
    for entry in results:
        rate = f" ({entry['written'] / entry['seconds']:.1f} img/s)" if entry["written"] and entry["seconds"] else ""
        echo(f"{entry['label']}: {entry['written']} caption(s) written{rate}, {entry['skipped']} already captioned"
             + (f", {len(entry['failed'])} failed" if entry["failed"] else ""))
        for failure in entry["failed"]:
            echo(f"  {Path(failure['path']).name}: {failure['reason']}", style="yellow")
    if total:
        echo(f"model: {reference}")
    return ExitCode.OK


def _load(kind: str, folder: Path, device: str, beams: int, top_p: float | None, min_length: int, max_length: int,
          general_threshold: float, character_threshold: float, exclude: str, keep_underscores: bool, rating: bool):
    try:
        if kind == "blip":
            from kohya_wrap.caption import BlipCaptioner, BlipOptions

            return BlipCaptioner(folder, BlipOptions(beams, top_p, min_length, max_length, device))
        from kohya_wrap.caption import TaggerOptions, Wd14Tagger

        excluded = frozenset(t.strip() for t in exclude.split(",") if t.strip())
        return Wd14Tagger(folder, TaggerOptions(general_threshold, character_threshold, excluded, keep_underscores, rating, device))
    except ImportError as exc:
        needs = "torch and transformers" if kind == "blip" else "onnxruntime and numpy"
        raise KohyaWrapError(f"caption --model {kind} needs {needs} ({exc.name or exc} is not installed)",
                             "pip install 'kohya-wrap[caption]'") from None
