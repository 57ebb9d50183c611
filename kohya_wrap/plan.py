"""`plan`: the rendered configs, sd-scripts' own step math for this data, and the exact launch command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kohya_wrap.check import CheckReport, check_project
from kohya_wrap.errors import Finding, KohyaWrapError
from kohya_wrap.launch.command import build_launch_command, command_line
from kohya_wrap.sdscripts.naming import MAX_EPOCHS, MAX_STEPS
from kohya_wrap.sdscripts.render import RenderedConfigs, render_configs, write_configs
from kohya_wrap.sdscripts.stepmath import BucketSettings, CheckpointSchedule, EpochMath, SubsetImages, epoch_math
from kohya_wrap.spec.load import load_project
from kohya_wrap.spec.settings import Settings

# `plan --json` lists every checkpoint name up to this many; past it, the first and last halves
# (checkpoint_count says how many there are): a save every step of a long run is millions of names.
JSON_CHECKPOINTS = 1000


@dataclass(frozen=True)
class ConceptPlan:
    label: str
    folder: Path
    is_reg: bool
    images: int
    repeats: int


@dataclass(frozen=True)
class TrainingPlan:
    name: str
    script: str
    schema_source: str
    concepts: tuple[ConceptPlan, ...]
    math: EpochMath
    batch_size: int
    gradient_accumulation_steps: int
    num_processes: int
    bucket: BucketSettings
    checkpoints: CheckpointSchedule  # a sequence of names, worked out on demand
    rendered: RenderedConfigs
    command: tuple[str, ...]
    notes: tuple[str, ...]

    def as_dict(self, config_paths: list[Path] | None = None) -> dict[str, Any]:
        math = self.math
        half = JSON_CHECKPOINTS // 2
        return {
            "name": self.name,
            "script": self.script,
            "schema": self.schema_source,
            "total_steps": math.total_steps,
            "steps_per_epoch": math.steps_per_epoch,
            "epochs": math.epochs,
            "batches_per_epoch": math.batches_per_epoch,
            "train_images_x_repeats": math.train_images_x_repeats,
            "reg_images_x_repeats": math.reg_images_x_repeats,
            "batch_size": self.batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "num_processes": self.num_processes,
            "concepts": [
                {
                    "label": c.label,
                    "folder": str(c.folder),
                    "is_reg": c.is_reg,
                    "images": c.images,
                    "repeats": c.repeats,
                    "images_x_repeats": c.images * c.repeats,
                }
                for c in self.concepts
            ],
            "bucketing": self.bucket.enable_bucket,
            "buckets": [
                {"resolution": list(b.resolution), "images": b.images, "images_x_repeats": b.samples}
                for b in math.buckets
            ],
            "checkpoint_count": len(self.checkpoints),
            "checkpoints": [name for part in self.checkpoints.shown(half, half) for name in part],
            "configs": [str(p) for p in config_paths or []],
            "command": list(self.command),
            "command_line": command_line(list(self.command)),
            "notes": list(self.notes),
        }


def build_plan(report: CheckReport) -> TrainingPlan:
    """Needs a report without errors: the math divides by image sizes that must be readable."""
    if report.errors:
        raise KohyaWrapError(
            f"{report.loaded.layout.spec_file}: `check` found {len(report.errors)} error(s)",
            "fix them first (see `kohya-wrap check`)",
        )
    loaded = report.loaded
    spec, schema, settings = loaded.spec, loaded.schema, loaded.settings
    subsets = [
        SubsetImages(
            tuple(image.size for image in item.scan.images if image.size),
            item.concept.concept.repeats,
            item.concept.is_reg,
        )
        for item in report.concepts
    ]
    math = epoch_math(
        subsets,
        settings.bucket,
        batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        num_processes=settings.num_processes,
        max_train_epochs=settings.max_train_epochs,
        max_train_steps=settings.max_train_steps,
    )
    check_run_length(settings, math)
    checkpoints = settings.checkpoint_names(math.total_steps, math.epochs, math.steps_per_epoch)
    notes = [*loaded.notes, *(ref.note for ref in report.models if ref.note)]
    if (spec.dataset.model_extra or {}).get("validation_split"):
        notes.append(
            "dataset.validation_split is set: sd-scripts holds some images out, so it will report fewer steps than "
            "shown"
        )
    models = {ref.field: ref.value for ref in report.models if ref.value is not None}
    rendered = render_configs(spec, settings, loaded.layout, schema, models)
    command = build_launch_command(spec.launch, settings, loaded.layout, report.sd_scripts)
    concepts = tuple(
        ConceptPlan(
            item.concept.label, item.folder, item.concept.is_reg, len(item.scan.images), item.concept.concept.repeats
        )
        for item in report.concepts
    )
    return TrainingPlan(
        name=settings.name,
        script=settings.script,
        schema_source=schema.source,
        concepts=concepts,
        math=math,
        batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        num_processes=settings.num_processes,
        bucket=settings.bucket,
        checkpoints=checkpoints,
        rendered=rendered,
        command=tuple(command),
        notes=tuple(notes),
    )


def check_run_length(settings: Settings, math: EpochMath) -> None:
    """The spec bounds max_train_steps and max_train_epochs (sdscripts/naming.py: MAX_STEPS, MAX_EPOCHS);
    the one sd-scripts works out from the other with this data must stay within them too."""
    per_epoch = math.steps_per_epoch
    if settings.max_train_epochs is not None and math.total_steps > MAX_STEPS:
        raise KohyaWrapError(
            f"training.max_train_epochs = {settings.max_train_epochs} is {math.total_steps:,} steps with this data "
            f"({per_epoch:,} per epoch): more than {MAX_STEPS:,}, the most sd-scripts' 8-digit step file names hold",
            f"use at most max_train_epochs = {MAX_STEPS // per_epoch:,} for this data (a LoRA trains in thousands of "
            "steps)",
        )
    if settings.max_train_epochs is None and math.epochs > MAX_EPOCHS:
        raise KohyaWrapError(
            f"training.max_train_steps = {settings.max_train_steps} is {math.epochs:,} epochs with this data "
            f"({per_epoch:,} step(s) per epoch): more than {MAX_EPOCHS:,}, the most sd-scripts' 6-digit epoch file "
            "names hold",
            f"use at most max_train_steps = {MAX_EPOCHS * per_epoch:,} for this data, or more repeats per epoch",
        )


class CheckFailed(KohyaWrapError):
    """`check` found errors, so nothing is planned or trained; the findings go with it to be shown."""

    def __init__(self, report: CheckReport, purpose: str) -> None:
        super().__init__(
            f"{report.loaded.layout.spec_file}: {len(report.errors)} error(s) to fix before {purpose}",
            "see the lines above (`kohya-wrap check` shows them too)",
        )
        self.report = report

    @property
    def findings(self) -> list[Finding]:
        return self.report.findings


def checked_plan(
    directory: Path, overrides: tuple[str, ...] = (), purpose: str = "planning", configs: Path | None = None
) -> tuple[CheckReport, TrainingPlan, list[Path]]:
    """What `plan` and `run` share: check (stop on errors, before any model loads), plan, render (into
    `configs` instead of config/ when given: a sweep trial's own folder)."""
    report = check_project(load_project(directory, overrides, configs=configs))
    if report.errors:
        raise CheckFailed(report, purpose)
    training_plan = build_plan(report)
    return report, training_plan, write_configs(training_plan.rendered, report.loaded.layout)
