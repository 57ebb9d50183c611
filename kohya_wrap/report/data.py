"""What the report reads of a run: the typed run record (training/record.py) and the files `run`
wrote next to it (command.json, spec.json, the rendered configs, sample_prompts.txt, metrics.csv,
events.jsonl, train.log) and `grid` added (grids/*/grid.json). Only this module opens them; a file
that is gone or damaged reads as absent, except the record itself: without it there is no report.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kohya_wrap.report.charts import MetricRow, parse_metrics
from kohya_wrap.training.record import LaunchedCommand, RunFiles, RunRecord, read_record

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

LOG_TAIL_LINES = 60
LOG_TAIL_BYTES = 400_000  # only the end of train.log is read
ANSI = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_toml(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except (OSError, ValueError):
        return None


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


@dataclass(frozen=True)
class ConfigFile:
    """A rendered config: the run's own copy, else the file the command pointed at (`own` False: it
    may have been rendered again since)."""

    label: str
    path: Path
    own: bool
    data: dict[str, Any] | None


def config_file(run_dir: Path, name: str, argv: list[str], flag: str) -> ConfigFile | None:
    if (run_dir / name).is_file():
        return ConfigFile(name, run_dir / name, True, read_toml(run_dir / name))
    if flag in argv[:-1]:
        pointed = Path(argv[argv.index(flag) + 1])
        if pointed.is_file():
            return ConfigFile(name, pointed, False, read_toml(pointed))
    return None


def sample_prompts(text: str | None) -> list[str]:
    """The prompt lines as sd-scripts reads a .txt prompt file (blank and # lines skipped)."""
    if not text:
        return []
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


@dataclass(frozen=True)
class RunData:
    """What the page is made from, read once from the run folder."""

    run_dir: Path
    root: Path  # the project
    record: RunRecord
    record_text: str  # manifest.json, pretty-printed, for the page's own copy of it
    command: LaunchedCommand | None
    spec: dict[str, Any] | None  # spec.json, the resolved spec
    train: ConfigFile | None
    dataset: ConfigFile | None
    prompts_text: str | None
    metrics_found: bool
    rows: list[MetricRow] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str((self.spec or {}).get("name") or self.root.name)

    @property
    def train_config(self) -> dict[str, Any] | None:
        return self.train.data if self.train else None

    @property
    def dataset_config(self) -> dict[str, Any] | None:
        return self.dataset.data if self.dataset else None


def _pretty_json(text: str) -> str:
    """The file's JSON with an indent of 2 (as `run` writes it), whatever spacing it has; as it is if it
    does not parse."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return text.rstrip("\n")


def read_run(run_dir: Path) -> RunData:
    """Everything of runs/<id>/ the page is made from; a RecordError (one line, what to do) when the
    run has no readable record."""
    record = read_record(run_dir)
    files = RunFiles(run_dir)
    command = LaunchedCommand.read(files.command)
    spec = read_json(files.spec)
    argv = command.argv if command else []
    prompts_path = run_dir / "sample_prompts.txt"
    metrics_text = read_text(files.metrics)
    return RunData(
        run_dir=run_dir,
        root=run_dir.parent.parent,
        record=record,
        record_text=_pretty_json(read_text(files.record) or ""),
        command=command,
        spec=spec if isinstance(spec, dict) else None,
        train=config_file(run_dir, "train.toml", argv, "--config_file"),
        dataset=config_file(run_dir, "dataset.toml", argv, "--dataset_config"),
        prompts_text=read_text(prompts_path) if prompts_path.is_file() else None,
        metrics_found=metrics_text is not None,
        rows=parse_metrics(metrics_text) if metrics_text else [],
    )


@dataclass(frozen=True)
class LogSummary:
    warnings: int = 0
    errors: list[str] = field(default_factory=list)
    exception: str | None = None


def log_summary(run_dir: Path) -> LogSummary:
    """Warnings, errors and the first exception from events.jsonl (the parsed child output)."""
    warnings, errors, exception = 0, [], None
    try:
        with open(RunFiles(run_dir).events, encoding="utf-8") as handle:
            for line in handle:
                if '"LogMessage"' not in line and '"TracebackLine"' not in line:
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") == "LogMessage":
                    if event.get("level") == "WARNING":
                        warnings += 1
                    elif event.get("level") in ("ERROR", "CRITICAL"):
                        errors.append(str(event.get("message")))
                elif event.get("event") == "TracebackLine" and event.get("exception") and exception is None:
                    exception = str(event["exception"])
    except OSError:
        pass
    return LogSummary(warnings, errors, exception)


def log_tail(raw: bytes, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last lines of train.log as a terminal would show them: control codes gone, a progress bar
    redrawn with \\r counted once (its last state)."""
    text = ANSI.sub("", raw[-LOG_TAIL_BYTES:].decode("utf-8", errors="replace"))
    shown = [line.rsplit("\r", 1)[-1].rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return [line for line in shown if line.strip()][-lines:]


def read_log_tail(run_dir: Path) -> list[str]:
    try:
        with open(RunFiles(run_dir).log, "rb") as handle:
            handle.seek(max(0, handle.seek(0, 2) - LOG_TAIL_BYTES))
            return log_tail(handle.read())
    except OSError:
        return []


def grid_files(run_dir: Path) -> list[tuple[Path, dict[str, Any] | None]]:
    """Each grids/*/grid.json with its content (None where it is not readable), in name order."""
    folder = RunFiles(run_dir).grids
    files = sorted(folder.glob("*/grid.json")) if folder.is_dir() else []
    return [(path, data if isinstance(data := read_json(path), dict) else None) for path in files]
