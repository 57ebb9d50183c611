"""`sweep`: many runs from one spec. Every trial is an ordinary supervised run (its own runs/<id> record,
labelled with the sweep and its values), with its own LoRA name so no trial overwrites another's files.

Work shared by the trials is done once:
- every trial's spec is validated, and the project checked, before anything trains;
- latents are cached to disk (sd-scripts' `cache_latents_to_disk`: an .npz beside each image, which
  sd-scripts reuses when it matches the resolution, bucket and flip settings) by the first trial and
  reused by the next. Trials are ordered so those with the same latent-shaping settings run one after
  another (`cache_group`): a trial that changes the resolution or the augmentations makes its own
  cache, then the trials after it reuse that one. Text-encoder outputs cached to disk
  (`cache_text_encoder_outputs_to_disk`, where the spec turns it on) are reused the same way.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from kohya_wrap.errors import ExitCode, KohyaWrapError
from kohya_wrap.fsutil import exclusive_lock
from kohya_wrap.plan import checked_plan
from kohya_wrap.sdscripts.locate import require_trainable
from kohya_wrap.spec.load import LoadedSpec, load_project
from kohya_wrap.sweep.space import sample_trials, toml_value
from kohya_wrap.sweep.state import (
    FAILED,
    INTERRUPTED,
    RUNNING,
    TRAINED,
    Sweep,
    Trial,
    host_pid,
    new_sweep_id,
    now,
    sweeps_dir,
)
from kohya_wrap.training.record import SweepLabel
from kohya_wrap.training.resume import resume_run, saved_states
from kohya_wrap.training.supervise import supervise

# what the latents sd-scripts caches depend on besides the image (library/train_util.py
# is_disk_cached_latents_is_expected: the bucket size, flip and alpha mask; the VAE and base that encode them)
LATENT_KEYS = ("flip_aug", "random_crop", "color_aug", "alpha_mask", "face_crop_aug_range", "crop_top_left")
NO_CACHE_WITH = ("random_crop", "color_aug")  # sd-scripts refuses cache_latents with these


@dataclass
class SweepOutcome:
    sweep: Sweep
    exit_code: int
    stopped_at: int | None = None  # the trial Ctrl-C (or a signal) stopped


class TrialError(KohyaWrapError):
    """A trial's spec does not validate: which trial, then the spec's own problems."""

    def __init__(self, values: dict[str, Any], cause: KohyaWrapError) -> None:
        where = ", ".join(f"{k}={v}" for k, v in values.items())
        super().__init__(f"sweep trial ({where})")
        self.cause = cause

    def lines(self) -> list[str]:
        first, *rest = self.cause.lines()
        return [f"{self.message}: {first}", *rest]


def _dataset_value(loaded: LoadedSpec, key: str) -> list[Any]:
    spec = loaded.spec
    found = [spec.dataset.set_fields().get(key)]
    found += [concept.set_fields().get(key) for concept in spec.concepts]
    return found


def cache_key(loaded: LoadedSpec) -> str:
    """The settings that shape the cached latents: trials with equal keys can share them."""
    settings, spec = loaded.settings, loaded.spec
    return json.dumps(
        {
            "base": str(spec.model.base),
            "vae": str(spec.model.vae) if spec.model.vae else None,
            "resolution": list(settings.resolution),
            "bucket": [str(v) for v in vars(settings.bucket).values()],
            "dataset": {key: _dataset_value(loaded, key) for key in LATENT_KEYS},
        },
        sort_keys=True,
        default=str,
    )


def build_sweep(
    directory: Path,
    overrides: tuple[str, ...],
    vary: dict[str, list[Any]],
    shared_cache: bool = True,
    sampler: str | None = None,
    count: int | None = None,
    seed: int | None = None,
) -> Sweep:
    """The sweep's trials, each validated; nothing written yet."""
    loaded = load_project(directory, overrides)
    root = loaded.layout.root
    table = loaded.spec.sweep
    space: dict[str, Any] = dict(table.space()) if table else {}
    space.update(vary)
    sampler = sampler or (table.sampler if table else "grid")
    count = count if count is not None else (table.count if table else None)
    seed = seed if seed is not None else (table.seed if table else 0)
    if sampler == "random" and count is None:
        raise KohyaWrapError("a random sweep needs a count", "--count N, or count = N in [sweep]")
    drawn = sample_trials(space, sampler, count, seed)
    sweep_id = new_sweep_id(root)
    planned: list[tuple[dict[str, Any], list[str], str, bool]] = []  # values, --set, cache key, own state
    for values in drawn:
        sets = [*overrides, *(f"{key}={toml_value(value)}" for key, value in values.items())]
        try:
            trial_loaded = load_project(root, sets)
        except KohyaWrapError as exc:
            raise TrialError(values, exc) from None
        options = trial_loaded.schema.options(trial_loaded.settings.script)
        training_set = trial_loaded.spec.training.set_fields()
        own_state = "save_state" in options and "save_state" not in training_set
        if own_state:  # a stopped trial resumes from its newest saved state, not from step 0
            sets += ["training.save_state=true", *_latest_states_only(trial_loaded, options, training_set)]
        if "cache_latents_to_disk" in options:  # every sd-scripts since 2023; a checkout without it: as the spec says
            if shared_cache and not any(any(_dataset_value(trial_loaded, k)) for k in NO_CACHE_WITH):
                sets += ["training.cache_latents=true", "training.cache_latents_to_disk=true"]
            elif not shared_cache:
                sets += ["training.cache_latents_to_disk=false"]
        planned.append((values, sets, cache_key(trial_loaded), own_state))
    groups: dict[str, int] = {}
    for _, _, key, _ in planned:
        groups.setdefault(key, len(groups) + 1)
    planned.sort(key=lambda item: groups[item[2]])  # stable: Optuna's order within a group
    trials = []
    for index, (values, sets, key, own_state) in enumerate(planned, 1):
        output_name = f"{loaded.settings.name}-{sweep_id}-t{index}"
        trial_sets = [*sets, f"name={toml_value(output_name)}"]
        try:
            load_project(root, trial_sets)
        except KohyaWrapError as exc:
            raise TrialError(values, exc) from None
        trials.append(Trial(index, f"t{index}", output_name, values, trial_sets, groups[key], own_state))
    jsonable = {k: (v if isinstance(v, list) else v.model_dump()) for k, v in space.items()}
    return Sweep(sweep_id, root, now(), sampler, seed, jsonable, list(overrides), shared_cache, trials, root.name)


def _latest_states_only(loaded: LoadedSpec, options, training_set: dict[str, Any]) -> list[str]:
    """The sd-scripts options that keep only the newest training states of a trial (a state holds the
    optimizer's too: several times the LoRA's size, at every save). sd-scripts removes the state
    `save_every_n_epochs × N` epochs back, and a step state older than N steps (rounded to the save
    interval): N = 1 epoch keeps one epoch state, N = the step interval keeps the newest two."""
    settings, sets = loaded.settings, []
    every_epochs, every_steps = settings.save_every_n_epochs, settings.save_every_n_steps
    if every_epochs and "save_last_n_epochs_state" in options and "save_last_n_epochs_state" not in training_set:
        sets.append("training.save_last_n_epochs_state=1")
    if every_steps and "save_last_n_steps_state" in options and "save_last_n_steps_state" not in training_set:
        sets.append(f"training.save_last_n_steps_state={every_steps}")
    return sets


def sweep_lock(root: Path):
    return exclusive_lock(
        sweeps_dir(root) / ".lock",
        f"{root}: a sweep is already running here",
        "wait for it, or stop it (Ctrl-C) and continue it later with --resume",
    )


def run_trial(
    sweep: Sweep,
    trial: Trial,
    make_renderer: Callable[[Sweep, Trial, Any], Any],
    grace: float,
    locks: bool = True,
    gpu: str | None = None,
) -> int:
    """Train one trial in this process, its status written before and after; its run's exit code. Its
    configs are rendered into sweeps/<id>/<trial>/config (the project's config/ is left as `plan` wrote it,
    and trials side by side never share a file). `locks=False`: the sweep holds the project's locks."""
    status = sweep.status(trial.index)
    previous = status.status
    host, pid = host_pid()
    status.status, status.started, status.ended, status.error = RUNNING, now(), None, None
    status.host, status.pid, status.verdict, status.gpu = host, pid, None, gpu
    sweep.save_status(status)
    try:
        configs = sweep.folder / trial.name / "config"
        report, plan, _ = checked_plan(sweep.root, tuple(trial.overrides), "training", configs)
        require_trainable(report.sd_scripts, sweep.root)
        renderer = make_renderer(sweep, trial, plan)
        for note in plan.notes:  # what loading decided, as `run` says it (e.g. a preset's unet_lr dropped)
            renderer.note(f"note: {note}")
        resuming = None
        layout = report.loaded.layout
        if previous in (INTERRUPTED, RUNNING, FAILED) and saved_states(layout.model_dir, plan.name):
            resuming = resume_run(report, plan)
            renderer.note(f"trial {trial.name}: resuming from {resuming.state.path.name} at step {resuming.state.step}")
        elif previous in (INTERRUPTED, RUNNING):
            renderer.note(f"trial {trial.name}: no saved training state, so it starts over")
        label = SweepLabel(id=sweep.id, trial=trial.index, of=len(sweep.trials), name=trial.name, values=trial.values)
        folders = [layout.image_dir, layout.reg_dir]
        before = latent_files(folders)
        outcome = supervise(report, plan, renderer, grace, resuming, label=label, locks=locks)
        after = latent_files(folders)
        status.latents_cached = sum(1 for path, stamp in after.items() if before.get(path) != stamp)
        status.latents_reused = len(after) - status.latents_cached
    except KohyaWrapError as exc:
        status.status, status.ended, status.error = FAILED, now(), " — ".join(exc.lines())
        sweep.save_status(status)
        return exc.exit_code
    except BaseException:
        status.status, status.ended = INTERRUPTED, now()
        sweep.save_status(status)
        raise
    status.run_ids.append(outcome.run_id)
    status.verdict, status.ended = outcome.verdict, now()
    if outcome.exit_code == ExitCode.OK:
        status.status = TRAINED
        if trial.own_state:  # kept only to resume this trial, which is done
            for state in saved_states(layout.model_dir, plan.name):
                shutil.rmtree(state.path, ignore_errors=True)
    elif stopped(outcome.exit_code, outcome.verdict):
        status.status = INTERRUPTED
    else:
        status.status = FAILED
        status.error = "; ".join(outcome.diagnosis) or outcome.verdict
    sweep.save_status(status)
    return outcome.exit_code


def may_start(trial: Trial, running: list[Trial], cached: set[int], parallel: int) -> bool:
    """Whether `trial` may start beside the `running` ones: a cache group whose latents a trained trial has
    made runs side by side (up to `parallel`); otherwise the trial runs alone, making them. Two groups
    never run at once (sd-scripts names a cache file by the image's own size: they would share files)."""
    if trial.cache_group in cached:
        return len(running) < parallel and all(t.cache_group == trial.cache_group for t in running)
    return not running


def latent_files(folders: list[Path]) -> dict[Path, int]:
    """sd-scripts' latent cache files under the training folders, and when each was last written."""
    found: dict[Path, int] = {}
    for folder in folders:
        if folder.is_dir():
            for path in folder.rglob("*.npz"):
                try:
                    found[path] = path.stat().st_mtime_ns
                except OSError:
                    continue
    return found


def trial_argv(root: str | Path, sweep_id: str, index: int, grace: float) -> list[str]:
    """One trial in a process of its own (`--gpus`, a Ray task): `kohya-wrap sweep-trial`, with the project's
    locks held by the sweep that starts it."""
    argv = [sys.executable, "-m", "kohya_wrap", "sweep-trial", str(root), sweep_id, str(index), "--json"]
    return argv + ["--grace", str(grace), "--locks-held"]


def stopped(exit_code: int, verdict: str) -> bool:
    """Ctrl-C, SIGTERM or SIGHUP stopped it: the sweep stops too, resumable."""
    return exit_code in (ExitCode.INTERRUPTED, 143, 129) or verdict.startswith(("stopped", "interrupted"))


def run_sweep_locally(
    sweep: Sweep,
    trials: list[Trial],
    make_renderer: Callable[[Sweep, Trial, Any], Any],
    on_trial: Callable[[Trial, str], None],
    grace: float,
    fail_fast: bool,
) -> SweepOutcome:
    """The trials one after another in this process. A failed trial is recorded and the sweep goes on
    (unless `fail_fast`); Ctrl-C stops the trial the way `run` does, and the sweep with it."""
    outcome = SweepOutcome(sweep, ExitCode.OK)
    with sweep_lock(sweep.root):
        for trial in trials:
            on_trial(trial, "start")
            code = run_trial(sweep, trial, make_renderer, grace)
            status = sweep.status(trial.index)
            on_trial(trial, status.status)
            if status.status == INTERRUPTED:
                outcome.exit_code, outcome.stopped_at = code, trial.index
                return outcome
            if status.status == FAILED:
                outcome.exit_code = ExitCode.FAILED
                if fail_fast:
                    return outcome
    return outcome
