"""`kohya-wrap lint`: the training images and captions, concept by concept, with what is wrong in them."""

from __future__ import annotations

from pathlib import Path

import click

from kohya_wrap.cli.base import print_findings, project_dir_argument, set_option
from kohya_wrap.cli.output import echo, echo_json
from kohya_wrap.errors import ExitCode


def _dataset_finding(where: str) -> bool:
    """Findings about the images, captions and folders (not the model, sd-scripts or output folder)."""
    return where.startswith(("image", "reg", "dataset.")) or where == ""


@click.command()
@project_dir_argument
@click.option("--json", "as_json", is_flag=True, help="Print the findings and statistics as one JSON object.")
@set_option
def lint(directory: Path, as_json: bool, overrides: tuple[str, ...]) -> int:
    """Find problems in the training images and captions: too few images, upscaling, single-image
    buckets, near-duplicates, orphan or mis-named captions, missing trigger tokens, over-long captions."""
    from kohya_wrap.check import check_project
    from kohya_wrap.paths import relative
    from kohya_wrap.spec.load import load_project

    report = check_project(load_project(directory, overrides))
    root = report.loaded.layout.root
    concept_findings = {id(f) for c in report.lint for f in c.findings}
    folders = {relative(c.folder, root) for c in report.lint}
    # check's own findings about a concept folder go with that concept; the rest of the dataset's below
    general = [
        f
        for f in report.findings
        if id(f) not in concept_findings and f.where not in folders and _dataset_finding(f.where)
    ]
    by_folder = {
        folder: [f for f in report.findings if id(f) not in concept_findings and f.where == folder]
        for folder in folders
    }
    shown = general + [f for c in report.lint for f in c.findings] + [f for fs in by_folder.values() for f in fs]
    errors = [f for f in shown if f.severity == "error"]
    warnings = [f for f in shown if f.severity == "warning"]
    if as_json:
        concepts = []
        for c in report.lint:
            entry = c.as_dict(root)
            entry["findings"] = [f.as_dict() for f in by_folder.get(entry["folder"], [])] + entry["findings"]
            concepts.append(entry)
        echo_json(
            {
                "spec": str(report.loaded.layout.spec_file),
                "ok": not errors,
                "errors": len(errors),
                "warnings": len(warnings),
                "concepts": concepts,
                "findings": [f.as_dict() for f in general],
            }
        )
        return ExitCode.USAGE if errors else ExitCode.OK

    for c in report.lint:
        folder = relative(c.folder, root)
        kind = " (regularization)" if c.is_reg else ""
        formats = ", ".join(f"{n} {ext}" for ext, n in c.formats.items())
        sides = (
            f" · short side {c.short_sides[0]}–{c.short_sides[2]} px, median {c.short_sides[1]}"
            if c.short_sides
            else ""
        )
        echo(
            f"{c.label}{kind} · {folder}: {c.images} image(s)" + (f" ({formats})" if formats else "") + sides,
            style="bold",
        )
        if c.buckets:
            listing = " · ".join(
                f"{b[0]}×{b[1]} {n}" + (" (!)" if n == 1 and len(c.buckets) > 1 else "") for b, n in c.buckets
            )
            echo(
                f"  buckets ({len(c.buckets)}): {listing}"
                if report.settings.bucket.enable_bucket
                else f"  size: {listing}"
            )
        print_findings(by_folder.get(folder, []) + c.findings, indent="    ", short=True)
    if general:
        echo("dataset:", style="bold")
        print_findings(general, indent="    ")
    if errors:
        echo(f"{len(errors)} error(s), {len(warnings)} warning(s)", style="bold red")
    else:
        echo(f"ok: no errors, {len(warnings)} warning(s)", style="bold green")
    return ExitCode.USAGE if errors else ExitCode.OK
