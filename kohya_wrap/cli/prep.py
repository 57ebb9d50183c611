"""`kohya-wrap prep`: each concept's source photos → its kohya folder, one consistent size."""

from __future__ import annotations

from pathlib import Path

import click

from kohya_wrap.cli.base import project_dir_argument, set_option
from kohya_wrap.cli.output import echo, echo_json
from kohya_wrap.errors import ExitCode


@click.command()
@project_dir_argument
@click.option("--concept", "concept_name", help="Only this concept (its token, or class for regularization concepts).")
@click.option(
    "--source",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Read from this folder instead of the concept's source (needs --concept when there are several).",
)
@click.option("--mode", type=click.Choice(["crop", "fit", "bucket", "none"]), help="Override [prep] mode.")
@click.option("--format", "out_format", type=click.Choice(["png", "jpg", "webp"]), help="Override [prep] format.")
@click.option("--focus", type=click.Choice(["center", "entropy"]), help="Override [prep] focus (crop mode).")
@click.option(
    "--engine",
    type=click.Choice(["auto", "vips", "pillow"]),
    help="Override [prep] engine (auto: libvips for JPEGs when installed).",
)
@click.option("--workers", type=click.IntRange(1, 256), help="Threads (default: every core).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@set_option
def prep(
    directory: Path,
    concept_name: str | None,
    source: Path | None,
    mode: str | None,
    out_format: str | None,
    focus: str | None,
    engine: str | None,
    workers: int | None,
    as_json: bool,
    overrides: tuple[str, ...],
) -> int:
    """Prepare training images: orientation, colour, alpha, one size (crop/fit/bucket), duplicates and
    unusable files rejected with a reason. Sources are never modified; re-running skips unchanged ones."""
    from kohya_wrap.cli.progress import ImageProgress
    from kohya_wrap.dataset.prep import MANIFEST, PrepOptions, prep_project
    from kohya_wrap.spec.load import load_project

    loaded = load_project(directory, overrides)
    layout = loaded.layout
    reports = prep_project(
        loaded,
        PrepOptions(concept_name, source, mode, out_format, focus, engine, workers),
        progress=lambda label, total: ImageProgress.for_output("prep", label, total, as_json),
    )
    if as_json:
        echo_json({"concepts": [report_dict(r) for r in reports]})
        return ExitCode.OK
    print_reports(reports, layout.root)
    echo(f"manifest: {layout.root / MANIFEST}")
    return ExitCode.OK


def report_dict(r) -> dict:
    """One prepared concept (dataset.prep.ConceptPrep) for --json."""
    return {
        "label": r.label,
        "source": str(r.source),
        "target": str(r.target),
        "written": r.fresh,
        "unchanged": r.skipped,
        "captions": r.captions,
        "kept": sum(x.status == "ok" for x in r.results),
        "rejected": [{"source": x.source, "reason": x.reason} for x in r.rejected],
        "removed": [str(p) for p in r.removed],
        "orphans": [str(p) for p in r.orphans],
        "source_saved": r.source_saved,
        "excluded": str(r.excluded) if r.excluded else None,
        "seconds": round(r.seconds, 3),
    }


def print_reports(reports, root: Path) -> None:
    """What prep did per concept: kept, written, rejected (with why), copies replaced, sources gone."""
    for r in reports:
        kept = sum(x.status == "ok" for x in r.results)
        rate = f" ({r.fresh / r.seconds:.1f} img/s)" if r.fresh and r.seconds else ""
        echo(
            f"{r.label}: {kept} image(s) in {r.target.relative_to(root)} — {r.fresh} written{rate}, "
            f"{r.skipped} unchanged, {len(r.rejected)} rejected, {r.captions} caption(s) copied"
        )
        if r.excluded:
            echo(f"  left out {r.excluded}: the project is inside the source folder, and its images are not sources")
        for x in r.rejected:
            echo(f"  rejected {Path(x.source).relative_to(r.source)}: {x.reason}", style="yellow")
        if r.removed:
            names = ", ".join(p.name for p in r.removed[:5]) + (
                f" and {len(r.removed) - 5} more" if len(r.removed) > 5 else ""
            )
            echo(f"  replaced {len(r.removed)} earlier copy(ies) of these sources: {names}")
        if r.orphans:
            names = ", ".join(p.name for p in r.orphans[:5]) + (
                f" and {len(r.orphans) - 5} more" if len(r.orphans) > 5 else ""
            )
            echo(
                f"  kept {len(r.orphans)} image(s) prepared from sources no longer in {r.source}: {names} — "
                "delete them if they should not train",
                style="yellow",
            )
        if r.source_saved:
            echo(f"  source = {r.source} saved in the spec (the next `kohya-wrap prep` reads it from there)")
