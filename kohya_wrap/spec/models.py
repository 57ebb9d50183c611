"""The project spec users write (`kohya-wrap.toml`), as frozen Pydantic models.

Friendly names where sd-scripts is awkward (`[model]`, `[[concepts]]`, `[sample]`, `[launch]`), sd-scripts'
own names elsewhere (`[dataset]` = its dataset_config keys, `[training]` = its argparse dests). The common
options are typed here with bounds, so a wrong type fails before any model loads; every other key in
`[training]`, `[dataset]` and a concept is allowed by the model and then checked against the option
schema of the installed sd-scripts (sdscripts/schema.py), so an sd-scripts upgrade needs no code change.
Each cross-field rule is one small validator whose message names the fix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from kohya_wrap.errors import shorten
from kohya_wrap.sdscripts.families import FAMILIES, family_named
from kohya_wrap.sdscripts.families import Family as FamilyInfo
from kohya_wrap.sdscripts.naming import NAME_PATTERN, safe_name
from kohya_wrap.spec.limits import (
    caption_extension_problem,
    family_files_problem,
    model_parts_problem,
    run_length_problem,
)
from kohya_wrap.spec.sweep import SweepSpec

HF_PREFIX = "hf://"


class _Section(BaseModel):
    # strict: TOML has types, so "16" for an integer is a mistake to report, not to guess at
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _OpenSection(BaseModel):
    """A section whose extra keys are sd-scripts' own names, checked later against its option schema."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    def set_fields(self) -> dict[str, Any]:
        """Every key the user set (typed or extra), in sd-scripts' names, None-valued typed fields left out."""
        return self.model_dump(exclude_none=True)


class ModelRef(BaseModel):
    """A parsed model reference: a local file/folder, or a Hugging Face repo (optionally one file in it)."""

    model_config = ConfigDict(frozen=True)

    raw: str
    hub_repo: str | None = None
    hub_file: str | None = None

    @property
    def is_hub(self) -> bool:
        return self.hub_repo is not None

    def local_path(self, relative_to: Path) -> Path:
        path = Path(self.raw).expanduser()
        return path if path.is_absolute() else relative_to / path


def parse_model_ref(value: str) -> ModelRef:
    if not value.startswith(HF_PREFIX):
        return ModelRef(raw=value)
    parts = value[len(HF_PREFIX) :].strip("/").split("/")
    if len(parts) < 2 or not all(parts):
        raise ValueError(
            f"'{value}' is not a hub reference — write hf://owner/repo or hf://owner/repo/file.safetensors"
        )
    return ModelRef(raw=value, hub_repo="/".join(parts[:2]), hub_file="/".join(parts[2:]) or None)


class ModelSpec(_Section):
    base: str = Field(
        description="Base checkpoint: a .safetensors/.ckpt file, a diffusers folder, or hf://owner/repo[/file]."
    )
    family: str = Field(
        "sd15",
        description="Model family; picks the sd-scripts training script (sd15, sd2, sdxl, flux, or one the installed "
        "sd-scripts trains with its own <family>_train_network.py).",
    )
    vae: str | None = Field(None, description="Optional VAE file or folder to use instead of the checkpoint's.")
    v_parameterization: bool = Field(False, description="SD2 768-v models only.")
    clip_l: str | None = Field(None, description="FLUX: the CLIP-L text encoder file.")
    t5xxl: str | None = Field(None, description="FLUX: the T5-XXL text encoder file.")
    ae: str | None = Field(None, description="FLUX: the autoencoder file.")

    @field_validator("family")
    @classmethod
    def check_family(cls, value: str) -> str:
        if family_named(value) is None:
            raise ValueError(
                f"'{shorten(value)}' is not a model family — use one of {', '.join(FAMILIES)}, or the prefix of an "
                'sd-scripts training script (sd3 for sd3_train_network.py), e.g. family = "sdxl"'
            )
        return value

    @field_validator("base", "vae", "clip_l", "t5xxl", "ae")
    @classmethod
    def check_ref(cls, value: str | None) -> str | None:
        if value is not None:
            if not value.strip():
                raise ValueError("is empty — give a file, folder or hf://owner/repo")
            parse_model_ref(value)
        return value

    @model_validator(mode="after")
    def check_v_parameterization_is_sd2(self) -> "ModelSpec":
        if self.v_parameterization and self.family != "sd2":
            raise ValueError(
                f"v_parameterization: is for SD2 768-v models, but family is '{self.family}' — set family = \"sd2\" "
                "or remove v_parameterization"
            )
        return self

    @model_validator(mode="after")
    def check_model_parts(self) -> "ModelSpec":
        given = {"clip_l": self.clip_l, "t5xxl": self.t5xxl, "ae": self.ae, "vae": self.vae}
        problem = model_parts_problem(self.family_info, given)
        if problem:
            raise ValueError(problem)
        return self

    @property
    def base_ref(self) -> ModelRef:
        return parse_model_ref(self.base)

    @property
    def script(self) -> str:
        return self.family_info.script

    @property
    def family_info(self) -> FamilyInfo:
        found = family_named(self.family)
        assert found is not None  # check_family
        return found


_FOLDER_UNSAFE = re.compile(r'[/\\\x00-\x1f<>:"|?*]')


class ConceptSpec(_OpenSection):
    """One subset of training (or regularization) images: the folder `image/<repeats>_<token> <class>`."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True, populate_by_name=True)

    token: str = Field("", description="Trigger word the LoRA learns (empty for regularization concepts).")
    class_: str = Field("", alias="class", description="Class word, e.g. woman, dog, style.")
    repeats: int = Field(description="How many times each image is seen per epoch.", ge=1, le=10_000)
    source: str | None = Field(None, description="Folder that `init --images`/`prep` import from; never modified.")
    is_reg: bool = Field(False, description="Regularization images (folder reg/<repeats>_<class>).")

    @field_validator("token", "class_")
    @classmethod
    def check_folder_safe(cls, value: str) -> str:
        if value != value.strip():
            raise ValueError("has leading or trailing spaces — remove them")
        if _FOLDER_UNSAFE.search(value):
            raise ValueError(
                f"'{value}' contains a character that cannot be part of a folder name (/ \\ : * ? \" < > |) — remove it"
            )
        return value

    @field_validator("token", "class_")
    @classmethod
    def check_one_tag(cls, value: str, info: ValidationInfo) -> str:
        if "," in value:
            example = "mytoken" if info.field_name == "token" else "woman"
            raise ValueError(
                f"'{shorten(value)}' contains a comma, which separates caption tags: sd-scripts and `tags` would "
                f'see two tags — use one word or phrase without commas, e.g. "{example}"'
            )
        return value

    @model_validator(mode="after")
    def check_caption_extension(self) -> "ConceptSpec":
        own = (self.model_extra or {}).get("caption_extension")
        problem = caption_extension_problem(own) if own is not None else None
        if problem:
            raise ValueError(f"caption_extension: {problem}")
        return self

    @model_validator(mode="after")
    def check_words(self) -> "ConceptSpec":
        if self.is_reg:
            if not self.class_:
                raise ValueError('class: a regularization concept needs a class word (e.g. class = "woman")')
            if self.token:
                raise ValueError(
                    "token: regularization images show the class without your token — remove token from this concept"
                )
        elif not self.token:
            raise ValueError('token: is required — set the trigger word, e.g. token = "mytoken"')
        return self

    @property
    def class_tokens(self) -> str:
        """The caption sd-scripts uses for images without a caption file."""
        return " ".join(w for w in (self.token, self.class_) if w)

    @property
    def folder_name(self) -> str:
        return f"{self.repeats}_{self.class_tokens}"

    @property
    def label(self) -> str:
        return self.token or self.class_

    def subset_options(self) -> dict[str, Any]:
        """Per-subset sd-scripts dataset_config keys the user set on this concept."""
        return dict(self.model_extra or {})


class DatasetSpec(_OpenSection):
    """sd-scripts dataset_config keys, rendered into its [general] section."""

    resolution: Union[int, Annotated[list[int], Field(min_length=2, max_length=2)], None] = Field(
        None, description="Training resolution: 512, or [width, height]."
    )
    enable_bucket: bool | None = Field(None, description="Aspect-ratio bucketing.")
    min_bucket_reso: int | None = Field(None, ge=64, le=8192)
    max_bucket_reso: int | None = Field(None, ge=64, le=8192)
    # sd-scripts only recommends a multiple of 8 (--bucket_reso_steps help); the multiple its scripts assert is
    # checked against the family, with bucketing on, in ProjectSpec.check_bucket_steps_fit_the_script
    bucket_reso_steps: int | None = Field(None, ge=1, le=1024)
    bucket_no_upscale: bool | None = None
    caption_extension: str = Field(
        ".txt", description="Caption sidecar extension (sd-scripts' own default is .caption)."
    )
    shuffle_caption: bool | None = None
    keep_tokens: int | None = Field(None, ge=0)
    flip_aug: bool | None = None
    color_aug: bool | None = None
    random_crop: bool | None = None

    @field_validator("resolution")
    @classmethod
    def check_resolution(cls, value):
        sides = (value, value) if isinstance(value, int) else value
        if sides is not None and not all(64 <= s <= 8192 for s in sides):
            raise ValueError(f"{value} is out of range — use 64 to 8192 pixels per side, e.g. 512 or 1024")
        return value

    @field_validator("caption_extension")
    @classmethod
    def check_caption_extension(cls, value: str) -> str:
        problem = caption_extension_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def check_bucket_range(self) -> "DatasetSpec":
        if self.min_bucket_reso and self.max_bucket_reso and self.min_bucket_reso > self.max_bucket_reso:
            raise ValueError(
                f"min_bucket_reso: ({self.min_bucket_reso}) is above max_bucket_reso ({self.max_bucket_reso}) — swap "
                "them"
            )
        return self

    @property
    def size(self) -> tuple[int, int] | None:
        value = self.resolution
        return (value, value) if isinstance(value, int) else tuple(value) if value else None


PositiveFloat = Annotated[float, Field(gt=0)]

# The largest network_dim the networks.* modules of sd-scripts get; LyCORIS reads any dim as its own
# convention (LoKr: a dim of at least half a layer's factor trains that factor as a full matrix; its
# docs say to write "arbitrarily large numbers like 100000" for that), so its dims are not capped.
NETWORK_DIM_MAX = 4096
LYCORIS_MODULE = "lycoris.kohya"


class TrainingSpec(_OpenSection):
    """sd-scripts training arguments by their own names; typed ones get bounds, the rest the live schema."""

    learning_rate: float | None = Field(None, gt=0, le=1.0)
    unet_lr: float | None = Field(None, ge=0, le=1.0)
    text_encoder_lr: Union[float, list[float], None] = None
    network_module: str | None = None
    network_dim: int | None = Field(None, ge=1)  # at most NETWORK_DIM_MAX but with LyCORIS: check_network_dim
    network_alpha: float | None = Field(None, gt=0, le=4096)
    network_args: list[str] | None = None
    network_train_unet_only: bool | None = None
    optimizer_type: str | None = None
    optimizer_args: list[str] | None = None
    lr_scheduler: str | None = None
    lr_warmup_steps: Union[int, float, None] = Field(None, ge=0)
    max_train_epochs: int | None = Field(None, ge=1)
    max_train_steps: int | None = Field(None, ge=1)
    train_batch_size: int | None = Field(None, ge=1, le=1024)
    gradient_accumulation_steps: int | None = Field(None, ge=1, le=1024)
    mixed_precision: Literal["no", "fp16", "bf16"] | None = None
    save_precision: Literal["float", "fp16", "bf16"] | None = None
    save_every_n_epochs: int | None = Field(None, ge=1)
    save_every_n_steps: int | None = Field(None, ge=1)
    save_model_as: Literal["safetensors", "ckpt", "pt"] | None = None
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    gradient_checkpointing: bool | None = None
    cache_latents: bool | None = None
    cache_latents_to_disk: bool | None = None
    cache_text_encoder_outputs: bool | None = None
    clip_skip: int | None = Field(None, ge=1, le=12)
    max_token_length: Literal[150, 225] | None = Field(
        None, description="Omit for 75 tokens; 150 or 225 for longer captions."
    )
    xformers: bool | None = None
    sdpa: bool | None = None
    noise_offset: float | None = Field(None, ge=0, le=1)
    min_snr_gamma: float | None = Field(None, ge=0)
    max_data_loader_n_workers: int | None = Field(None, ge=0)

    @field_validator("text_encoder_lr")
    @classmethod
    def check_text_encoder_lr(cls, value):
        values = value if isinstance(value, list) else [value] if value is not None else []
        if any(v < 0 or v > 1 for v in values):
            raise ValueError(f"{value} is out of range — use 0 (frozen text encoder) up to 1, e.g. 5e-5")
        return value

    @field_validator("max_train_steps", "save_every_n_steps", "max_train_epochs", "save_every_n_epochs")
    @classmethod
    def check_run_length(cls, value: int | None, info: ValidationInfo) -> int | None:
        """Step and epoch counts no run can have (sdscripts/naming.py: MAX_STEPS, MAX_EPOCHS): refused here,
        so nothing downstream meets them."""
        problem = run_length_problem(info.field_name, value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def check_network_dim(self) -> "TrainingSpec":
        dim = self.network_dim
        if dim is not None and dim > NETWORK_DIM_MAX and self.network_module != LYCORIS_MODULE:
            raise ValueError(
                f"network_dim: {dim} is too large for {self.network_module or 'the default network module'} — use "
                f'at most {NETWORK_DIM_MAX} (e.g. 32); only LyCORIS (network_module = "{LYCORIS_MODULE}") takes larger '
                "dims (LoKr's full-matrix convention)"
            )
        return self

    @model_validator(mode="after")
    def check_attention(self) -> "TrainingSpec":
        if self.xformers and self.sdpa:
            raise ValueError("xformers: xformers and sdpa are both enabled — choose one (sdpa needs no extra package)")
        return self

    @model_validator(mode="after")
    def check_cache_to_disk(self) -> "TrainingSpec":
        if self.cache_latents_to_disk and self.cache_latents is False:
            raise ValueError(
                "cache_latents: cache_latents_to_disk is set but cache_latents is false — set cache_latents = true"
            )
        return self


class SamplePrompt(_Section):
    """A sample prompt with its own settings; unset ones fall back to the [sample] section's."""

    text: str
    negative: str | None = None
    width: int | None = Field(None, ge=64, le=8192)
    height: int | None = Field(None, ge=64, le=8192)
    steps: int | None = Field(None, ge=1, le=1000)
    cfg: float | None = Field(None, ge=0, le=100)
    seed: int | None = Field(None, ge=0)
    sampler: str | None = None


class SampleSpec(_Section):
    """Images sd-scripts renders during training, to watch the LoRA learn."""

    prompts: list[Union[str, SamplePrompt]] = Field(default_factory=list)
    negative: str | None = None
    width: int | None = Field(None, ge=64, le=8192, description="Default: the training width.")
    height: int | None = Field(None, ge=64, le=8192, description="Default: the training height.")
    steps: int = Field(20, ge=1, le=1000)
    cfg: float = Field(7.0, ge=0, le=100)
    seed: int | None = Field(1, ge=0, description="Fixed seed so samples are comparable across epochs.")
    sampler: str = Field("euler_a", description="sd-scripts' --sample_sampler (checked against the installed version).")
    every_n_epochs: int | None = Field(None, ge=1)
    every_n_steps: int | None = Field(None, ge=1)
    at_first: bool = Field(False, description="Also sample before training starts (a base-model reference).")

    @field_validator("prompts")
    @classmethod
    def check_prompt_text(cls, prompts):
        for prompt in prompts:
            text = prompt if isinstance(prompt, str) else prompt.text
            if not text.strip():
                raise ValueError("a prompt is empty — write the prompt text")
            if "\n" in text or " --" in text:
                raise ValueError(
                    f"'{text[:40]}' contains a newline or ' --', which sd-scripts' prompt file reads as an option — "
                    "remove it"
                )
        return prompts

    @model_validator(mode="after")
    def check_schedule(self) -> "SampleSpec":
        scheduled = self.every_n_epochs or self.every_n_steps or self.at_first
        if scheduled and not self.prompts:
            raise ValueError(
                'prompts: a sampling schedule is set but there are no prompts — add prompts = ["mytoken woman, '
                'portrait"]'
            )
        return self

    @property
    def enabled(self) -> bool:
        """Sampling during training: prompts and a schedule (prompts alone are `grid`'s defaults)."""
        return bool(self.prompts) and bool(self.every_n_epochs or self.every_n_steps or self.at_first)


class LaunchSpec(_Section):
    """accelerate launch options: how many processes, GPUs and machines."""

    num_processes: int = Field(1, ge=1, description="Total processes (GPUs) across all machines.")
    num_machines: int = Field(1, ge=1)
    machine_rank: int = Field(0, ge=0)
    main_process_ip: str | None = None
    main_process_port: int | None = Field(None, ge=1, le=65535)
    gpu_ids: str | None = Field(None, description='GPUs of this machine to use, e.g. "0,1" or "all".')
    multi_gpu: bool | None = Field(None, description="Default: true when num_processes > 1.")
    num_cpu_threads_per_process: int | None = Field(
        None, ge=1, description="Default: this machine's cores / processes per machine."
    )
    mixed_precision: Literal["no", "fp16", "bf16"] | None = Field(
        None, description="Default: training.mixed_precision."
    )

    @field_validator("gpu_ids")
    @classmethod
    def check_gpu_ids(cls, value: str | None) -> str | None:
        if value is not None and value != "all" and not re.fullmatch(r"\d+(,\d+)*", value):
            raise ValueError(f'\'{value}\' is not a GPU list — write "0", "0,1" or "all"')
        return value

    @model_validator(mode="after")
    def check_machines(self) -> "LaunchSpec":
        if self.machine_rank >= self.num_machines:
            raise ValueError(
                f"machine_rank: {self.machine_rank} needs num_machines > {self.machine_rank} — ranks count from 0"
            )
        if self.num_processes % self.num_machines:
            raise ValueError(
                f"num_processes: ({self.num_processes}) is the total over all machines and must be a multiple of "
                f"num_machines ({self.num_machines})"
            )
        if self.num_machines > 1 and (not self.main_process_ip or not self.main_process_port):
            raise ValueError(
                "main_process_ip: several machines need main_process_ip and main_process_port (the rank-0 machine's "
                "address) — set both"
            )
        return self

    @property
    def processes_per_machine(self) -> int:
        return self.num_processes // self.num_machines


class SdScriptsSpec(_Section):
    """An existing sd-scripts checkout for this project (`kohya-wrap vendor use PATH`) instead of the
    vendored one; e.g. the one inside a kohya_ss GUI install."""

    path: str | None = Field(None, description="The sd-scripts checkout (relative to the project, or absolute).")
    python: str | None = Field(
        None, description="The Python of its venv (default: venv/bin/python beside or inside it)."
    )


_HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


class PrepSpec(_Section):
    """How `kohya-wrap prep` turns each concept's source photos into training images."""

    mode: Literal["crop", "fit", "bucket", "none"] | None = Field(
        None,
        description="crop (default): cover the resolution and crop to it; fit: pad; bucket: sd-scripts' own bucket "
        "size; none: convert only.",
    )
    format: Literal["png", "jpg", "webp"] | None = Field(None, description="Output format (default png, lossless).")
    quality: int | None = Field(None, ge=50, le=100, description="JPEG/WebP quality (default 95).")
    focus: Literal["center", "entropy"] | None = Field(
        None, description="Crop window: center (default), or entropy: the most detailed region."
    )
    background: str | None = Field(None, description="Colour behind transparent pixels, #rrggbb (default #ffffff).")
    pad_color: str | None = Field(None, description="fit mode's border colour, #rrggbb (default #000000).")
    min_size: int | None = Field(
        None,
        ge=1,
        description="Reject images whose shorter side is below this (default: half the resolution's shorter side).",
    )
    near_duplicate_distance: int | None = Field(
        None,
        ge=0,
        le=32,
        description="Difference-hash bits two images may differ by and still be near-duplicates (default 5; 0 turns "
        "the check off).",
    )
    engine: Literal["auto", "vips", "pillow"] | None = Field(
        None,
        description="Decode/resize engine: auto (default: libvips for JPEGs when pyvips is installed, else Pillow), "
        "vips, or pillow.",
    )

    @field_validator("background", "pad_color")
    @classmethod
    def check_color(cls, value: str | None) -> str | None:
        if value is not None and not _HEX_COLOR.match(value):
            raise ValueError(f"'{value}' is not a #rrggbb colour — e.g. \"#ffffff\"")
        return value


class ProjectSpec(_Section):
    """A whole project: what to train on, from which model, with which settings."""

    extends: Union[str, None] = Field(None, description="Preset name or path this spec builds on.")
    name: str = Field(description="LoRA output name: ASCII letters, digits, - _ . only.")
    model: ModelSpec
    concepts: list[ConceptSpec] = Field(min_length=1)
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    sample: SampleSpec = Field(default_factory=SampleSpec)
    launch: LaunchSpec = Field(default_factory=LaunchSpec)
    prep: PrepSpec = Field(default_factory=PrepSpec)
    sd_scripts: SdScriptsSpec = Field(default_factory=SdScriptsSpec)
    sweep: Union[SweepSpec, None] = None  # `kohya-wrap sweep`'s variations (spec/sweep.py); no run reads it

    @field_validator("name")
    @classmethod
    def check_name(cls, value: str) -> str:
        if not NAME_PATTERN.fullmatch(value) or value in {".", ".."}:
            kept = safe_name(value)
            suggestion = kept if kept and kept != value else "my_lora"
            raise ValueError(
                f"'{value}' must use only ASCII letters, digits, - _ . (sd-scripts puts it in file names and "
                f'metadata; other characters come out garbled in other tools) — e.g. name = "{suggestion}"'
            )
        return value

    @model_validator(mode="after")
    def check_has_training_concept(self) -> "ProjectSpec":
        if all(c.is_reg for c in self.concepts):
            raise ValueError("concepts: all are regularization images — add a concept with a token")
        return self

    @model_validator(mode="after")
    def check_unique_folders(self) -> "ProjectSpec":
        seen: set[tuple[bool, str]] = set()
        for concept in self.concepts:
            key = (concept.is_reg, concept.folder_name)
            if key in seen:
                raise ValueError(
                    f"concepts: two concepts map to the same folder '{concept.folder_name}' — give them different "
                    "tokens or classes"
                )
            seen.add(key)
        return self

    @model_validator(mode="after")
    def check_epochs_or_steps(self) -> "ProjectSpec":
        if self.training.max_train_epochs is None and self.training.max_train_steps is None:
            raise ValueError(
                "training.max_train_epochs: training length is not set — set training.max_train_epochs (e.g. 10) or "
                "training.max_train_steps"
            )
        return self

    @model_validator(mode="after")
    def check_mixed_precision_agrees(self) -> "ProjectSpec":
        launch_mp, train_mp = self.launch.mixed_precision, self.training.mixed_precision
        if launch_mp and train_mp and launch_mp != train_mp:
            raise ValueError(
                f"launch.mixed_precision: ('{launch_mp}') differs from training.mixed_precision ('{train_mp}') — "
                "remove launch.mixed_precision; it follows training's"
            )
        return self

    @model_validator(mode="after")
    def check_bucket_steps_fit_the_script(self) -> "ProjectSpec":
        # sd-scripts asserts the multiple only with bucketing on (with it off, it sets bucket_reso_steps to None);
        # unset enable_bucket is checked too, since a bucket step says buckets are meant
        steps, needed = self.dataset.bucket_reso_steps, self.model.family_info.bucket_step_multiple
        if steps is not None and steps % needed and self.dataset.enable_bucket is not False:
            raise ValueError(
                f"dataset.bucket_reso_steps: {steps} is not a multiple of {needed}, which {self.model.script} "
                f"requires with bucketing on — use {needed * max(1, round(steps / needed))} (or set "
                "dataset.enable_bucket = false: sd-scripts then ignores bucket_reso_steps)"
            )
        return self

    @model_validator(mode="after")
    def check_family_files(self) -> "ProjectSpec":
        problem = family_files_problem(self.model.family_info, self.training.model_extra or {})
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def check_resolution_set(self) -> "ProjectSpec":
        if self.dataset.resolution is None:
            hint = self.model.family_info.resolution
            raise ValueError(f"dataset.resolution: is not set — set dataset.resolution = {hint}")
        return self

    @property
    def training_concepts(self) -> list[ConceptSpec]:
        return [c for c in self.concepts if not c.is_reg]
