"""ProjectSpec → what sd-scripts reads: `--config_file` (train.toml), `--dataset_config` (dataset.toml)
and the sample prompt file. Pure: data in, text out; `write_configs` is the one effect.

sd-scripts flattens every table of --config_file into one namespace and never converts types, so values
are coerced to each option's schema type here, paths are absolute, and `resolution` is the "W,H" string
its code splits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from kohya_wrap import __version__
from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.fsutil import write_text_atomic
from kohya_wrap.paths import ProjectLayout
from kohya_wrap.sdscripts.prompts import PromptLine
from kohya_wrap.sdscripts.schema import OptionSchema, coerce_dataset_value, coerce_option_value
from kohya_wrap.spec.models import ProjectSpec, SamplePrompt
from kohya_wrap.spec.settings import Settings

HEADER = (
    "# Rendered by kohya-wrap {version} from {spec} — do not edit: edit the spec, then run\n"
    "# `kohya-wrap plan` (or `run`) to render it again.\n"
)


# sd-scripts' [training] options that name a file or folder: a relative one in the spec is relative to the
# project folder (docs/spec.md), while sd-scripts runs in its own folder
# model files a family's script takes as options of its own, beside the required ones (families.py)
FAMILY_FILE_OPTIONS = {"sd3": frozenset({"clip_g"})}
PATH_OPTIONS = frozenset(
    {
        "tokenizer_cache_dir",
        "network_weights",
        "base_weights",
        "resume",
        "conditioning_data_dir",
        "console_log_file",
        "log_tracker_config",
        "offload_optimizer_nvme_path",
        "offload_param_nvme_path",
    }
)


@dataclass(frozen=True)
class RenderedConfigs:
    train_sections: dict[str, dict[str, Any]]  # section → sd-scripts args (sd-scripts flattens sections)
    dataset: dict[str, Any]
    sample_prompts: str | None

    @property
    def train_args(self) -> dict[str, Any]:
        return {k: v for section in self.train_sections.values() for k, v in section.items()}

    def train_toml(self, spec_file: Path) -> str:
        return HEADER.format(version=__version__, spec=spec_file.name) + "\n" + tomli_w.dumps(self.train_sections)

    def dataset_toml(self, spec_file: Path) -> str:
        return HEADER.format(version=__version__, spec=spec_file.name) + "\n" + tomli_w.dumps(self.dataset)


def resolution_string(size: tuple[int, int]) -> str:
    return f"{size[0]},{size[1]}"


def _model_section(spec: ProjectSpec, models: dict[str, str]) -> dict[str, Any]:
    section: dict[str, Any] = {"pretrained_model_name_or_path": models["base"]}
    if spec.model.family == "sd2":
        section["v2"] = True
    if spec.model.v_parameterization:
        section["v_parameterization"] = True
    section.update({key: value for key, value in models.items() if key != "base"})
    return section


def sample_prompt_line(prompt: str | SamplePrompt, spec: ProjectSpec, settings: Settings) -> PromptLine:
    """A [sample] prompt with the section's settings (and the training size) where it has none of its own."""
    sample = spec.sample
    item = prompt if isinstance(prompt, SamplePrompt) else SamplePrompt(text=prompt)
    negative = item.negative if item.negative is not None else sample.negative
    return PromptLine(
        text=item.text,
        negative=negative.strip() if negative else None,
        width=item.width or settings.sample_size[0],
        height=item.height or settings.sample_size[1],
        seed=item.seed if item.seed is not None else sample.seed,
        cfg=item.cfg if item.cfg is not None else sample.cfg,
        steps=item.steps or sample.steps,
        sampler=item.sampler,
    )


def render_sample_prompts(spec: ProjectSpec, settings: Settings) -> str | None:
    if not spec.sample.enabled:
        return None
    return "\n".join(sample_prompt_line(p, spec, settings).format() for p in spec.sample.prompts) + "\n"


def render_configs(
    spec: ProjectSpec, settings: Settings, layout: ProjectLayout, schema: OptionSchema, models: dict[str, str]
) -> RenderedConfigs:
    """`models` maps model.base/vae/clip_l/t5xxl/ae to resolved values (sdscripts/modelref.py). The
    derived settings sd-scripts must agree with are written out: the batch size and precision every
    command assumed, even where the spec set them elsewhere (dataset.batch_size, launch.mixed_precision)."""
    options = schema.options(settings.script)
    training = {"network_module": settings.network_module} | spec.training.set_fields()
    training["resolution"] = resolution_string(settings.resolution)
    if "train_batch_size" in training or "batch_size" in spec.dataset.set_fields():
        training["train_batch_size"] = settings.batch_size
    if spec.training.mixed_precision or spec.launch.mixed_precision:
        training["mixed_precision"] = settings.mixed_precision
    training.pop("save_model_as", None)
    family = spec.model.family_info
    paths = PATH_OPTIONS | {name for name, _ in family.required} | FAMILY_FILE_OPTIONS.get(family.name, frozenset())
    if not family.known:  # its file options are not known here: a relative value naming a project file is one
        paths |= {
            key
            for key, value in training.items()
            if isinstance(value, str) and value and not Path(value).is_absolute() and layout.path(value).exists()
        }
    for key in paths.intersection(training):  # sd-scripts runs in its own folder: make them absolute
        if key == "resume" and training.get("resume_from_huggingface"):
            continue  # a repo on the hub
        value = training[key]
        if isinstance(value, (list, tuple)):
            training[key] = [str(layout.path(item)) for item in value]
        elif isinstance(value, str) and value:
            training[key] = str(layout.path(value))
    training = {
        key: coerce_option_value(options[key], value) if key in options else value
        for key, value in sorted(training.items())
    }

    output = {
        "output_dir": str(layout.model_dir),
        "output_name": settings.name,
        "logging_dir": str(layout.log_dir),
        "save_model_as": settings.checkpoint_extension.lstrip("."),
    }
    for key in ("save_precision", "save_every_n_epochs", "save_every_n_steps"):
        if key in training:
            output[key] = training.pop(key)

    sections: dict[str, dict[str, Any]] = {"model": _model_section(spec, models), "output": output}
    sample_text = render_sample_prompts(spec, settings)
    if sample_text is not None:
        sample = {"sample_prompts": str(layout.sample_prompts), "sample_sampler": spec.sample.sampler}
        if spec.sample.every_n_epochs:
            sample["sample_every_n_epochs"] = spec.sample.every_n_epochs
        if spec.sample.every_n_steps:
            sample["sample_every_n_steps"] = spec.sample.every_n_steps
        if spec.sample.at_first:
            sample["sample_at_first"] = True
        sections["sample"] = sample
    sections["training"] = training
    return RenderedConfigs(sections, render_dataset(spec, settings, schema), sample_text)


def render_dataset(spec: ProjectSpec, settings: Settings, schema: OptionSchema) -> dict[str, Any]:
    general_types, subset_types = schema.dataset_keys.get("general", {}), schema.dataset_keys.get("subset", {})
    general = spec.dataset.set_fields()
    size = settings.resolution
    general["resolution"] = size[0] if size[0] == size[1] else list(size)
    general["batch_size"] = settings.batch_size
    general = {key: coerce_dataset_value(general_types.get(key, ""), value) for key, value in sorted(general.items())}
    subsets = []
    for item in settings.concepts:
        concept = item.concept
        subset: dict[str, Any] = {
            "image_dir": str(item.folder),
            "class_tokens": concept.class_tokens,
            "num_repeats": concept.repeats,
        }
        if concept.is_reg:
            subset["is_reg"] = True
        for key, value in sorted(concept.subset_options().items()):
            subset[key] = coerce_dataset_value(subset_types.get(key, ""), value)
        subsets.append(subset)
    return {"general": general, "datasets": [{"subsets": subsets}]}


def write_configs(rendered: RenderedConfigs, layout: ProjectLayout) -> list[Path]:
    """Write the rendered files atomically; a stale sample prompt file is removed when sampling is off."""
    written = [layout.train_config, layout.dataset_config]
    _writable(layout)
    write_text_atomic(layout.train_config, rendered.train_toml(layout.spec_file))
    write_text_atomic(layout.dataset_config, rendered.dataset_toml(layout.spec_file))
    if rendered.sample_prompts is not None:
        write_text_atomic(layout.sample_prompts, rendered.sample_prompts)
        written.append(layout.sample_prompts)
    else:
        layout.sample_prompts.unlink(missing_ok=True)
    return written


def _writable(layout: ProjectLayout) -> None:
    """A file or folder in the way of the configs, named before anything is written."""
    config = layout.config_dir
    if config.exists() and not config.is_dir():
        raise KohyaWrapError(
            f"{config} is a file, where kohya-wrap writes sd-scripts' configs into a folder",
            "move or remove that file, then run the command again",
        )
    for path in (layout.train_config, layout.dataset_config, layout.sample_prompts):
        if path.is_dir():
            raise KohyaWrapError(
                f"{path} is a folder, where kohya-wrap writes sd-scripts' {path.name}",
                "move or remove that folder, then run the command again",
            )
