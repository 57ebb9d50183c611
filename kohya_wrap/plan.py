"""`plan`: the rendered configs, sd-scripts' own step math for this data, and the exact launch command."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kohya_wrap.check import CheckReport, effective
from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.sdscripts.render import RenderedConfigs, render_configs
from kohya_wrap.sdscripts.stepmath import BucketSettings, EpochMath, SubsetImages, checkpoint_names, epoch_math
from kohya_wrap.launch.command import build_launch_command, command_line


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
    checkpoints: tuple[str, ...]
    rendered: RenderedConfigs
    command: tuple[str, ...]
    notes: tuple[str, ...]

    def as_dict(self, config_paths: list[Path] | None = None) -> dict[str, Any]:
        math = self.math
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
                {"label": c.label, "folder": str(c.folder), "is_reg": c.is_reg, "images": c.images, "repeats": c.repeats, "images_x_repeats": c.images * c.repeats}
                for c in self.concepts
            ],
            "bucketing": self.bucket.enable_bucket,
            "buckets": [{"resolution": list(b.resolution), "images": b.images, "images_x_repeats": b.samples} for b in math.buckets],
            "checkpoints": list(self.checkpoints),
            "configs": [str(p) for p in config_paths or []],
            "command": list(self.command),
            "command_line": command_line(list(self.command)),
            "notes": list(self.notes),
        }


def build_plan(report: CheckReport) -> TrainingPlan:
    """Needs a report without errors: the math divides by image sizes that must be readable."""
    if report.errors:
        raise KohyaWrapError(f"{report.loaded.layout.spec_file}: `check` found {len(report.errors)} error(s)", "fix them first (see `kohya-wrap check`)")
    loaded = report.loaded
    spec, schema = loaded.spec, loaded.schema
    script = spec.model.script
    dataset, training = spec.dataset, spec.training
    extras = dataset.model_extra or {}
    default = lambda name: schema.default(script, name)  # noqa: E731 - sd-scripts' argparse defaults

    bucket = report.bucket
    batch_size = extras.get("batch_size") or training.train_batch_size or default("train_batch_size") or 1
    accumulation = effective(training.gradient_accumulation_steps, default("gradient_accumulation_steps")) or 1
    subsets = [
        SubsetImages(tuple(image.size for image in item.scan.images if image.size), item.concept.repeats, item.concept.is_reg)
        for item in report.concepts
    ]
    math = epoch_math(
        subsets,
        bucket,
        batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        num_processes=spec.launch.num_processes,
        max_train_epochs=training.max_train_epochs,
        max_train_steps=effective(training.max_train_steps, default("max_train_steps")),
    )
    extension = "." + (training.save_model_as or default("save_model_as") or "safetensors")
    checkpoints = checkpoint_names(
        spec.name, extension, math.total_steps, math.epochs, math.steps_per_epoch,
        training.save_every_n_epochs, training.save_every_n_steps,
    )
    notes = [ref.note for ref in report.models if ref.note]
    if extras.get("validation_split"):
        notes.append("dataset.validation_split is set: sd-scripts holds some images out, so it will report fewer steps than shown")
    models = {ref.field: ref.value for ref in report.models if ref.value is not None}
    rendered = render_configs(spec, loaded.layout, schema, models)
    command = build_launch_command(spec, loaded.layout, report.sd_scripts, os.cpu_count() or 1)
    concepts = tuple(
        ConceptPlan(item.concept.label, item.folder, item.concept.is_reg, len(item.scan.images), item.concept.repeats)
        for item in report.concepts
    )
    return TrainingPlan(
        name=spec.name, script=script, schema_source=schema.source, concepts=concepts, math=math,
        batch_size=batch_size, gradient_accumulation_steps=accumulation, num_processes=spec.launch.num_processes,
        bucket=bucket, checkpoints=tuple(checkpoints), rendered=rendered, command=tuple(command), notes=tuple(notes),
    )
