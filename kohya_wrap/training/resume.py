"""`run --resume`: continue from a saved training state with step numbers that stay right.

sd-scripts resumes the network, optimizer, scheduler and RNG state from a state folder and reads the
step from its train_state.json, but past the first epoch it counts `global_step` from the start of the
epoch it resumes in (kohya-ss/sd-scripts#1999, #2171): its step-named checkpoints, state folders and
sample images get numbers that are too small by whole epochs and would overwrite the earlier ones, and
the train_state.json it writes is wrong, so the *next* resume goes wrong too. With gradient
accumulation it skips far too many batches mid-epoch (#2407).

So a resumed run writes into a staging folder, and afterwards each file moves into the output folder
under its true step number, with train_state.json corrected. The offset is read from the run itself
(sd-scripts' step bar counts `max_train_steps - global_step_at_start`), so an sd-scripts that fixes its
counting needs no change here. What cannot be corrected afterwards — sd-scripts training more steps than
planned — is refused before launch.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from kohya_wrap.check import CheckReport
from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.fsutil import write_text_atomic
from kohya_wrap.plan import TrainingPlan
from kohya_wrap.sdscripts.naming import STATE_SUFFIX, glob_escape, renumbered
from kohya_wrap.spec.load import LoadedSpec

TRAIN_STATE = "train_state.json"
# (sd-scripts' file names are in sdscripts/naming.py: step-named ones are renumbered, epoch ones are right)


@dataclass(frozen=True)
class SavedState:
    path: Path
    step: int
    epoch: int


@dataclass(frozen=True)
class Resume:
    state: SavedState
    skip: bool  # --skip_until_initial_step: mid-epoch, skip the batches already trained
    staging: Path
    total_steps: int
    expected_offset: int  # what sd-scripts' arithmetic gives (v0.10.1); the step bar has the last word

    def args(self) -> list[str]:
        """Appended after --config_file: sd-scripts lets the command line override the config."""
        return ["--resume", str(self.state.path), "--output_dir", str(self.staging)] + (
            ["--skip_until_initial_step"] if self.skip else []
        )

    def offset(self, bar_total: int | None) -> int:
        """True step − sd-scripts' global_step. Its step bar runs over max_train_steps − global_step
        at start; before the bar appears (sample images at first) the expected offset stands."""
        if bar_total is None:
            return self.expected_offset
        return self.state.step - (self.total_steps - bar_total)


def read_state(path: Path) -> SavedState | None:
    try:
        data = json.loads((path / TRAIN_STATE).read_text(encoding="utf-8"))
        return SavedState(path, int(data["current_step"]), int(data.get("current_epoch", 0)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def saved_states(model_dir: Path, name: str) -> list[SavedState]:
    """State folders of this output name, oldest step first."""
    found = []
    for path in model_dir.glob(f"{glob_escape(name)}*{STATE_SUFFIX}") if model_dir.is_dir() else []:
        state = read_state(path)
        if path.is_dir() and state is not None:
            found.append(state)
    return sorted(found, key=lambda s: (s.step, s.path.stat().st_mtime_ns))


def spec_training(loaded: LoadedSpec) -> dict:
    """The spec's [training] keys as set (typed and sd-scripts' own), what the resume rules read."""
    training = loaded.spec.training
    return training.model_dump(exclude_none=True) | dict(training.model_extra or {})


def resume_run(report: CheckReport, plan: TrainingPlan, source: Path | None = None) -> Resume:
    """The resume of a run about to start: the newest state in model/ (or `source`), its files staged in a
    folder of this process's own (`run --resume`, a sweep's stopped trial)."""
    layout = report.loaded.layout
    staging = layout.model_dir / f".resume-{os.getpid()}-{time.time_ns()}"
    return plan_resume(plan, layout.model_dir, staging, source, spec_training(report.loaded))


def plan_resume(plan: TrainingPlan, model_dir: Path, staging: Path, source: Path | None, spec_training: dict) -> Resume:
    """Which state to resume, in which sd-scripts mode; refuses what sd-scripts would get wrong."""
    for key in ("resume", "initial_step", "initial_epoch", "skip_until_initial_step"):
        if spec_training.get(key) not in (None, False, ""):
            raise KohyaWrapError(
                f"training.{key} is set in the spec",
                "remove it: `run --resume` chooses the state and how sd-scripts skips to it",
            )
    if source is not None:
        state = read_state(source)
        if state is None:
            raise KohyaWrapError(
                f"{source}: not a training state folder (no readable {TRAIN_STATE})",
                "pass a <name>-…-state folder from model/, or use --resume for the newest",
            )
    else:
        states = saved_states(model_dir, plan.name)
        if not states:
            raise KohyaWrapError(
                f"{model_dir}: no saved training state of {plan.name!r} to resume",
                "set training.save_state = true with save_every_n_steps or save_every_n_epochs, and run again",
            )
        state = states[-1]
    math = plan.math
    total, per_epoch, accumulation = math.total_steps, math.steps_per_epoch, plan.gradient_accumulation_steps
    if state.step >= total:
        raise KohyaWrapError(
            f"{state.path.name}: this state is at step {state.step} of {total}, training is finished",
            "raise max_train_epochs/max_train_steps to train on (the learning-rate schedule follows the new length)",
        )
    skip = state.step % per_epoch != 0
    if skip and accumulation > 1:
        raise KohyaWrapError(
            f"{state.path.name}: step {state.step} is mid-epoch and gradient_accumulation_steps is {accumulation}",
            "sd-scripts skips far too many batches then (kohya-ss/sd-scripts#2407): resume from a state saved at an "
            "epoch end (save_every_n_epochs)",
        )
    if state.step >= per_epoch and total != math.epochs * per_epoch:
        extra = min(state.step // per_epoch * per_epoch, math.epochs * per_epoch - total)
        raise KohyaWrapError(
            f"{state.path.name}: resuming past epoch 1 with {total} steps, not a multiple of {per_epoch} steps per "
            "epoch",
            f"sd-scripts would train up to {extra} steps too many (kohya-ss/sd-scripts#1999); use max_train_epochs, "
            f"or max_train_steps a multiple of {per_epoch}, from the start",
        )
    # skipping mid-epoch it counts from the start of the state's epoch; at an epoch end, from 0
    expected = state.step // per_epoch * per_epoch if skip else state.step
    return Resume(state, skip, staging, total, expected)


def settle(staging: Path, output_dir: Path, offset: int) -> list[Path]:
    """Move what the resumed run wrote into `output_dir` under true step numbers; correct the step in
    each state's train_state.json. Returns the moved top-level paths (and sample images)."""
    moved: list[Path] = []
    if not staging.is_dir():
        return moved
    for item in sorted(staging.iterdir()):
        if item.name == "sample" and item.is_dir():
            target_dir = output_dir / "sample"
            target_dir.mkdir(parents=True, exist_ok=True)
            for image in sorted(item.iterdir()):
                target = target_dir / renumbered(image.name, offset, sample=True)
                image.replace(target)
                moved.append(target)
            item.rmdir()
            continue
        target = output_dir / renumbered(item.name, offset)
        if item.is_dir():
            state = read_state(item)
            if state is not None and offset:
                data = json.loads((item / TRAIN_STATE).read_text(encoding="utf-8"))
                data["current_step"] = state.step + offset
                write_text_atomic(item / TRAIN_STATE, json.dumps(data) + "\n")
            if target.is_dir():  # a folder from an abandoned later timeline: replaced, as a rerun would
                shutil.rmtree(target)
        item.replace(target)
        moved.append(target)
    staging.rmdir()
    return moved
