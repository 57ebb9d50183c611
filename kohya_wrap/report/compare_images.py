"""The image grid of `compare`: each run's final LoRA × weights × prompts with one seed, rendered through
`grid` (kohya_wrap/grid make_grid: one grid per run under runs/<id>/grids/, with grid's cell cache, so a cell
rendered before is not rendered again and weight 0 renders once for all runs), and its view on the page."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.grid import GridOptions, Prompt, default_prompts, make_grid
from kohya_wrap.report.compare_runs import Entry, Selection
from kohya_wrap.report.images import picture
from kohya_wrap.spec.load import load_project
from kohya_wrap.workers import Progress, no_progress

DEFAULT_WEIGHTS = (0.0, 0.5, 1.0)
CELL_SIDE = 256  # the images on the page, long side in px (each links to its full-size file)


@dataclass
class Images:
    """The grid of runs × weights × prompts, or why there is none."""

    skipped: bool = False  # --no-images
    weights: list[float] = field(default_factory=list)
    prompts: list[Prompt] = field(default_factory=list)
    seed: int | None = None
    size: str = ""
    cells: dict[str, dict[tuple[float, str], tuple[Path, str] | str]] = field(
        default_factory=dict
    )  # label → (weight, prompt) → (image, alt) or why not
    problems: dict[str, str] = field(default_factory=dict)  # label → why its row has no images
    note: str | None = None  # why no image at all was rendered
    rendered: int = 0
    cached: int = 0
    failed: int = 0
    black: list[str] = field(default_factory=list)  # "t4 · weight 0.5 · prompt": cells black all over (NaNs)
    folders: dict[str, str] = field(default_factory=dict)  # label → the grid folder (under runs/<id>/grids/)

    def as_dict(self) -> dict[str, Any]:
        return {
            "skipped": self.skipped,
            "weights": self.weights,
            "prompts": [p.text for p in self.prompts],
            "seed": self.seed,
            "rendered": self.rendered,
            "cached": self.cached,
            "failed": self.failed,
            "black": self.black,
            "problems": self.problems,
            "note": self.note,
            "grids": self.folders,
        }


def _loaded_for(selection: Selection, entry: Entry):
    """The spec an entry's images render with: a trial's own (the sweep's --set overrides), else the
    project's with the run's LoRA name."""
    overrides = entry.overrides or ((f"name={json.dumps(entry.output_name)}",) if entry.output_name else ())
    return load_project(selection.root, overrides)


def render_images(
    selection: Selection,
    weights: Sequence[float],
    prompts: Sequence[Prompt] | None,
    seed: int | None,
    negative: str | None = None,
    progress: Progress = no_progress,
    note: Callable[[str], None] | None = None,
) -> Images:
    """Each run's final checkpoint at each weight with each prompt, all with one seed, through `grid`
    (its cache: a cell rendered before is not rendered again). A run without a final checkpoint gets a
    row saying why; a problem that stops every row (no sd-scripts, a family grid cannot render) is said once."""
    project = load_project(selection.root)
    chosen = list(prompts) if prompts else default_prompts(project, negative)
    sample_seed = project.spec.sample.seed
    images = Images(weights=list(weights), prompts=chosen, seed=seed if seed is not None else sample_seed or 1)
    if not chosen:
        images.note = "no prompts: pass --prompts, or add prompts to the spec's [sample] section"
        return images
    sizes = set()
    for entry in selection.entries:
        if entry.run is None:
            images.problems[entry.label] = f"not trained ({entry.status})"
            continue
        if entry.final_checkpoint() is None:
            images.problems[entry.label] = "no final LoRA file (the run did not finish, or the file was moved)"
            continue
        options = GridOptions(
            run_id=entry.run.run_dir.name,
            checkpoints="final",
            weights=list(weights),
            prompts=chosen,
            seeds=[images.seed],
        )
        try:
            loaded = _loaded_for(selection, entry)
            result = make_grid(
                loaded, options, progress, (lambda text, label=entry.label: note(f"{label}: {text}")) if note else None
            )
        except KohyaWrapError as exc:
            images.problems[entry.label] = " — ".join(exc.lines())
            continue
        images.rendered += result.rendered
        images.cached += result.cached
        images.failed += len(result.failed)
        images.folders[entry.label] = str(result.folder)
        sizes.add("{}×{}".format(*result.data["size"]))
        images.cells[entry.label] = {}
        for cell in result.data["cells"]:
            where = (float(cell["weight"]), str(cell["prompt"]))
            if cell.get("status") == "ok":
                alt = f"{entry.label} · weight {cell['weight']:g} · {cell['prompt']}"
                images.cells[entry.label][where] = (result.folder / cell["image"], alt)  # made a Picture on the page
                if cell.get("black"):
                    images.black.append(alt)
            else:
                images.cells[entry.label][where] = str(cell.get("error") or "not rendered")
        if result.interrupted:
            raise KeyboardInterrupt
    images.size = ", ".join(sorted(sizes))
    reasons = set(images.problems.values())
    if not images.cells and len(reasons) == 1 and len(images.problems) > 1:
        images.note = reasons.pop()  # the same for every row: say it once
    return images


def images_view(
    images: Images, selection: Selection, page_dir: Path, described: dict[str, str] | None = None
) -> dict[str, Any]:
    rows = []
    for entry in selection.entries:
        cells = images.cells.get(entry.label)
        shown = []
        for prompt in images.prompts:
            for weight in images.weights:
                found = cells.get((float(weight), prompt.text)) if cells is not None else None
                if isinstance(found, tuple):
                    path, alt = found
                    shown.append({"picture": picture(path, CELL_SIDE, alt, "cell", page_dir), "error": None})
                else:
                    shown.append({"picture": None, "error": found or "not rendered"})
        rows.append(
            {
                "label": entry.label,
                "colour": entry.colour,
                "described": (described or {}).get(entry.label, ""),
                "problem": images.problems.get(entry.label) if images.note is None else None,
                "cells": shown if cells is not None else [],
            }
        )
    return {
        "skipped": images.skipped,
        "note": images.note,
        "weights": [f"{w:g}" + (" (base)" if w == 0 else "") for w in images.weights],
        "prompts": [p.text for p in images.prompts],
        "seed": images.seed,
        "size": images.size,
        "rows": rows,
        "columns": len(images.weights) * len(images.prompts),
        "rendered": images.rendered,
        "cached": images.cached,
        "failed": images.failed,
    }
