"""`compare`: several runs side by side on one self-contained HTML page — a sweep's trials (default: the
project's latest sweep, each trial's latest run) or any runs chosen by id.

The page has the loss curves of every run overlaid (smoothed and raw), a table of the settings that differ
between them (from each run's spec.json, the resolved spec, and the derived settings its record keeps) with
each run's verdict, duration and s/step, and a grid of runs × LoRA weights (× prompts) rendered from each
run's final checkpoint with the same seed for every cell. The images are rendered through `grid`
(kohya_wrap/grid: make_grid, one grid per run under runs/<id>/grids/), so its cell cache applies: a cell
`grid` or an earlier `compare` rendered is not rendered again, and weight 0 (the base model) renders once
for all runs.

compare_runs.py    what is compared: the runs, the settings that differ
compare_images.py  the image grid, rendered through `grid`
compare.py         the numbers, the charts and the page (templates/compare.html.j2)

Like the report, it opens from disk with no server and no network: CSS inline, charts inline SVG, images
as data: URIs, no JavaScript; every value reaches the page through the autoescaped templates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from kohya_wrap import __version__
from kohya_wrap.fsutil import free_name, utc_stamp, write_text_atomic
from kohya_wrap.report.charts import (
    Series,
    ema,
    finite_points,
    line_chart_svg,
    median_seconds_per_step,
    smoothing_span,
)
from kohya_wrap.report.compare_images import DEFAULT_WEIGHTS, Images, images_view, render_images
from kohya_wrap.report.compare_runs import (
    Entry,
    Selection,
    differing_settings,
    flatten,
    select_runs,
    select_sweep,
    value_text,
)
from kohya_wrap.report.images import link
from kohya_wrap.report.page import duration_text
from kohya_wrap.report.templating import render
from kohya_wrap.sweep.state import TRAINED
from kohya_wrap.training.record import RunFiles

# ---------------------------------------------------------------------------------------------- numbers and charts


def _span(entries: Sequence[Entry]) -> int:
    """One smoothing window for every curve (the longest run's), so the curves compare like for like."""
    longest = max((len(finite_points((r.step, r.loss) for r in e.run.rows)) for e in entries if e.run), default=0)
    return smoothing_span(longest)


def loss_charts(entries: Sequence[Entry]) -> dict[str, Any]:
    """The loss of every run overlaid: smoothed (EMA, one window for all) and raw, each run in its colour."""
    span = _span(entries)
    smoothed, raw = [], []
    for index, entry in enumerate(entries):
        points = finite_points((r.step, r.loss) for r in entry.run.rows) if entry.run else []
        if not points:
            continue
        css = f"trial-{index + 1}"
        smooth = list(zip((x for x, _ in points), ema([y for _, y in points], span), strict=True))
        smoothed.append(Series(entry.label, smooth, entry.colour, f"loss-ema {css}", width=2.2))
        raw.append(Series(entry.label, points, entry.colour, f"loss-raw {css}", opacity=0.8, width=1.2))
    if not smoothed:
        return {"any": False}
    return {
        "any": True,
        "span": span,
        "smoothed": line_chart_svg(
            smoothed, title=f"loss, smoothed (EMA, span {span})", y_label="loss", robust=True, chart_id="loss-smoothed"
        ),
        "raw": line_chart_svg(raw, title="loss, raw", y_label="loss", robust=True, chart_id="loss-raw"),
        "drawn": len(smoothed),
    }


def _final_smoothed(entry: Entry, span: int) -> float | None:
    points = finite_points((r.step, r.loss) for r in entry.run.rows) if entry.run else []
    return ema([y for _, y in points], span)[-1] if points else None


def _badge(entry: Entry) -> str:
    status = entry.run.record.verdict if entry.run and entry.status in (TRAINED, "failed") else entry.status
    if status == TRAINED:
        return "ok"
    return "interrupted" if status in ("interrupted", "running", "pending") else "failed"


def table_rows(entries: Sequence[Entry], columns: list[str], values: list[dict[str, str]], page_dir: Path):
    span = _span(entries)
    rows = []
    for entry, shown in zip(entries, values, strict=True):
        record = entry.run.record if entry.run else None
        per_step = median_seconds_per_step(entry.run.rows) if entry.run else None
        smoothed = _final_smoothed(entry, span)
        report = RunFiles(entry.run.run_dir).report if entry.run else None
        rows.append(
            {
                "label": entry.label,
                "colour": entry.colour,
                "status": entry.status,
                "badge": _badge(entry),
                "verdict": record.verdict if record else "not run",
                "error": entry.error if entry.status != TRAINED else None,
                "settings": [shown[key] for key in columns],
                "steps": f"{record.steps.reached} / {record.steps.planned}" if record else "—",
                "final_loss": value_text(record.final_loss) if record and record.final_loss is not None else "—",
                "smoothed": f"{smoothed:.4g}" if smoothed is not None else "—",
                "duration": duration_text(record.duration_s, "—") if record else "—",
                "per_step": f"{per_step:.3g}" if per_step is not None else "—",
                "run_id": entry.run_id or "—",
                "report": link(report, page_dir) if report else None,
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------- the page


def page_path(selection: Selection) -> Path:
    """sweeps/<id>/compare.html for a sweep; runs/compare-<UTC stamp>.html for runs chosen by id."""
    if selection.sweep is not None:
        return selection.sweep.folder / "compare.html"
    runs = selection.root / "runs"
    return runs / free_name(runs, f"compare-{utc_stamp()}", ".html")


def _header(selection: Selection) -> list[tuple[str, str]]:
    facts = [("project", str(selection.root))]
    sweep = selection.sweep
    if sweep is not None:
        facts += [
            ("sweep", f"{sweep.id} ({sweep.sampler}, seed {sweep.seed}), started {sweep.created}"),
            ("varied", ", ".join(sweep.space) or "—"),
            ("shared latent cache", "yes" if sweep.shared_cache else "no (--no-shared-cache)"),
        ]
        if sweep.overrides:
            facts.append(("--set for every trial", " ".join(sweep.overrides)))
    counts: dict[str, int] = {}
    for entry in selection.entries:
        counts[entry.status] = counts.get(entry.status, 0) + 1
    facts.append(("runs", ", ".join(f"{n} {status}" for status, n in counts.items())))
    return facts


def compare_data(selection: Selection, images: Images | None) -> dict[str, Any]:
    """What the page shows, as plain data (`compare --json`)."""
    columns, values = differing_settings(selection.entries, list(selection.sweep.space) if selection.sweep else ())
    span = _span(selection.entries)
    runs = []
    for entry, shown in zip(selection.entries, values, strict=True):
        record = entry.run.record if entry.run else None
        runs.append(
            {
                "label": entry.label,
                "status": entry.status,
                "run_id": entry.run_id,
                "verdict": record.verdict if record else None,
                "values": entry.values,
                "settings": shown,
                "steps": {"reached": record.steps.reached, "planned": record.steps.planned} if record else None,
                "final_loss": record.final_loss if record else None,
                "final_loss_smoothed": _final_smoothed(entry, span),
                "duration_s": record.duration_s if record else None,
                "seconds_per_step": median_seconds_per_step(entry.run.rows) if entry.run else None,
                "final_checkpoint": str(path) if (path := entry.final_checkpoint()) else None,
                "error": entry.error,
            }
        )
    return {
        "sweep": selection.sweep.id if selection.sweep else None,
        "differing": columns,
        "runs": runs,
        "images": images.as_dict() if images is not None else None,
    }


def build_page(selection: Selection, images: Images, page_dir: Path) -> str:
    columns, values = differing_settings(selection.entries, list(selection.sweep.space) if selection.sweep else ())
    described = {
        entry.label: " · ".join(f"{key.rsplit('.', 1)[-1]} {shown[key]}" for key in columns)
        for entry, shown in zip(selection.entries, values, strict=True)
    }
    name = selection.sweep.project if selection.sweep and selection.sweep.project else selection.root.name
    page = render(
        "compare.html.j2",
        title=f"{name} · compare · {selection.title}",
        project=name,
        subtitle=selection.title,
        version=__version__,
        facts=_header(selection),
        columns=columns,
        rows=table_rows(selection.entries, columns, values, page_dir),
        charts=loss_charts(selection.entries),
        images=images_view(images, selection, page_dir, described),
    )
    return str(page) + "\n"


def write_compare(selection: Selection, images: Images) -> Path:
    path = page_path(selection)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, build_page(selection, images, path.parent))
    return path


__all__ = [
    "DEFAULT_WEIGHTS",
    "Entry",
    "Images",
    "Selection",
    "compare_data",
    "differing_settings",
    "flatten",
    "loss_charts",
    "render_images",
    "select_runs",
    "select_sweep",
    "write_compare",
]
