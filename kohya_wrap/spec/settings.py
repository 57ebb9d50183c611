"""Derived settings: every value a command works out from the spec (the spec's own value, else what the
installed sd-scripts does by default), computed once, right after the spec validates.

check, lint, plan, prep, run, grid and the run record read these and never the spec's raw fields for
them, so two commands cannot disagree about, say, the batch size (sd-scripts takes dataset.toml's
`batch_size` over `train_batch_size`: so does every command here) or the name of the final LoRA file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.paths import ProjectLayout
from kohya_wrap.sdscripts import naming
from kohya_wrap.sdscripts.schema import OptionSchema
from kohya_wrap.sdscripts.stepmath import BucketSettings, CheckpointSchedule, checkpoint_names
from kohya_wrap.spec.models import ConceptSpec, ProjectSpec

FOLDER_NAME = re.compile(r"^(\d+)_(.+)$")  # <repeats>_<class tokens>, the kohya_ss GUI's folder convention
DEFAULT_NEAR_DUPLICATE_DISTANCE = 5  # difference-hash bits
CLIP_FAMILIES = ("sd15", "sd2", "sdxl")  # captions read through CLIP's 75-token window (FLUX reads T5 too)


@dataclass(frozen=True)
class ConceptSettings:
    """One concept with its folder and the caption settings sd-scripts applies to it (its own subset
    keys over [dataset], over sd-scripts' defaults)."""

    concept: ConceptSpec
    folder: Path
    caption_extension: str
    shuffle_caption: bool
    keep_tokens: int
    keep_tokens_separator: str
    alpha_mask: bool  # transparent areas are left out of the loss (the concept's, [dataset]'s or --alpha_mask)

    @property
    def label(self) -> str:
        return self.concept.label

    @property
    def is_reg(self) -> bool:
        return self.concept.is_reg


@dataclass(frozen=True)
class Settings:
    name: str  # output_name
    family: str
    script: str
    network_module: str
    resolution: tuple[int, int]
    bucket: BucketSettings
    batch_size: int  # dataset.toml [general] batch_size, which sd-scripts takes over train_batch_size
    gradient_accumulation_steps: int
    num_processes: int
    mixed_precision: str
    max_train_epochs: int | None  # when set, sd-scripts computes the steps from it
    max_train_steps: int
    save_every_n_epochs: int | None
    save_every_n_steps: int | None
    checkpoint_extension: str  # ".safetensors"
    caption_extension: str  # [dataset]'s; a concept may have its own
    concepts: tuple[ConceptSettings, ...]
    sample_size: tuple[int, int]  # the [sample] width and height, else the training resolution
    token_window: int | None  # CLIP tokens read per caption; None: not a CLIP family
    tokenizer_cache_dir: Path | None
    near_duplicate_distance: int
    seed: int | None

    @property
    def final_checkpoint(self) -> str:
        return naming.final_checkpoint(self.name, self.checkpoint_extension)

    def checkpoint_names(self, total_steps: int, epochs: int, steps_per_epoch: int) -> CheckpointSchedule:
        """Files sd-scripts writes to output_dir, in order: step saves, epoch saves (not the last
        epoch), then the final `<name><ext>`; a sequence worked out on demand, never a list of every
        step (its length and its first and last names cost the same for any number of steps)."""
        return checkpoint_names(
            self.name,
            self.checkpoint_extension,
            total_steps,
            epochs,
            steps_per_epoch,
            self.save_every_n_epochs,
            self.save_every_n_steps,
        )

    def select_concepts(self, label: str | None, spec_file: Path, training_only: bool = False) -> list[ConceptSettings]:
        """The concept called `label` (its token, or class for regularization), or all of them (only
        the training ones with `training_only`); an unknown label names the ones there are."""
        if label is None:
            return [c for c in self.concepts if not (training_only and c.is_reg)]
        chosen = [c for c in self.concepts if c.label == label]
        if not chosen:
            labels = ", ".join(c.label for c in self.concepts)
            raise KohyaWrapError(f"--concept {label}: no such concept in {spec_file.name}", f"use one of: {labels}")
        return chosen

    def as_dict(self) -> dict[str, Any]:
        """What a run records of them."""
        return {
            "name": self.name,
            "family": self.family,
            "script": self.script,
            "network_module": self.network_module,
            "resolution": list(self.resolution),
            "bucket": {
                "enable_bucket": self.bucket.enable_bucket,
                "min_reso": self.bucket.min_reso,
                "max_reso": self.bucket.max_reso,
                "reso_steps": self.bucket.reso_steps,
                "no_upscale": self.bucket.no_upscale,
            },
            "batch_size": self.batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "num_processes": self.num_processes,
            "mixed_precision": self.mixed_precision,
            "max_train_epochs": self.max_train_epochs,
            "max_train_steps": self.max_train_steps,
            "save_every_n_epochs": self.save_every_n_epochs,
            "save_every_n_steps": self.save_every_n_steps,
            "final_checkpoint": self.final_checkpoint,
            "caption_extension": self.caption_extension,
            "concepts": [
                {
                    "label": c.label,
                    "folder": str(c.folder),
                    "is_reg": c.is_reg,
                    "caption_extension": c.caption_extension,
                    "shuffle_caption": c.shuffle_caption,
                    "keep_tokens": c.keep_tokens,
                }
                for c in self.concepts
            ],
            "sample_size": list(self.sample_size),
            "seed": self.seed,
        }


def concept_folder(layout: ProjectLayout, concept: ConceptSpec) -> Path:
    """image/<repeats>_<token> <class> (reg/<repeats>_<class> for regularization images); where only a
    folder with another repeats prefix exists (the spec's repeats changed), that one: sd-scripts reads
    the repeats from dataset.toml's num_repeats, the prefix is only the kohya_ss GUI's convention, so
    changing repeats needs no renaming."""
    parent = layout.reg_dir if concept.is_reg else layout.image_dir
    canonical = parent / concept.folder_name
    if canonical.is_dir() or not parent.is_dir():
        return canonical
    others = sorted(
        p
        for p in parent.iterdir()
        if p.is_dir() and (m := FOLDER_NAME.match(p.name)) and m.group(2) == concept.class_tokens
    )
    return others[0] if len(others) == 1 else canonical


def _value(*candidates: Any) -> Any:
    """The first candidate that is set (not None)."""
    return next((c for c in candidates if c is not None), None)


def derive_settings(spec: ProjectSpec, schema: OptionSchema, layout: ProjectLayout) -> Settings:
    family = spec.model.family_info
    script = family.script

    def default(option: str) -> Any:
        return schema.default(script, option)

    dataset, training = spec.dataset, spec.training
    general = dataset.set_fields()
    size = dataset.size
    assert size is not None  # the spec validator requires it

    enable = bool(_value(dataset.enable_bucket, default("enable_bucket")))
    steps = _value(dataset.bucket_reso_steps, default("bucket_reso_steps"))
    min_reso = _value(dataset.min_bucket_reso, default("min_bucket_reso"))
    max_reso = _value(dataset.max_bucket_reso, default("max_bucket_reso"))
    if enable:  # sd-scripts' adjust_min_max_bucket_reso_by_steps: min rounds down, max up, to steps
        min_reso -= min_reso % steps
        max_reso += (steps - max_reso % steps) % steps
    bucket = BucketSettings(
        resolution=size,
        enable_bucket=enable,
        min_reso=min_reso,
        max_reso=max_reso,
        reso_steps=steps,
        no_upscale=bool(_value(dataset.bucket_no_upscale, default("bucket_no_upscale"))),
    )

    concepts = []
    for concept in spec.concepts:
        own = concept.subset_options()
        concepts.append(
            ConceptSettings(
                concept=concept,
                folder=concept_folder(layout, concept),
                caption_extension=own.get("caption_extension", dataset.caption_extension),
                shuffle_caption=bool(
                    _value(own.get("shuffle_caption"), dataset.shuffle_caption, default("shuffle_caption"))
                ),
                keep_tokens=int(_value(own.get("keep_tokens"), dataset.keep_tokens, default("keep_tokens")) or 0),
                keep_tokens_separator=str(
                    _value(
                        own.get("keep_tokens_separator"),
                        general.get("keep_tokens_separator"),
                        default("keep_tokens_separator"),
                    )
                    or ""
                ),
                alpha_mask=bool(
                    _value(
                        own.get("alpha_mask"),
                        general.get("alpha_mask"),
                        training.set_fields().get("alpha_mask"),
                        default("alpha_mask"),
                    )
                ),
            )
        )

    extension = "." + (training.save_model_as or default("save_model_as") or "safetensors")
    cache_dir = training.set_fields().get("tokenizer_cache_dir")
    near = spec.prep.near_duplicate_distance
    return Settings(
        name=spec.name,
        family=family.name,
        script=script,
        network_module=training.network_module or family.network_module,
        resolution=size,
        bucket=bucket,
        batch_size=int(_value(general.get("batch_size"), training.train_batch_size, default("train_batch_size")) or 1),
        gradient_accumulation_steps=int(
            _value(training.gradient_accumulation_steps, default("gradient_accumulation_steps")) or 1
        ),
        num_processes=spec.launch.num_processes,
        mixed_precision=_value(training.mixed_precision, spec.launch.mixed_precision, default("mixed_precision"))
        or "no",
        max_train_epochs=training.max_train_epochs,
        max_train_steps=int(_value(training.max_train_steps, default("max_train_steps"))),
        save_every_n_epochs=training.save_every_n_epochs,
        save_every_n_steps=training.save_every_n_steps,
        checkpoint_extension=extension,
        caption_extension=dataset.caption_extension,
        concepts=tuple(concepts),
        sample_size=(spec.sample.width or size[0], spec.sample.height or size[1]),
        token_window=(training.max_token_length or 75) if family.name in CLIP_FAMILIES else None,
        tokenizer_cache_dir=layout.path(str(cache_dir)) if cache_dir else None,
        near_duplicate_distance=DEFAULT_NEAR_DUPLICATE_DISTANCE if near is None else near,
        seed=training.seed,
    )
