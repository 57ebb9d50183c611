"""A sweep on disk: `sweeps/<id>/sweep.json` (what it runs: every trial's values, name and `--set`
overrides, fixed when the sweep starts) and `sweeps/<id>/trials/<k>.json` (how each trial went, one file
per trial so trials on other processes or machines never write the same file). `--resume` reads both and
runs what is not trained yet.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.fsutil import free_name, utc_stamp, write_text_atomic

FORMAT = 1
TRAINED, FAILED, INTERRUPTED, RUNNING, PENDING = "trained", "failed", "interrupted", "running", "pending"


@dataclass
class Trial:
    index: int  # 1-based, the order trials run in
    name: str  # t1, t2, …
    output_name: str  # the LoRA's file name (the spec's `name`), distinct per trial
    values: dict[str, Any]
    overrides: list[str]  # the --set texts that make this trial's spec (the sweep's own first)
    cache_group: int  # trials with the same number share cached latents
    own_state: bool = False  # the sweep turned training.save_state on (to resume it) and removes it once trained

    def described(self) -> str:
        return " · ".join(f"{key}={_short(value)}" for key, value in self.values.items())


@dataclass
class TrialStatus:
    index: int
    status: str = PENDING
    run_ids: list[str] = field(default_factory=list)  # every run of this trial, oldest first
    verdict: str | None = None
    started: str | None = None
    ended: str | None = None
    error: str | None = None
    host: str | None = None
    pid: int | None = None
    gpu: str | None = None  # CUDA_VISIBLE_DEVICES of a trial run side by side with others
    # the latent cache files (.npz beside the images) this trial's last run wrote, and those it found ready
    latents_cached: int | None = None
    latents_reused: int | None = None


@dataclass
class Sweep:
    id: str
    root: Path  # the project folder
    created: str
    sampler: str
    seed: int
    space: dict[str, Any]  # as given: a list of values, or a range table
    overrides: list[str]  # the user's --set, applied to every trial
    shared_cache: bool
    trials: list[Trial]
    project: str = ""  # the project folder's name, for pages

    @property
    def folder(self) -> Path:
        return sweeps_dir(self.root) / self.id

    def status_file(self, index: int) -> Path:
        return self.folder / "trials" / f"{index}.json"

    def status(self, index: int) -> TrialStatus:
        path = self.status_file(index)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return TrialStatus(**{k: v for k, v in data.items() if k in TrialStatus.__dataclass_fields__})
        except FileNotFoundError:
            return TrialStatus(index)
        except (OSError, ValueError, TypeError) as exc:
            raise KohyaWrapError(
                f"{path}: unreadable trial record ({exc})", "delete that file to run the trial again"
            ) from exc

    def statuses(self) -> list[TrialStatus]:
        return [self.status(trial.index) for trial in self.trials]

    def save_status(self, status: TrialStatus) -> None:
        path = self.status_file(status.index)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(asdict(status), indent=2) + "\n")

    def left(self) -> list[Trial]:
        """The trials not trained yet, in order."""
        done = {s.index for s in self.statuses() if s.status == TRAINED}
        return [trial for trial in self.trials if trial.index not in done]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "id": self.id,
            "project": self.project or self.root.name,
            "created": self.created,
            "sampler": self.sampler,
            "seed": self.seed,
            "space": self.space,
            "overrides": self.overrides,
            "shared_cache": self.shared_cache,
            "trials": [asdict(trial) for trial in self.trials],
        }

    def save(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "sweep.json"
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")
        return path


def sweeps_dir(root: Path) -> Path:
    return root / "sweeps"


def new_sweep_id(root: Path) -> str:
    return free_name(sweeps_dir(root), utc_stamp())


def read_sweep(root: Path, sweep_id: str) -> Sweep:
    path = sweeps_dir(root) / sweep_id / "sweep.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, this kohya-wrap reads {FORMAT}")
        return Sweep(
            id=data["id"],
            root=root,
            created=data["created"],
            sampler=data["sampler"],
            seed=data["seed"],
            space=data["space"],
            overrides=list(data["overrides"]),
            shared_cache=bool(data["shared_cache"]),
            trials=[Trial(**{k: v for k, v in t.items() if k in Trial.__dataclass_fields__}) for t in data["trials"]],
            project=data.get("project", ""),
        )
    except FileNotFoundError:
        raise KohyaWrapError(
            f"{root}: no sweep {sweep_id}",
            f"list them with `ls {sweeps_dir(root)}`, or start one with kohya-wrap sweep",
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KohyaWrapError(f"{path}: not a sweep record kohya-wrap can read ({exc})", "start a new sweep") from exc


def sweep_ids(root: Path) -> list[str]:
    """The project's sweeps, oldest first."""
    folder = sweeps_dir(root)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / "sweep.json").is_file())


def latest_sweep(root: Path, sweep_id: str | None = None) -> Sweep:
    if sweep_id:
        return read_sweep(root, sweep_id)
    ids = sweep_ids(root)
    if not ids:
        raise KohyaWrapError(f"{root}: no sweep has run here", "start one with `kohya-wrap sweep DIR`")
    return read_sweep(root, ids[-1])


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def host_pid() -> tuple[str, int]:
    return os.uname().nodename if hasattr(os, "uname") else "", os.getpid()


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
