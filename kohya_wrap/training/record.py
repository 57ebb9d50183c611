"""The run record, `runs/<id>/manifest.json`: one typed, versioned shape that `run` writes and `runs`,
`report` and `grid` read (pipx's metadata file is the model: a format version in the file, and older
formats converted on reading).

Format history:
  1  kohya-wrap 0.1.0 before the field existed: no "format" key, no "settings".
  2  adds "format" and "settings" (the derived settings the run trained with: resolution, batch size,
     file names; see spec/settings.py).

A record written by a newer kohya-wrap (a higher format) is refused with a clear message rather than
half-read. Anything unreadable is a KohyaWrapError naming the file, never an internal error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.fsutil import write_text_atomic

FORMAT = 2
RECORD_NAME = "manifest.json"


@dataclass(frozen=True)
class RunFiles:
    """The files of one run folder, runs/<id>/: `run` writes all but the report (`report`) and the grids
    (`grid`); `report` reads them. The rendered configs are copied in under their own names."""

    folder: Path

    @property
    def command(self) -> Path:
        return self.folder / "command.json"  # argv, working folder and environment of the training command

    @property
    def spec(self) -> Path:
        return self.folder / "spec.json"  # the resolved spec

    @property
    def log(self) -> Path:
        return self.folder / "train.log"  # the child's raw output

    @property
    def events(self) -> Path:
        return self.folder / "events.jsonl"

    @property
    def metrics(self) -> Path:
        return self.folder / "metrics.csv"

    @property
    def record(self) -> Path:
        return self.folder / RECORD_NAME

    @property
    def report(self) -> Path:
        return self.folder / "report.html"

    @property
    def grids(self) -> Path:
        return self.folder / "grids"


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")  # a field a later format adds is no reason to fail


class SdScriptsInfo(_Part):
    root: str
    python: str
    schema_: str = Field(alias="schema")
    commit: str | None = None


class ResumeInfo(_Part):
    state: str
    from_step: int
    skip_until_initial_step: bool
    sd_scripts_step_offset: int


class EnvironmentInfo(_Part):
    """What the run ran on (training/environment.py reads it)."""

    packages: dict[str, str | None] = Field(default_factory=dict)  # name → version, torch_cuda/torch_hip; {"error": …}
    gpus: list[str] = Field(default_factory=list)  # nvidia-smi: name, driver, memory
    sd_scripts_commit: str | None = None
    sd_scripts_changed_files: list[str] = Field(default_factory=list)


class Steps(_Part):
    planned: int
    reached: int


class OutputFile(_Part):
    path: str
    bytes: int
    sha256: str | None = None


class DatasetFile(_Part):
    path: str  # relative to the project
    bytes: int
    sha256: str


class SweepLabel(_Part):
    """The sweep a run is a trial of (kohya_wrap/sweep/): its id, the trial's number and name, and the
    values the trial sets."""

    id: str
    trial: int
    of: int
    name: str
    values: dict[str, Any] = Field(default_factory=dict)


class RunRecord(_Part):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    format: int = FORMAT
    kohya_wrap: str
    run_id: str
    started: str
    ended: str
    duration_s: float
    verdict: str  # trained | interrupted | failed: …
    exit_code: int
    child_exit_code: int | None = None
    sd_scripts: SdScriptsInfo
    python: str
    platform: str
    environment: EnvironmentInfo = Field(default_factory=EnvironmentInfo)
    resume: ResumeInfo | None = None
    seed: int | None = None
    steps: Steps
    final_loss: float | None = None
    final_lr: float | None = None
    sample_images: list[str] = Field(default_factory=list)
    outputs: list[OutputFile] = Field(default_factory=list)
    dataset: list[DatasetFile] = Field(default_factory=list)
    diagnosis: list[str] = Field(default_factory=list)
    settings: dict[str, Any] | None = None  # format 2: spec.settings.Settings.as_dict()
    sweep: SweepLabel | None = None  # a sweep's trial (optional: older records have none)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A record of any earlier format, in the current one."""
    data = dict(data)
    if "format" not in data:  # format 1
        data["format"] = 1
    data["format"] = FORMAT  # 1 → 2 adds only optional fields
    return data


class RecordError(KohyaWrapError):
    pass


@dataclass(frozen=True)
class LaunchedCommand:
    """command.json: the command line sd-scripts was started with, its working folder, and the
    environment variables kohya-wrap set over the user's."""

    argv: list[str]
    cwd: str | None
    env: dict[str, str]

    def write(self, path: Path) -> None:
        text = json.dumps({"argv": self.argv, "cwd": self.cwd, "env": self.env}, indent=2, ensure_ascii=False)
        write_text_atomic(path, text + "\n")

    @classmethod
    def read(cls, path: Path) -> "LaunchedCommand | None":
        """The file's command; None when it is missing or not a JSON object (a report shows what it has)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            return None
        if not isinstance(data, dict):
            return None
        env = data.get("env")
        argv = data.get("argv")
        return cls(
            [str(a) for a in argv] if isinstance(argv, list) else [],
            data.get("cwd"),
            {str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {},
        )


def from_dict(data: Any, source: Path) -> RunRecord:
    if not isinstance(data, dict):
        raise RecordError(
            f"{source}: not a run record (expected a JSON object)",
            "it was damaged; the run's other files are still there",
        )
    version = data.get("format", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise RecordError(
            f"{source}: not a run record (format {version!r})", "it was damaged; the run's other files are still there"
        )
    if version > FORMAT:
        raise RecordError(
            f"{source}: written by a newer kohya-wrap (record format {version}; this one reads up to {FORMAT})",
            "upgrade kohya-wrap to read it",
        )
    try:
        return RunRecord.model_validate(upgrade(data))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "the record"
        raise RecordError(
            f"{source}: not a readable run record ({where}: {first['msg'].lower()})",
            "it was damaged; the run's other files are still there",
        ) from None


def read_record(run_dir: Path) -> RunRecord:
    path = run_dir / RECORD_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError(
            f"{run_dir}: no run record (the run is still going, or ended without one)",
            "see `kohya-wrap runs` for the runs with a record",
        ) from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RecordError(
            f"{path}: not a readable run record ({type(exc).__name__})",
            "it was damaged; the run's other files are still there",
        ) from None
    return from_dict(data, path)


def write_record(run_dir: Path, record: RunRecord) -> Path:
    path = run_dir / RECORD_NAME
    write_text_atomic(path, json.dumps(record.to_dict(), indent=2, ensure_ascii=False) + "\n")
    return path


def has_record(run_dir: Path) -> bool:
    return (run_dir / RECORD_NAME).is_file()


def run_dirs(runs_dir: Path) -> list[Path]:
    """Every run folder, newest first (ids sort by their UTC start time)."""
    return (
        sorted((p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")), reverse=True)
        if runs_dir.is_dir()
        else []
    )


def list_runs(runs_dir: Path) -> list[tuple[Path, RunRecord | RecordError | None]]:
    """Each run, newest first, with its record; None where there is none yet (running, or it ended
    without one), the error where the record cannot be read."""
    found: list[tuple[Path, RunRecord | RecordError | None]] = []
    for run_dir in run_dirs(runs_dir):
        if not has_record(run_dir):
            found.append((run_dir, None))
            continue
        try:
            found.append((run_dir, read_record(run_dir)))
        except RecordError as exc:
            found.append((run_dir, exc))
    return found


def find_run(runs_dir: Path, run_id: str | None) -> Path | None:
    """runs/<run_id> when it has a record (else a KohyaWrapError naming what to do), or without an id
    the newest run with a record; None when there is none yet."""
    if run_id is not None:
        run_dir = runs_dir / run_id
        if run_id in ("", ".", "..") or Path(run_id).name != run_id or not has_record(run_dir):
            raise KohyaWrapError(f"{run_dir}: no such run record", "see `kohya-wrap runs` for the ids")
        return run_dir
    return next((run_dir for run_dir in run_dirs(runs_dir) if has_record(run_dir)), None)
