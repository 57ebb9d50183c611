"""`report`: one self-contained HTML page per run, written to runs/<id>/report.html.

The page opens from disk with no server and no network: CSS inline, charts as inline SVG, every image
a data: URI (downscaled with Pillow), no JavaScript. It is built only from what the run recorded
(data.py reads it: the run record, command.json, metrics.csv, events.jsonl, train.log, the configs
copied into the run folder) plus the files those name that still exist (training images, sample
images, checkpoints) and any grids under runs/<id>/grids/*/grid.json.

This module turns what was read into plain values for each section (the view); the HTML is in
templates/, rendered with autoescape, so everything that comes from the user or a log is escaped.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence

from markupsafe import Markup

from kohya_wrap import __version__
from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.fsutil import sha256_file, write_text_atomic
from kohya_wrap.paths import relative
from kohya_wrap.report.charts import MetricRow, loss_chart, lr_chart, median_seconds_per_step, step_label
from kohya_wrap.report.data import (
    ConfigFile,
    LogSummary,
    RunData,
    grid_files,
    log_summary,
    read_log_tail,
    read_run,
    read_text,
    sample_prompts,
)
from kohya_wrap.report.images import GRID_SIDE, SAMPLE_SIDE, THUMB_SIDE, Picture, picture
from kohya_wrap.report.templating import render
from kohya_wrap.sdscripts.naming import SAMPLE_FILE, checkpoint_label
from kohya_wrap.training.record import DatasetFile, RunFiles, RunRecord, find_run

THUMBS_PER_CONCEPT = 12

Rows = list[tuple[str, str]]  # a two-column table: label, value as shown


# ---------------------------------------------------------------------------------------------- values as shown


def size_text(size: int | float | None) -> str:
    if size is None:
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"


def duration_text(seconds: float | None, unknown: str = "?") -> str:
    """1 h 02 min 03 s, 4 min 05 s, 6 s."""
    if seconds is None:
        return unknown
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    if hours:
        return f"{hours} h {rest // 60:02d} min {rest % 60:02d} s"
    return f"{rest // 60} min {rest % 60:02d} s" if rest >= 60 else f"{rest} s"


def _when(stamp: str | None) -> str:
    if not stamp:
        return "?"
    try:
        return datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    except ValueError:
        return stamp


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _rows(rows: Iterable[tuple[Any, Any]]) -> Rows:
    return [(str(key), _value_text(value)) for key, value in rows]


def _or_dash(value: Any) -> Any:
    return "—" if value is None else value


# ---------------------------------------------------------------------------------------------- sections


def _header(run: RunData) -> dict[str, Any]:
    record = run.record
    facts: list[tuple[str, Any]] = [
        ("project", f"{run.name} — {run.root}"),
        ("run", record.run_id),
        ("verdict", record.verdict),
        ("exit codes", f"kohya-wrap {record.exit_code}, sd-scripts {_or_dash(record.child_exit_code)}"),
        ("started", _when(record.started)),
        ("ended", _when(record.ended)),
        ("duration", duration_text(record.duration_s)),
        ("steps", f"{record.steps.reached} of {record.steps.planned} planned"),
        ("final loss", _or_dash(record.final_loss)),
        ("final learning rate", _or_dash(record.final_lr)),
        ("seed", _or_dash(record.seed)),
    ]
    per_step = median_seconds_per_step(run.rows)
    if per_step is not None:
        facts.append(("median s/step", f"{per_step:.3g}"))
    if record.resume:
        facts.append(("resumed from", f"{Path(record.resume.state).name} (step {record.resume.from_step})"))
    if run.command:
        facts.append(("command", shlex.join(run.command.argv)))
        facts.append(("working folder", run.command.cwd))
        if run.command.env:
            facts.append(("environment overrides", " ".join(f"{k}={v}" for k, v in run.command.env.items())))
    badge = "ok" if record.exit_code == 0 else "interrupted" if record.exit_code == 130 else "failed"
    return {
        "name": run.name,
        "run_id": record.run_id,
        "verdict": record.verdict,
        "badge": badge,
        "diagnosis": record.diagnosis,
        "facts": _rows(facts),
    }


def _environment(record: RunRecord) -> Rows:
    sd = record.sd_scripts
    environment = record.environment
    packages = environment.packages
    rows: list[tuple[str, Any]] = [
        ("kohya-wrap", record.kohya_wrap),
        ("sd-scripts", sd.schema_),
        ("sd-scripts commit", sd.commit or environment.sd_scripts_commit or "not recorded"),
        ("sd-scripts folder", sd.root),
        ("sd-scripts python", sd.python),
    ]
    if environment.sd_scripts_changed_files:
        rows.append(("local changes in sd-scripts", ", ".join(environment.sd_scripts_changed_files)))
    if "error" in packages:
        rows.append(("packages", f"not read: {packages['error']}"))
    else:
        for key, value in packages.items():
            if key in ("torch_cuda", "torch_hip"):
                rows.append((key.replace("_", " ").replace("torch ", "torch build: "), value or "none"))
            else:
                rows.append((key, value))
    rows.append(("GPUs", ", ".join(environment.gpus) or "none found (nvidia-smi)"))
    rows.append(("Python", record.python))
    rows.append(("platform", record.platform))
    return _rows(rows)


def _charts_view(rows: Sequence[MetricRow], metrics_found: bool) -> dict[str, Any]:
    view: dict[str, Any] = {
        "found": metrics_found,
        "any_loss": False,
        "any_value": any(r.loss is not None for r in rows),
    }
    if metrics_found and any(r.loss is not None and math.isfinite(r.loss) for r in rows):
        view["any_loss"] = True
        view["loss"] = loss_chart(rows)
        view["lr"] = lr_chart(rows)
    return view


def _charts(rows: Sequence[MetricRow], metrics_found: bool) -> Markup:
    """The charts section on its own (the page includes the same template)."""
    return render("sections/charts.html.j2", charts=_charts_view(rows, metrics_found))


def _sample_groups(
    paths: Sequence[str], rows: Sequence[MetricRow]
) -> list[tuple[str, list[tuple[Path, re.Match | None]]]]:
    """Sample images grouped by the epoch or step in their name (sdscripts/naming.py: SAMPLE_FILE), in
    training order; names it does not know come last."""
    last_step_of_epoch: dict[int, float] = {}
    for row in rows:
        if row.epoch is not None:
            last_step_of_epoch[row.epoch] = max(row.step, last_step_of_epoch.get(row.epoch, row.step))
    groups: dict[tuple, list[tuple[Path, re.Match | None]]] = {}
    labels: dict[tuple, str] = {}
    for text in paths:
        path = Path(text)
        match = SAMPLE_FILE.match(path.name)
        if match is None:
            key: tuple = (2, math.inf, 0)
            labels[key] = "other"
        elif match["tag"].startswith("e"):
            epoch = int(match["tag"][1:])
            step = 0 if epoch == 0 else last_step_of_epoch.get(epoch)
            key = (0, step if step is not None else epoch, epoch)
            at_step = f" (step {step_label(step)})" if step is not None else ""
            labels[key] = "before training" if epoch == 0 else f"epoch {epoch}{at_step}"
        else:
            step = int(match["tag"])
            key = (0, step, -1)
            labels[key] = "before training" if step == 0 else f"step {step}"
        groups.setdefault(key, []).append((path, match))
    ordered = []
    for key in sorted(groups):
        items = sorted(groups[key], key=lambda item: (int(item[1]["index"]) if item[1] else 0, item[0].name))
        ordered.append((labels[key], items))
    return ordered


@dataclass(frozen=True)
class Sample:
    picture: Picture
    prompt: str
    options: str  # the prompt's --options, without the first "--"
    seed: str | None


def _samples(run: RunData) -> list[tuple[str, list[Sample]]]:
    paths = [str(p) for p in run.record.sample_images]
    prompts = sample_prompts(run.prompts_text)
    side = SAMPLE_SIDE if len(paths) <= 48 else SAMPLE_SIDE // 2
    groups = []
    for label, items in _sample_groups(paths, run.rows):
        shown = []
        for path, match in items:
            index = int(match["index"]) if match else None
            prompt = prompts[index] if index is not None and index < len(prompts) else ""
            text, _, options = prompt.partition(" --")
            shown.append(
                Sample(
                    picture(path, side, text or path.name, "sample", run.run_dir),
                    text,
                    options,
                    match["seed"] if match else None,
                )
            )
        groups.append((label, shown))
    return groups


def _grids(run_dir: Path) -> list[dict[str, Any]]:
    grids = []
    for grid_file, grid in grid_files(run_dir):
        if grid is None:
            grids.append({"name": grid_file.parent.name, "readable": False})
            continue
        pages = grid.get("pages") if isinstance(grid.get("pages"), list) else []
        shown = []
        for page in pages:
            if not isinstance(page, dict) or not isinstance(page.get("image"), str):
                continue
            label = str(page.get("label") or page["image"])
            shown.append((picture(grid_file.parent / page["image"], GRID_SIDE, label, "grid-page", run_dir), label))
        grids.append(
            {
                "name": grid_file.parent.name,
                "readable": True,
                "title": str(grid.get("title") or grid_file.parent.name),
                "pages": shown,
                "empty": not pages,
            }
        )
    return grids


@dataclass
class Concept:
    folder: str  # relative to the project root where it is inside it
    repeats: int | None
    class_tokens: str
    is_reg: bool
    caption_extension: str
    images: list[DatasetFile]


def concepts_of(images: Sequence[DatasetFile], dataset_config: dict | None, root: Path) -> list[Concept]:
    """The run's concepts: the subsets of its dataset.toml, with the images the record lists in each
    folder; images in folders no subset names get a concept of their own (repeats from `N_` names)."""
    general = (dataset_config or {}).get("general") or {}
    default_extension = general.get("caption_extension") or ".caption"
    by_folder: dict[str, list[DatasetFile]] = {}
    for item in images:
        by_folder.setdefault(Path(item.path).parent.as_posix(), []).append(item)
    concepts: list[Concept] = []
    for dataset in (dataset_config or {}).get("datasets") or []:
        for subset in dataset.get("subsets") or []:
            if not isinstance(subset, dict) or "image_dir" not in subset:
                continue
            image_dir = Path(str(subset["image_dir"]))
            folder = relative(image_dir, root)
            if folder not in by_folder and f"{image_dir.parent.name}/{image_dir.name}" in by_folder:
                folder = f"{image_dir.parent.name}/{image_dir.name}"  # the project was moved since the run
            extension = subset.get("caption_extension") or dataset.get("caption_extension") or default_extension
            concepts.append(
                Concept(
                    folder,
                    subset.get("num_repeats"),
                    str(subset.get("class_tokens") or ""),
                    bool(subset.get("is_reg")),
                    extension,
                    by_folder.pop(folder, []),
                )
            )
    for folder, found in by_folder.items():
        name = Path(folder).name
        repeats, _, words = name.partition("_")
        concepts.append(
            Concept(
                folder,
                int(repeats) if repeats.isdigit() else None,
                words if repeats.isdigit() else "",
                folder.startswith("reg/"),
                default_extension,
                found,
            )
        )
    return concepts


def _evenly(items: Sequence[Any], count: int) -> list[Any]:
    if len(items) <= count:
        return list(items)
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


@dataclass(frozen=True)
class Thumb:
    picture: Picture
    name: str
    caption: str  # shortened to 90 characters
    changed: bool  # the file's size is not the recorded one


def _dataset(run: RunData) -> list[dict[str, Any]]:
    concepts = []
    for c in concepts_of(run.record.dataset, run.dataset_config, run.root):
        thumbs = []
        for item in _evenly(c.images, THUMBS_PER_CONCEPT):
            path = run.root / item.path
            caption = read_text(path.with_suffix(c.caption_extension)) if c.caption_extension else None
            caption = " ".join(caption.split()) if caption else ""
            changed = path.is_file() and path.stat().st_size != item.bytes
            short = caption if len(caption) <= 90 else caption[:87] + "…"
            image = picture(path, THUMB_SIDE, caption or path.name, "thumb", run.run_dir)
            thumbs.append(Thumb(image, path.name, short, changed))
        concepts.append(
            {
                "folder": c.folder,
                "class_tokens": c.class_tokens,
                "kind": "regularization" if c.is_reg else "training",
                "count": len(c.images),
                "repeats": c.repeats if c.repeats is not None else "?",
                "weighted": len(c.images) * c.repeats if c.repeats else "?",
                "size": size_text(sum(i.bytes for i in c.images)),
                "thumbs": thumbs,
            }
        )
    return concepts


def _checkpoints(run: RunData) -> list[dict[str, Any]]:
    spec_name = (run.spec or {}).get("name")
    rows = []
    for output in run.record.outputs:
        if not output.path:
            continue
        path = Path(output.path)
        exists = path.is_file()
        size_now = path.stat().st_size if exists else None
        sha = output.sha256 or (sha256_file(path) if exists else None)
        state = (
            "missing" if not exists else "exists" if size_now == output.bytes else "exists, size changed since the run"
        )
        final = spec_name is not None and checkpoint_label(path.stem, str(spec_name)) == "final"
        rows.append(
            {
                "name": path.name,
                "final": final,
                "where": relative(path, run.root),
                "size": size_text(output.bytes),
                "state": state,
                "sha": sha or "—",
                "sha_note": "recorded" if output.sha256 else "computed now" if sha else "",
            }
        )
    return rows


def _settings(run: RunData) -> dict[str, Any]:
    tables: list[tuple[str | None, Rows]] = []
    for section, values in (run.train_config or {}).items():
        if isinstance(values, dict):
            tables.append((f"train.toml [{section}]", _rows(values.items())))
        else:
            tables.append((None, _rows([(section, values)])))
    dataset_config = run.dataset_config or {}
    if dataset_config.get("general"):
        tables.append(("dataset.toml [general]", _rows(dataset_config["general"].items())))
    for d, dataset in enumerate(dataset_config.get("datasets") or []):
        for s, subset in enumerate(dataset.get("subsets") or []):
            tables.append((f"dataset {d + 1}, subset {s + 1}", _rows((subset or {}).items())))
    prompts = ConfigFile("sample_prompts.txt", run.run_dir / "sample_prompts.txt", True, None)
    spec = ConfigFile("spec.json (the resolved spec)", RunFiles(run.run_dir).spec, True, None)
    files = [run.train, run.dataset, prompts if run.prompts_text is not None else None, spec if run.spec else None]
    shown = [(file, text) for file in files if file is not None and (text := read_text(file.path)) is not None]
    return {"tables": tables, "configs_found": bool(run.train_config or run.dataset_config), "files": shown}


def _log(run: RunData) -> dict[str, Any]:
    summary: LogSummary = log_summary(run.run_dir)
    tail = read_log_tail(run.run_dir)
    return {
        "summary": summary,
        "errors": summary.errors[:20],
        "tail_lines": len(tail),
        "tail": "\n".join(tail),
        "failed": run.record.exit_code not in (0, 130),
    }


# ---------------------------------------------------------------------------------------------- the page


def build_report(run_dir: Path) -> str:
    """The whole page for the run recorded in `run_dir` (runs/<id>/ of a project); a RecordError (a
    KohyaWrapError) when it has no readable record."""
    run = read_run(run_dir)
    page = render(
        "report.html.j2",
        title=f"{run.name} · run {run.record.run_id} · {run.record.verdict}",
        version=__version__,
        run_dir=run_dir,
        header=_header(run),
        charts=_charts_view(run.rows, run.metrics_found),
        samples=_samples(run),
        grids=_grids(run_dir),
        concepts=_dataset(run),
        checkpoints=_checkpoints(run),
        settings=_settings(run),
        environment=_environment(run.record),
        log=_log(run),
        record_text=run.record_text,
    )
    return str(page) + "\n"


def pick_run(root: Path, run_id: str | None) -> Path:
    """runs/<run_id>, or the newest run with a record."""
    run_dir = find_run(root / "runs", run_id)
    if run_dir is None:
        raise KohyaWrapError(f"{root}: no run with a record yet", "`kohya-wrap run` starts one")
    return run_dir


def write_report(run_dir: Path) -> Path:
    path = RunFiles(run_dir).report
    write_text_atomic(path, build_report(run_dir))
    return path
