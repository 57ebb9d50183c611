"""What `compare` compares: the runs (a sweep's trials, each with its latest run, or runs chosen by id) and
the settings that differ between them — from each run's spec.json (the resolved spec) and the derived
settings its record keeps. Reads only through report/data.py and sweep/state.py."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from kohya_wrap.report.data import RunData, read_run
from kohya_wrap.sweep.state import Sweep, latest_sweep
from kohya_wrap.training.record import RecordError, find_run

# one colour per run, the same in the charts and the table (Tableau 10); more runs than colours repeat them
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#7f7f7f",
)
IGNORED_KEYS = ("name",)  # every trial has its own LoRA name: not a setting that differs
IGNORED_PREFIXES = ("sweep.",)  # the [sweep] table says what varies, it is not a setting of a run
# derived settings (the record's `settings`) shown when they differ and the spec does not say so itself under
# one of these names (e.g. a batch size that comes from a preset or sd-scripts' default)
DERIVED = {
    "batch_size": ("batch_size", "train_batch_size"),
    "gradient_accumulation_steps": ("gradient_accumulation_steps",),
    "num_processes": ("num_processes",),
    "mixed_precision": ("mixed_precision",),
    "max_train_steps": ("max_train_steps",),
    "max_train_epochs": ("max_train_epochs",),
    "resolution": ("resolution",),
    "network_module": ("network_module",),
    "family": ("family",),
    "seed": ("seed",),
}
NOT_SET = "(not set)"


@dataclass
class Entry:
    """One row of the page: a sweep's trial (with its latest run, if it has one) or a run chosen by id."""

    label: str  # t1, t2, … or the run id
    colour: str
    status: str  # trained | failed | interrupted | running | pending, or a run's verdict
    run: RunData | None = None
    values: dict[str, Any] = field(default_factory=dict)  # a trial's varied values (known before it runs)
    overrides: tuple[str, ...] = ()  # the --set texts that make this entry's spec (a trial's)
    error: str | None = None  # a trial's recorded error, or why its run cannot be read

    @property
    def run_id(self) -> str | None:
        return self.run.record.run_id if self.run else None

    @property
    def output_name(self) -> str | None:
        if self.run is None:
            return None
        settings = self.run.record.settings or {}
        return str(settings.get("name") or (self.run.spec or {}).get("name") or "") or None

    def final_checkpoint(self) -> Path | None:
        """The run's final LoRA file, where it still exists."""
        name = self.output_name
        if self.run is None or not name:
            return None
        for output in self.run.record.outputs:
            path = Path(output.path)
            if path.stem == name and path.is_file():
                return path
        return None


@dataclass
class Selection:
    root: Path
    entries: list[Entry]
    sweep: Sweep | None = None

    @property
    def title(self) -> str:
        if self.sweep is not None:
            return f"sweep {self.sweep.id}"
        return f"{len(self.entries)} runs"


# ---------------------------------------------------------------------------------------------- what is compared


def _read(run_dir: Path) -> tuple[RunData | None, str | None]:
    try:
        return read_run(run_dir), None
    except RecordError as exc:
        return None, " — ".join(exc.lines())


def select_sweep(root: Path, sweep_id: str | None) -> Selection:
    """The sweep's trials (default: the latest sweep), each with its latest run; a trial that has not
    trained yet is shown with its status."""
    sweep = latest_sweep(root, sweep_id)
    entries = []
    for n, (trial, status) in enumerate(zip(sweep.trials, sweep.statuses(), strict=True)):
        entry = Entry(
            trial.name,
            PALETTE[n % len(PALETTE)],
            status.status,
            values=dict(trial.values),
            overrides=tuple(trial.overrides),
            error=status.error,
        )
        run_dir = root / "runs" / status.run_ids[-1] if status.run_ids else None
        if run_dir is not None:
            entry.run, problem = _read(run_dir)
            if problem and not entry.error:
                entry.error = problem
        entries.append(entry)
    return Selection(root, entries, sweep)


def select_runs(root: Path, run_ids: Sequence[str]) -> Selection:
    """Runs by id (any runs of the project); an unknown id is an error (one line)."""
    entries = []
    for n, run_id in enumerate(dict.fromkeys(run_ids)):
        run_dir = find_run(root / "runs", run_id)
        assert run_dir is not None  # find_run raises for an unknown id
        run = read_run(run_dir)
        label = run.record.sweep
        values = dict(label.values) if label else {}
        entries.append(Entry(run_id, PALETTE[n % len(PALETTE)], run.record.verdict, run, values))
    return Selection(root, entries)


# ---------------------------------------------------------------------------------------------- settings that differ


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested spec as dotted keys ("training.learning_rate", "concepts[0].repeats"); a list of plain
    values stays one value."""
    if isinstance(value, dict):
        found: dict[str, Any] = {}
        for key, inner in value.items():
            found.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return found
    if isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        found = {}
        for index, inner in enumerate(value):
            found.update(flatten(inner, f"{prefix}[{index}]"))
        return found
    return {prefix: value}


def value_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _known_settings(entry: Entry) -> dict[str, Any] | None:
    """Everything known of the entry's settings (spec.json flattened, plus the record's derived settings
    as "settings.<key>"), or None where only a trial's varied values are known (it has not run)."""
    if entry.run is None or (entry.run.spec is None and not entry.run.record.settings):
        return None
    flat = flatten(entry.run.spec or {})
    for key, value in (entry.run.record.settings or {}).items():
        if key in DERIVED:
            flat[f"settings.{key}"] = value
    return flat


def differing_settings(entries: Sequence[Entry], first: Sequence[str] = ()) -> tuple[list[str], list[dict[str, str]]]:
    """The settings whose values are not the same in every entry (`first`, e.g. a sweep's varied keys,
    lead), and each entry's value of each as shown ("(not set)" where its spec leaves it to the
    default, "?" where it is not known)."""
    known = [_known_settings(e) for e in entries]
    keys: dict[str, None] = dict.fromkeys(first)
    for flat, entry in zip(known, entries, strict=True):
        keys.update(dict.fromkeys(flat or {}))
        keys.update(dict.fromkeys(entry.values))
    shown: dict[str, list[str]] = {}
    for key in keys:
        if key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES):
            continue
        column = []
        for flat, entry in zip(known, entries, strict=True):
            if key in entry.values:
                column.append(value_text(entry.values[key]))
            elif flat is not None:
                column.append(value_text(flat[key]) if key in flat else NOT_SET)
            else:
                column.append("?")
        if len({text for text in column if text != "?"}) > 1 or (key in first and column):
            shown[key] = column
    spec_changes = {key.rsplit(".", 1)[-1] for key in shown if not key.startswith("settings.")}
    for key in [k for k in shown if k.startswith("settings.")]:
        if any(alias in spec_changes for alias in DERIVED[key.split(".", 1)[1]]):
            del shown[key]  # the spec says it already
    columns = list(shown)
    return columns, [{key: shown[key][i] for key in columns} for i in range(len(entries))]
