"""Convert kohya_ss GUI LoRA configs to kohya-wrap specs, and back.

kohya_ss (https://github.com/bmaltais/kohya_ss) is a Gradio GUI over
kohya-ss/sd-scripts. Its LoRA tab saves its state as a flat JSON object ("Save
config"), and the community presets in ``presets/lora/*.json`` are the same
kind of file with fewer keys. This module turns such a dict into a kohya-wrap
spec dict (``spec_from_kohya_ss``), and a spec into a dict that the GUI's
"Open config" can load (``kohya_ss_from_spec``). Both are pure: no files are
read or written. The one outside look-up, the listing of concept folders, is
the ``subfolders`` callable that the caller passes in.

Where the mapping comes from
----------------------------
Written by reading kohya_ss at commit ``45088f04af78e11cec5407ff4652ea3ed2c14422``
(2026-07-10, "feat: upgrade Gradio to 6.17.3 ...", see ``KOHYA_SS_COMMIT``):

* ``kohya_gui/lora_gui.py``: ``save_configuration``/``open_configuration``
  (which keys a saved JSON has; the JSON holds every parameter except
  ``file_path``, sorted by name, and so includes the UI flag ``save_as_bool``)
  and ``train_model`` (what the GUI passes to sd-scripts for each key:
  which script, ``network_module`` and ``network_args`` per ``LoRA_type``,
  ``epoch`` versus ``max_train_steps``, the learning-rate rules, and the
  filter that drops every value equal to ``""``, ``False``, ``0`` or ``None``).
* ``kohya_gui/common_gui.py``: ``update_my_data`` (how "Open config" repairs
  old files: ``LoCon`` -> ``LyCORIS/LoCon``, boolean ``xformers``,
  ``lora_network_weights``, ``use_wandb``, ``use_8bit_adam``, and what an empty
  string becomes for each numeric key) and ``resolve_lr_warmup_steps``.
* ``kohya_gui/class_*.py``: the GUI's default value of each field.
* sd-scripts v0.10.1 (kohya-wrap's pin; ``train_network.py``,
  ``library/train_util.py``, ``library/config_util.py``, and the option schema
  in ``kohya_wrap/data/option_schema``) for the argument names, types, choices
  and defaults, and the dataset-config keys. Every ``training`` key the importer
  writes is an argument of the script its model family uses.

The rules
---------
* The spec gets what the GUI would have passed to sd-scripts. A key whose
  value the GUI drops (``""``, ``0``, ``False``, ``None``; per key, see
  ``_FIELDS``) is "unset" and left out of the spec. Left-out keys are still
  *consumed*: they carry no setting.
* Every key of the GUI dict ends up in ``ImportResult.consumed`` (mapped, or
  unset) or in ``ImportResult.unmapped`` with a reason; a key can be in both
  when part of it could not be mapped (a concept folder whose name is not
  ``<repeats>_<name>``). Keys of a model family whose checkbox is off
  (SD3, HunyuanImage-2.1, Anima, Lumina) have no effect in the GUI; they are
  consumed and counted in one note. Keys for a ``LoRA_type`` other than the
  chosen one are consumed when they hold the GUI default, and reported as
  inactive otherwise.
* The exporter writes every key of a "Save config" file except the
  parameters of the four model families kohya-wrap does not train (their
  checkboxes are written, unchecked). A key the spec does not set gets the
  value that makes sd-scripts use its own default (``max_bucket_reso`` 1024,
  ``max_data_loader_n_workers`` 8, ``optimizer`` AdamW, ...), or the spec's own
  default where kohya-wrap has one (``caption_extension`` ".txt"; [sample]
  steps 20, cfg 7, seed 1, sampler euler_a, size = the training resolution),
  never the GUI's default, so that the file means what the spec means.
* The spec shape is kohya_wrap/spec/models.py: v_parameterization only with
  family sd2, repeats >= 1, a regularisation concept has no token, sample
  prompts are plain strings or ``{text, negative, width, height, steps, cfg,
  seed, sampler}`` tables and need a schedule.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

__all__ = [
    "KOHYA_SS_COMMIT",
    "ImportResult",
    "Unmapped",
    "kohya_ss_from_spec",
    "spec_from_kohya_ss",
]

KOHYA_SS_COMMIT = "45088f04af78e11cec5407ff4652ea3ed2c14422"


@dataclass(frozen=True)
class Unmapped:
    """One setting that could not be carried over, and why."""

    key: str
    value: object
    reason: str


@dataclass(frozen=True)
class ImportResult:
    """The spec built from a GUI config.

    ``consumed`` lists the GUI keys whose setting is fully represented in
    ``spec`` (or that were unset); every other key of the input is in
    ``unmapped``.
    """

    spec: dict
    unmapped: tuple[Unmapped, ...]
    notes: tuple[str, ...]
    consumed: tuple[str, ...] = ()


# --------------------------------------------------------------------------
# reasons
# --------------------------------------------------------------------------

R_GUI_ONLY = "GUI-only setting"
R_NO_EQUIV = "no sd-scripts equivalent"
R_NO_SPEC_FIELD = "no kohya-wrap spec field"
R_UNKNOWN = "unknown key"
R_SECRET = "secret: not copied into the spec"
R_LAYOUT = "set by the kohya-wrap project layout"
R_NO_GUI_FIELD = "the kohya_ss GUI has no field for it"


def _bad(detail: str) -> str:
    return f"value not understood: {detail}"


def _inactive(detail: str) -> str:
    return f"inactive: {detail}"


# --------------------------------------------------------------------------
# value conversion
# --------------------------------------------------------------------------


class _BadValue(ValueError):
    pass


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _to_float(value: object) -> float:
    if isinstance(value, bool):
        raise _BadValue(f"{value!r} is not a number")
    if isinstance(value, (int, float)):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            raise _BadValue(f"{value!r} is not a number") from None
    else:
        raise _BadValue(f"{value!r} is not a number")
    if not math.isfinite(result):
        raise _BadValue(f"{value!r} is not a finite number")
    return result


def _to_int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    number = _to_float(value)
    if not number.is_integer():
        raise _BadValue(f"{value!r} is not a whole number")
    return int(number)


def _to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise _BadValue(f"{value!r} is not true/false")


def _to_str(value: object) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool) or value is None:
        raise _BadValue(f"{value!r} is not text")
    if isinstance(value, (int, float)):
        return _fmt_number(value)
    raise _BadValue(f"{value!r} is not text")


def _to_args(value: object) -> list[str]:
    """The GUI's parsing of an "extra arguments" box: drop quotes, split on blanks."""
    if isinstance(value, str):
        return value.replace('"', "").split()
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return [v for v in value if v.strip()]
    raise _BadValue(f"{value!r} is not a list of arguments")


_CONVERT: dict[str, Callable[[object], Any]] = {
    "int": _to_int,
    "float": _to_float,
    "flag": _to_bool,
    "bool": _to_bool,
    "str": _to_str,
    "args": _to_args,
}


def _fmt_number(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def _parse_scalar(text: str) -> object:
    """`True` / `12` / `0.5` / anything else -> bool / int / float / str."""
    if text in ("True", "False", "true", "false"):
        return text.lower() == "true"
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def _same(a: object, b: object) -> bool:
    """Equality that treats 1 == 1.0 == "1" and "" == None."""
    if _blank(a) and _blank(b):
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        try:
            return _to_bool(a) == _to_bool(b)
        except _BadValue:
            return False
    if isinstance(a, str) and isinstance(b, str):
        return a.strip() == b.strip()
    try:
        return _to_float(a) == _to_float(b)
    except _BadValue:
        return a == b


def _join(base: str, *parts: str) -> str:
    sep = "\\" if "\\" in base and "/" not in base else "/"
    head = base.rstrip("/\\")
    return (head or base[:1]) + ("" if not head else sep) + sep.join(parts)


# --------------------------------------------------------------------------
# the GUI's keys and the values the exporter writes when the spec is silent
# --------------------------------------------------------------------------

# Every key of a LoRA "Save config" JSON, except the parameters of the model
# families kohya-wrap does not train (their checkboxes are kept). Values: what
# the exporter writes when the spec does not set the key (sd-scripts' own
# default where the GUI always passes the key; the GUI's "off" value otherwise).
_GUI_BASE: dict[str, object] = {
    # source model
    "pretrained_model_name_or_path": "", "v2": False, "v_parameterization": False,
    "sdxl": False, "flux1_checkbox": False, "sd3_checkbox": False,
    "hunyuan_image_checkbox": False, "anima_checkbox": False, "lumina_checkbox": False,
    "dataset_config": "", "save_model_as": "safetensors", "save_precision": "fp16",
    "train_data_dir": "", "output_name": "last", "model_list": "custom",
    "training_comment": "",
    # folders
    "logging_dir": "", "reg_data_dir": "", "output_dir": "",
    # basic training
    "max_resolution": "512,512", "learning_rate": 2e-06, "lr_scheduler": "constant",
    "lr_warmup": 0, "lr_warmup_steps": 0, "train_batch_size": 1, "epoch": 1,
    "save_every_n_epochs": 0, "seed": 0, "cache_latents": False,
    "cache_latents_to_disk": False, "train_inpainting": False,
    "caption_extension": ".txt", "enable_bucket": False,
    "stop_text_encoder_training": 0, "min_bucket_reso": 256, "max_bucket_reso": 1024,
    "max_train_epochs": 0, "max_train_steps": 1600, "lr_scheduler_num_cycles": 1,
    "lr_scheduler_power": 1.0, "optimizer": "AdamW", "optimizer_args": "",
    "lr_scheduler_args": "", "lr_scheduler_type": "", "max_grad_norm": 1.0,
    # accelerate launch
    "mixed_precision": "no", "num_cpu_threads_per_process": 2, "num_processes": 1,
    "num_machines": 1, "multi_gpu": False, "gpu_ids": "", "main_process_port": 0,
    "dynamo_backend": "no", "dynamo_mode": "default", "dynamo_use_fullgraph": False,
    "dynamo_use_dynamic": False, "extra_accelerate_launch_args": "",
    # advanced training
    "gradient_checkpointing": False, "fp8_base": False, "fp8_base_unet": False,
    "full_fp16": False, "highvram": False, "lowvram": False, "xformers": "none",
    "shuffle_caption": False, "save_state": False, "save_state_on_train_end": False,
    "resume": "", "prior_loss_weight": 1.0, "color_aug": False, "flip_aug": False,
    "masked_loss": False, "clip_skip": 1, "gradient_accumulation_steps": 1,
    "mem_eff_attn": False, "max_token_length": 75, "max_data_loader_n_workers": 8,
    "keep_tokens": 0, "persistent_data_loader_workers": False,
    "bucket_no_upscale": False, "random_crop": False, "bucket_reso_steps": 64,
    "v_pred_like_loss": 0, "caption_dropout_every_n_epochs": 0,
    "caption_dropout_rate": 0, "noise_offset_type": "Original", "noise_offset": 0,
    "noise_offset_random_strength": False, "adaptive_noise_scale": 0,
    "multires_noise_iterations": 0, "multires_noise_discount": 0.3,
    "ip_noise_gamma": 0, "ip_noise_gamma_random_strength": False,
    "additional_parameters": "", "loss_type": "l2", "huber_schedule": "snr",
    "huber_c": 0.1, "huber_scale": 1.0, "vae_batch_size": 0, "min_snr_gamma": 0,
    "save_every_n_steps": 0, "save_last_n_steps": 0, "save_last_n_steps_state": 0,
    "save_last_n_epochs": 0, "save_last_n_epochs_state": 0, "skip_cache_check": False,
    "log_with": "", "wandb_api_key": "", "wandb_run_name": "", "log_tracker_name": "",
    "log_tracker_config": "", "log_config": False,
    "scale_v_pred_loss_like_noise_pred": False, "full_bf16": False,
    "min_timestep": 0, "max_timestep": 1000, "vae": "", "weighted_captions": False,
    "debiased_estimation_loss": False,
    # SDXL
    "sdxl_cache_text_encoder_outputs": False, "sdxl_no_half_vae": False,
    # network
    "text_encoder_lr": 0.0, "t5xxl_lr": 0.0, "unet_lr": 0.0, "network_dim": 4,
    "network_weights": "", "dim_from_weights": False, "network_alpha": 1.0,
    "LoRA_type": "Standard", "factor": -1, "bypass_mode": False, "dora_wd": False,
    "use_cp": False, "use_tucker": False, "use_scalar": False,
    "rank_dropout_scale": False, "constrain": 0.0, "rescaled": False,
    "train_norm": False, "decompose_both": False, "train_on_input": True,
    "conv_dim": 1, "conv_alpha": 1,
    # samples
    "sample_every_n_steps": 0, "sample_every_n_epochs": 0, "sample_sampler": "euler_a",
    "sample_prompts": "",
    # block-wise LoRA
    "down_lr_weight": "", "mid_lr_weight": "", "up_lr_weight": "",
    "block_lr_zero_threshold": "", "block_dims": "", "block_alphas": "",
    "conv_block_dims": "", "conv_block_alphas": "", "unit": 1,
    "scale_weight_norms": 0, "network_dropout": 0, "rank_dropout": 0,
    "module_dropout": 0, "LyCORIS_preset": "full", "loraplus_lr_ratio": 0,
    "loraplus_text_encoder_lr_ratio": 0, "loraplus_unet_lr_ratio": 0,
    "train_lora_ggpo": False, "ggpo_sigma": 0.03, "ggpo_beta": 0.01,
    # huggingface
    "huggingface_repo_id": "", "huggingface_token": "", "huggingface_repo_type": "",
    "huggingface_repo_visibility": "", "huggingface_path_in_repo": "",
    "save_state_to_huggingface": False, "resume_from_huggingface": "",
    "async_upload": False,
    # metadata
    "metadata_author": "", "metadata_description": "", "metadata_license": "",
    "metadata_tags": "", "metadata_title": "",
    # FLUX.1
    "flux1_cache_text_encoder_outputs": False,
    "flux1_cache_text_encoder_outputs_to_disk": False, "model_type": "flux",
    "ae": "", "clip_l": "", "t5xxl": "", "discrete_flow_shift": 3.0,
    "model_prediction_type": "sigma_scaled", "timestep_sampling": "sigma",
    "split_mode": False, "train_blocks": "all", "t5xxl_max_token_length": 512,
    "enable_all_linear": False, "guidance_scale": 3.5, "mem_eff_save": False,
    "apply_t5_attn_mask": False, "split_qkv": False, "train_t5xxl": False,
    "cpu_offload_checkpointing": False, "blocks_to_swap": 0,
    "single_blocks_to_swap": 0, "double_blocks_to_swap": 0, "show_timesteps": "",
    "show_timesteps_resolution": "1024", "img_attn_dim": "", "img_mlp_dim": "",
    "img_mod_dim": "", "single_dim": "", "txt_attn_dim": "", "txt_mlp_dim": "",
    "txt_mod_dim": "", "single_mod_dim": "", "in_dims": "",
    "train_double_block_indices": "", "train_single_block_indices": "",
    # UI state
    "save_as_bool": False,
}

# The GUI's own default where it differs from _GUI_BASE (used to decide
# whether an inactive key holds a setting worth reporting).
_GUI_FACTORY: dict[str, object] = {
    "train_double_block_indices": "all", "train_single_block_indices": "all",
    "max_bucket_reso": 2048, "max_data_loader_n_workers": 0,
}


def _is_gui_default(key: str, value: object) -> bool:
    if _blank(value):
        return True
    for table in (_GUI_BASE, _GUI_FACTORY):
        if key in table and _same(table[key], value):
            return True
    return False


# --------------------------------------------------------------------------
# keys that map one-to-one
# --------------------------------------------------------------------------

_NOTHING = object()


@dataclass(frozen=True)
class _Field:
    """A GUI key that maps to one spec key.

    kind: ``flag`` (a store_true switch: only True is a setting), ``bool``
    (both values are settings), ``int``, ``float``, ``str``, ``args`` (text the
    GUI splits into a list). ``keep_zero``: the GUI passes 0 on (it is not
    "unset"). ``blank``: what the GUI's "Open config" turns an empty string
    into. ``unset``: more values that mean "not set" (sd-scripts' own
    default, which its argument parser would not accept written out).
    ``when``: the model family the GUI passes the key for.
    """

    dest: tuple[str, str]
    kind: str
    keep_zero: bool = False
    blank: object = _NOTHING
    unset: tuple[object, ...] = ()
    when: str = ""


def _F(section: str, key: str, kind: str, **kw: Any) -> _Field:
    return _Field((section, key), kind, **kw)


_FIELDS: dict[str, _Field] = {
    # dataset (sd-scripts dataset_config general keys)
    "enable_bucket": _F("dataset", "enable_bucket", "bool"),
    "bucket_no_upscale": _F("dataset", "bucket_no_upscale", "bool"),
    "min_bucket_reso": _F("dataset", "min_bucket_reso", "int"),
    "max_bucket_reso": _F("dataset", "max_bucket_reso", "int"),
    "bucket_reso_steps": _F("dataset", "bucket_reso_steps", "int"),
    # "": the GUI passes nothing and sd-scripts reads .caption files; the spec's default is .txt
    "caption_extension": _F("dataset", "caption_extension", "str", blank=".caption"),
    "shuffle_caption": _F("dataset", "shuffle_caption", "flag"),
    "flip_aug": _F("dataset", "flip_aug", "flag"),
    "color_aug": _F("dataset", "color_aug", "flag"),
    "random_crop": _F("dataset", "random_crop", "flag"),
    "keep_tokens": _F("dataset", "keep_tokens", "int"),
    "caption_dropout_rate": _F("dataset", "caption_dropout_rate", "float"),
    "caption_dropout_every_n_epochs": _F("dataset", "caption_dropout_every_n_epochs", "int"),
    # training: optimizer and scheduler
    "optimizer": _F("training", "optimizer_type", "str"),
    "optimizer_args": _F("training", "optimizer_args", "args"),
    "lr_scheduler": _F("training", "lr_scheduler", "str"),
    "lr_scheduler_args": _F("training", "lr_scheduler_args", "args"),
    "lr_scheduler_type": _F("training", "lr_scheduler_type", "str"),
    "lr_scheduler_num_cycles": _F("training", "lr_scheduler_num_cycles", "int", blank=1),
    "lr_scheduler_power": _F("training", "lr_scheduler_power", "float", blank=1.0),
    "max_grad_norm": _F("training", "max_grad_norm", "float"),
    "train_batch_size": _F("training", "train_batch_size", "int"),
    "gradient_accumulation_steps": _F("training", "gradient_accumulation_steps", "int"),
    # training: saving
    "save_every_n_epochs": _F("training", "save_every_n_epochs", "int"),
    "save_every_n_steps": _F("training", "save_every_n_steps", "int"),
    "save_last_n_steps": _F("training", "save_last_n_steps", "int"),
    "save_last_n_steps_state": _F("training", "save_last_n_steps_state", "int"),
    "save_last_n_epochs": _F("training", "save_last_n_epochs", "int"),
    "save_last_n_epochs_state": _F("training", "save_last_n_epochs_state", "int"),
    "save_precision": _F("training", "save_precision", "str"),
    "save_model_as": _F("training", "save_model_as", "str"),
    "save_state": _F("training", "save_state", "flag"),
    "save_state_on_train_end": _F("training", "save_state_on_train_end", "flag"),
    "resume": _F("training", "resume", "str"),
    "training_comment": _F("training", "training_comment", "str"),
    # training: memory and speed
    "seed": _F("training", "seed", "int"),
    "cache_latents": _F("training", "cache_latents", "bool"),
    "cache_latents_to_disk": _F("training", "cache_latents_to_disk", "flag"),
    "gradient_checkpointing": _F("training", "gradient_checkpointing", "flag"),
    "fp8_base": _F("training", "fp8_base", "flag"),
    "full_fp16": _F("training", "full_fp16", "flag"),
    "full_bf16": _F("training", "full_bf16", "flag"),
    "highvram": _F("training", "highvram", "flag"),
    "mem_eff_attn": _F("training", "mem_eff_attn", "flag"),
    "persistent_data_loader_workers": _F("training", "persistent_data_loader_workers", "flag"),
    "max_data_loader_n_workers": _F("training", "max_data_loader_n_workers", "int", keep_zero=True, blank=0),
    "vae_batch_size": _F("training", "vae_batch_size", "int"),
    "skip_cache_check": _F("training", "skip_cache_check", "flag"),
    # training: loss
    "prior_loss_weight": _F("training", "prior_loss_weight", "float"),
    "masked_loss": _F("training", "masked_loss", "flag"),
    "weighted_captions": _F("training", "weighted_captions", "flag"),
    "debiased_estimation_loss": _F("training", "debiased_estimation_loss", "flag"),
    "scale_v_pred_loss_like_noise_pred": _F("training", "scale_v_pred_loss_like_noise_pred", "flag"),
    "v_pred_like_loss": _F("training", "v_pred_like_loss", "float"),
    "min_snr_gamma": _F("training", "min_snr_gamma", "float"),
    "ip_noise_gamma": _F("training", "ip_noise_gamma", "float"),
    "ip_noise_gamma_random_strength": _F("training", "ip_noise_gamma_random_strength", "flag"),
    "min_timestep": _F("training", "min_timestep", "int"),
    "max_timestep": _F("training", "max_timestep", "int"),
    "loss_type": _F("training", "loss_type", "str"),
    "huber_schedule": _F("training", "huber_schedule", "str"),
    "huber_c": _F("training", "huber_c", "float"),
    "huber_scale": _F("training", "huber_scale", "float"),
    # training: text encoder
    "clip_skip": _F("training", "clip_skip", "int"),
    # sd-scripts' choices are None/150/225: the GUI's 75 is the default, not a setting
    "max_token_length": _F("training", "max_token_length", "int", unset=(75,), when="not_flux"),
    # training: network
    "network_dim": _F("training", "network_dim", "int"),
    "network_alpha": _F("training", "network_alpha", "float"),
    "network_dropout": _F("training", "network_dropout", "float"),
    "network_weights": _F("training", "network_weights", "str"),
    "dim_from_weights": _F("training", "dim_from_weights", "flag"),
    "scale_weight_norms": _F("training", "scale_weight_norms", "float"),
    # training: logging, hub, metadata
    "log_with": _F("training", "log_with", "str"),
    "wandb_run_name": _F("training", "wandb_run_name", "str"),
    "log_tracker_name": _F("training", "log_tracker_name", "str"),
    "log_tracker_config": _F("training", "log_tracker_config", "str"),
    "log_config": _F("training", "log_config", "flag"),
    "huggingface_repo_id": _F("training", "huggingface_repo_id", "str"),
    "huggingface_repo_type": _F("training", "huggingface_repo_type", "str"),
    "huggingface_repo_visibility": _F("training", "huggingface_repo_visibility", "str"),
    "huggingface_path_in_repo": _F("training", "huggingface_path_in_repo", "str"),
    "save_state_to_huggingface": _F("training", "save_state_to_huggingface", "flag"),
    "async_upload": _F("training", "async_upload", "flag"),
    "metadata_author": _F("training", "metadata_author", "str"),
    "metadata_description": _F("training", "metadata_description", "str"),
    "metadata_license": _F("training", "metadata_license", "str"),
    "metadata_tags": _F("training", "metadata_tags", "str"),
    "metadata_title": _F("training", "metadata_title", "str"),
    # SDXL only
    "sdxl_cache_text_encoder_outputs": _F("training", "cache_text_encoder_outputs", "flag", when="sdxl"),
    "sdxl_no_half_vae": _F("training", "no_half_vae", "flag", when="sdxl"),
    # FLUX.1 only
    "flux1_cache_text_encoder_outputs": _F("training", "cache_text_encoder_outputs", "flag", when="flux"),
    "flux1_cache_text_encoder_outputs_to_disk": _F("training", "cache_text_encoder_outputs_to_disk", "flag", when="flux"),
    "fp8_base_unet": _F("training", "fp8_base_unet", "flag", when="flux"),
    "discrete_flow_shift": _F("training", "discrete_flow_shift", "float", when="flux"),
    "model_prediction_type": _F("training", "model_prediction_type", "str", when="flux"),
    "timestep_sampling": _F("training", "timestep_sampling", "str", when="flux"),
    "split_mode": _F("training", "split_mode", "flag", when="flux"),
    "t5xxl_max_token_length": _F("training", "t5xxl_max_token_length", "int", when="flux"),
    "guidance_scale": _F("training", "guidance_scale", "float", when="flux"),
    "apply_t5_attn_mask": _F("training", "apply_t5_attn_mask", "flag", when="flux"),
    "cpu_offload_checkpointing": _F("training", "cpu_offload_checkpointing", "flag", when="flux"),
    "blocks_to_swap": _F("training", "blocks_to_swap", "int", when="flux"),
    # model files
    "vae": _F("model", "vae", "str"),
    "ae": _F("model", "ae", "str", when="flux"),
    "clip_l": _F("model", "clip_l", "str", when="flux"),
    "t5xxl": _F("model", "t5xxl", "str", when="flux"),
    # accelerate launch
    "num_cpu_threads_per_process": _F("launch", "num_cpu_threads_per_process", "int"),
    "num_processes": _F("launch", "num_processes", "int"),
    "num_machines": _F("launch", "num_machines", "int"),
    "multi_gpu": _F("launch", "multi_gpu", "bool"),  # the spec turns it on by default with num_processes > 1
    "gpu_ids": _F("launch", "gpu_ids", "str"),
    "main_process_port": _F("launch", "main_process_port", "int"),
}

_WHEN: dict[str, tuple[Callable[[str | None], bool], str]] = {
    "sdxl": (lambda family: family == "sdxl", "SDXL"),
    "flux": (lambda family: family == "flux", "FLUX.1"),
    "not_flux": (lambda family: family != "flux", "non-FLUX models"),
}

# Keys with no spec field: reported when they hold a setting.
_NO_FIELD: dict[str, str] = {
    "dynamo_backend": f"{R_NO_SPEC_FIELD} (accelerate launch --dynamo_backend)",
    "dynamo_mode": f"{R_NO_SPEC_FIELD} (accelerate launch --dynamo_mode)",
    "dynamo_use_fullgraph": f"{R_NO_SPEC_FIELD} (accelerate launch --dynamo_use_fullgraph)",
    "dynamo_use_dynamic": f"{R_NO_SPEC_FIELD} (accelerate launch --dynamo_use_dynamic)",
    "extra_accelerate_launch_args": f"{R_NO_SPEC_FIELD}: free-form accelerate arguments; add the matching [launch] keys by hand",
    "additional_parameters": f"{R_NO_SPEC_FIELD}: free-form sd-scripts arguments; add them to [training] by hand",
    "wandb_api_key": R_SECRET,
    "huggingface_token": R_SECRET,
    "lowvram": f"{R_NO_EQUIV} (removed from sd-scripts; the GUI does not pass it)",
    "stop_text_encoder_training": f"{R_NO_EQUIV} (the GUI ignores it too)",
    "train_inpainting": f"{R_NO_SPEC_FIELD}: --train_inpainting is not an argument of the sd-scripts kohya-wrap runs",
    "mem_eff_save": f"{R_NO_EQUIV} for LoRA (only flux_train.py has --mem_eff_save)",
    "single_blocks_to_swap": f"{R_NO_EQUIV} for LoRA (deprecated; use blocks_to_swap)",
    "double_blocks_to_swap": f"{R_NO_EQUIV} for LoRA (deprecated; use blocks_to_swap)",
    "show_timesteps": f"{R_NO_SPEC_FIELD} (timestep visualisation)",
    "resume_from_huggingface": f"{R_NO_SPEC_FIELD}: sd-scripts' --resume_from_huggingface is a switch and the Hub location goes in resume; set training.resume_from_huggingface = true and training.resume by hand",
    "show_timesteps_resolution": f"{R_NO_SPEC_FIELD} (timestep visualisation)",
    # keys of older GUI versions that the current GUI ignores
    "stop_text_encoder_training_pct": f"{R_NO_EQUIV} (obsolete GUI key)",
    "no_token_padding": f"{R_NO_EQUIV} (obsolete GUI key)",
    "conv_dims": f"{R_GUI_ONLY}: obsolete key the current GUI ignores (now conv_block_dims)",
    "conv_alphas": f"{R_GUI_ONLY}: obsolete key the current GUI ignores (now conv_block_alphas)",
}

# UI state: reported whatever the value.
_UI_ONLY = ("save_as_bool", "model_list", "training_preset", "file_path")

# Parameters of the model families kohya-wrap does not train.
_UNSUPPORTED_FAMILIES: dict[str, str] = {
    "sd3_checkbox": "SD3",
    "hunyuan_image_checkbox": "HunyuanImage-2.1",
    "anima_checkbox": "Anima",
    "lumina_checkbox": "Lumina",
}
_SD3_KEYS = frozenset({
    "clip_g", "clip_g_dropout_rate", "logit_mean", "logit_std", "mode_scale",
    "pos_emb_random_crop_rate", "save_clip", "save_t5xxl", "t5xxl_device",
    "t5xxl_dtype", "weighting_scheme",
})


def _unsupported_family_of(key: str) -> str | None:
    if key in _UNSUPPORTED_FAMILIES:
        return None
    if key.startswith("sd3_") or key in _SD3_KEYS:
        return "sd3_checkbox"
    for prefix, box in (("hunyuan_", "hunyuan_image_checkbox"), ("anima_", "anima_checkbox"),
                        ("lumina_", "lumina_checkbox")):
        if key.startswith(prefix):
            return box
    return None


# Repositories the GUI offers in its model list (kohya_gui/common_gui.py).
_GUI_HUB_MODELS = frozenset({
    "CompVis/stable-diffusion-v1-4",
    "runwayml/stable-diffusion-v1-5",
    "stabilityai/stable-diffusion-2-1-base",
    "stabilityai/stable-diffusion-2-base",
    "stabilityai/stable-diffusion-2-1",
    "stabilityai/stable-diffusion-2",
    "stabilityai/stable-diffusion-xl-base-1.0",
    "stabilityai/stable-diffusion-xl-refiner-1.0",
})

_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
_CONCEPT_DIR_RE = re.compile(r"^(\d+)_(.+)$", re.DOTALL)

# --------------------------------------------------------------------------
# LoRA types: network_module and network_args
# --------------------------------------------------------------------------

# Rules, for one (network arg, GUI key): "always" (the GUI always passes it),
# "truthy" (only when non-empty/non-zero), "positive" (only when > 0), "flag"
# (``arg=True`` when checked), "conv" (kohya LoHa/LoKr: int, when > 0),
# "with_conv" (passed with conv_dim), "factor" (when not -1), "split_mode"
# (train_blocks=single when split_mode is on; see _network_args), "ggpo" (when
# train_lora_ggpo is checked).
_Arg = tuple[str, str, str]


@dataclass(frozen=True)
class _NetType:
    module: str
    args: tuple[_Arg, ...]
    algo: str = ""
    requires: str = ""  # the family the GUI insists on, if any


def _always(*keys: str) -> tuple[_Arg, ...]:
    return tuple((_LYCORIS_ARG.get(k, k), k, "always") for k in keys)


def _truthy(*keys: str) -> tuple[_Arg, ...]:
    return tuple((k, k, "truthy") for k in keys)


_LYCORIS_ARG = {"LyCORIS_preset": "preset", "constrain": "constraint", "unit": "block_size"}
_BLOCKS = ("down_lr_weight", "mid_lr_weight", "up_lr_weight", "block_lr_zero_threshold",
           "block_dims", "block_alphas", "conv_block_dims", "conv_block_alphas")
_LOCON_LIKE = ("LyCORIS_preset", "conv_dim", "conv_alpha", "use_tucker", "rank_dropout",
               "bypass_mode", "dora_wd", "module_dropout", "use_scalar", "rank_dropout_scale",
               "train_norm")
_FLUX_DIMS = ("img_attn_dim", "img_mlp_dim", "img_mod_dim", "single_dim", "txt_attn_dim",
              "txt_mlp_dim", "txt_mod_dim", "single_mod_dim", "in_dims",
              "train_double_block_indices", "train_single_block_indices")

_NET_TYPES: dict[str, _NetType] = {
    "Standard": _NetType("networks.lora", _truthy(*_BLOCKS, "rank_dropout", "module_dropout")),
    "Kohya LoCon": _NetType("networks.lora", _always("conv_dim", "conv_alpha")
                            + _truthy(*_BLOCKS, "rank_dropout", "module_dropout")),
    "LoRA-FA": _NetType("networks.lora_fa", _truthy(*_BLOCKS, "rank_dropout", "module_dropout")),
    "Kohya DyLoRA": _NetType("networks.dylora", _truthy("conv_dim", "conv_alpha", *_BLOCKS,
                                                        "rank_dropout", "module_dropout", "unit")),
    "Kohya LoHa": _NetType("networks.loha", (
        ("conv_dim", "conv_dim", "conv"), ("conv_alpha", "conv_alpha", "with_conv"),
        ("use_tucker", "use_tucker", "flag"), ("rank_dropout", "rank_dropout", "positive"),
        ("module_dropout", "module_dropout", "positive")), requires="sdxl"),
    "Kohya LoKr": _NetType("networks.lokr", (
        ("conv_dim", "conv_dim", "conv"), ("conv_alpha", "conv_alpha", "with_conv"),
        ("use_tucker", "use_tucker", "flag"), ("factor", "factor", "factor"),
        ("rank_dropout", "rank_dropout", "positive"),
        ("module_dropout", "module_dropout", "positive")), requires="sdxl"),
    "LyCORIS/LoCon": _NetType("lycoris.kohya", _always(*_LOCON_LIKE), algo="locon"),
    "LyCORIS/LoHa": _NetType("lycoris.kohya", _always(*_LOCON_LIKE), algo="loha"),
    "LyCORIS/LoKr": _NetType("lycoris.kohya", _always(*_LOCON_LIKE, "factor", "use_cp",
                                                       "decompose_both"), algo="lokr"),
    "LyCORIS/iA3": _NetType("lycoris.kohya", _always("LyCORIS_preset", "conv_dim", "conv_alpha",
                                                      "train_on_input"), algo="ia3"),
    "LyCORIS/DyLoRA": _NetType("lycoris.kohya", _always(
        "LyCORIS_preset", "conv_dim", "conv_alpha", "use_tucker", "unit", "rank_dropout",
        "module_dropout", "train_norm"), algo="dylora"),
    "LyCORIS/GLoRA": _NetType("lycoris.kohya", _always(
        "LyCORIS_preset", "conv_dim", "conv_alpha", "use_tucker", "rank_dropout",
        "module_dropout", "rank_dropout_scale", "train_norm"), algo="glora"),
    "LyCORIS/BOFT": _NetType("lycoris.kohya", _always(
        "LyCORIS_preset", "conv_dim", "conv_alpha", "module_dropout", "use_tucker",
        "rank_dropout", "rank_dropout_scale", "train_norm"), algo="boft"),
    "LyCORIS/Diag-OFT": _NetType("lycoris.kohya", _always(
        "LyCORIS_preset", "conv_dim", "conv_alpha", "module_dropout", "use_tucker",
        "rank_dropout", "rank_dropout_scale", "constrain", "rescaled", "train_norm"),
        algo="diag-oft"),
    "LyCORIS/Native Fine-Tuning": _NetType("lycoris.kohya", _always(
        "LyCORIS_preset", "rank_dropout", "module_dropout", "rank_dropout_scale", "train_norm"),
        algo="full"),
    "Flux1": _NetType("networks.lora_flux", _truthy(*_FLUX_DIMS) + (
        ("train_blocks", "train_blocks", "split_mode"), ("split_qkv", "split_qkv", "flag"),
        ("train_t5xxl", "train_t5xxl", "flag"), ("ggpo_sigma", "ggpo_sigma", "ggpo"),
        ("ggpo_beta", "ggpo_beta", "ggpo"), ("rank_dropout", "rank_dropout", "positive"),
        ("module_dropout", "module_dropout", "positive")), requires="flux"),
    "Flux1 OFT": _NetType("networks.oft_flux", (("enable_all_linear", "enable_all_linear", "flag"),),
                          requires="flux"),
}
_LEGACY_TYPES = {"LoCon": "LyCORIS/LoCon"}
_UNSUPPORTED_TYPES = {"Anima": "Anima", "Lumina": "Lumina", "HunyuanImage-2.1": "HunyuanImage-2.1"}
_LORAPLUS = ("loraplus_lr_ratio", "loraplus_unet_lr_ratio", "loraplus_text_encoder_lr_ratio")
# Every GUI key that only feeds network_args, with the GUI type of its value.
_NET_KEYS: dict[str, str] = {
    **{k: "str" for k in (*_BLOCKS, *_FLUX_DIMS, "LyCORIS_preset", "train_blocks")},
    **{k: "bool" for k in ("bypass_mode", "dora_wd", "use_cp", "use_tucker", "use_scalar",
                           "rank_dropout_scale", "rescaled", "train_norm", "decompose_both",
                           "train_on_input", "train_lora_ggpo", "enable_all_linear",
                           "split_qkv", "train_t5xxl")},
    **{k: "float" for k in ("constrain", "conv_alpha", "rank_dropout", "module_dropout",
                            "ggpo_sigma", "ggpo_beta", *_LORAPLUS)},
    **{k: "int" for k in ("factor", "conv_dim", "unit")},
}
_ALGO_TO_TYPE = {t.algo: name for name, t in _NET_TYPES.items() if t.algo}
_ALGO_TO_TYPE["lora"] = "LyCORIS/LoCon"
_MODULE_TO_TYPE = {"networks.lora_fa": "LoRA-FA", "networks.dylora": "Kohya DyLoRA",
                   "networks.loha": "Kohya LoHa", "networks.lokr": "Kohya LoKr",
                   "networks.lora_flux": "Flux1", "networks.oft_flux": "Flux1 OFT"}
_COMMA_LISTS = frozenset({*_BLOCKS, *_FLUX_DIMS})


def _fmt_arg(key: str, value: object) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return _fmt_number(value)
    text = str(value).replace('"', "").strip()
    if key in _COMMA_LISTS:
        text = re.sub(r"\s+", "", text)
    if re.search(r"\s", text):
        raise _BadValue(f"{text!r} contains blanks, which the GUI splits into separate network args")
    return text


def _emitted(rule: str, key: str, value: object, gui: dict[str, object]) -> bool:
    """Whether the GUI passes ``key`` on for ``rule``, given the (converted) values."""
    if rule == "always":
        return True
    if rule == "truthy":
        return bool(value)
    if rule in ("positive", "conv"):
        return isinstance(value, (int, float)) and value > 0
    if rule == "with_conv":
        conv = gui.get("conv_dim")
        return isinstance(conv, (int, float)) and conv > 0 and value is not None
    if rule == "flag":
        return value is True
    if rule == "factor":
        return isinstance(value, (int, float)) and int(value) != -1
    if rule == "ggpo":
        return gui.get("train_lora_ggpo") is True and bool(value)
    raise AssertionError(rule)


def _arg_text(rule: str, arg: str, key: str, value: object) -> str:
    if rule == "flag":
        return f"{arg}=True"
    if rule == "split_mode":
        return f"{arg}=single"
    if rule in ("conv", "factor"):
        return f"{arg}={int(value)}"  # type: ignore[call-overload]
    return f"{arg}={_fmt_arg(key, value)}"


# --------------------------------------------------------------------------
# sample prompts
# --------------------------------------------------------------------------

# sd-scripts prompt-line options (library/train_util.py line_to_prompt_dict)
# that have a place in the spec: a [sample] key and a per-prompt table key.
_PROMPT_FLAGS: dict[str, tuple[str, str]] = {
    "n": ("negative", r"n (.+)"),
    "w": ("width", r"w (\d+)"),
    "h": ("height", r"h (\d+)"),
    "d": ("seed", r"d (\d+)"),
    "l": ("cfg", r"l ([\d.]+)"),
    "s": ("steps", r"s (\d+)"),
    "ss": ("sampler", r"ss (\S+)"),
}
_SAMPLE_TYPES: dict[str, Callable[[object], Any]] = {
    "negative": _to_str, "width": _to_int, "height": _to_int, "seed": _to_int,
    "cfg": _to_float, "steps": _to_int, "sampler": _to_str,
}
# Options the [sample] section holds for all prompts (a per-prompt --ss stays per prompt).
_SECTION_OPTIONS = ("negative", "width", "height", "seed", "cfg", "steps")
# kohya-wrap's own [sample] defaults (kohya_wrap/spec/models.py SampleSpec); the exporter
# writes them out because a GUI prompt without --s/--l/--d gets sd-scripts' defaults instead.
_SPEC_SAMPLE_DEFAULTS: dict[str, object] = {"steps": 20, "cfg": 7.0, "seed": 1, "sampler": "euler_a"}

_Option = tuple["str | None", str, object]  # (spec name or None, raw text, value)


def _parse_prompt_line(line: str) -> tuple[str, list[_Option]]:
    parts = line.split(" --")
    options: list[_Option] = []
    for part in parts[1:]:
        for name, pattern in _PROMPT_FLAGS.values():
            match = re.fullmatch(pattern, part.strip(), re.IGNORECASE | re.DOTALL)
            if match:
                options.append((name, part.strip(), _SAMPLE_TYPES[name](match.group(1))))
                break
        else:
            options.append((None, part.strip(), None))
    return parts[0].strip(), options


def _prompts_to_sample(text: str) -> tuple[dict[str, object], list[str]]:
    """GUI prompt text -> spec [sample] keys, and the prompt options the spec cannot hold.

    An option equal on every line goes into the section; the others go into a
    per-prompt table ``{text = ..., width = ...}``.
    """
    lines = [ln.strip() for ln in text.splitlines()]
    parsed = [_parse_prompt_line(ln) for ln in lines if ln and not ln.startswith("#")]
    section: dict[str, object] = {}
    for name in _SECTION_OPTIONS:
        values = [next((v for n, _raw, v in reversed(options) if n == name), _NOTHING) for _p, options in parsed]
        if values and values[0] is not _NOTHING and all(v == values[0] for v in values):
            section[name] = values[0]
    prompts: list[object] = []
    dropped: list[str] = []
    for prompt, options in parsed:
        own = {n: v for n, _raw, v in options if n is not None and n not in section}
        dropped += [f"--{raw}" for n, raw, _v in options if n is None]
        prompts.append({"text": prompt, **own} if own else prompt)
    return {"prompts": prompts, **section}, dropped


# --------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------


class _Import:
    """The state of one import; the handlers below fill it."""

    def __init__(self, gui: dict, subfolders: Callable[[str], list[str]] | None) -> None:
        self.gui = gui
        self.subfolders = subfolders
        self.spec: dict[str, Any] = {}
        self.unmapped: list[Unmapped] = []
        self.notes: list[str] = []
        self.consumed: dict[str, None] = {}
        self.reported: set[str] = set()
        self.family: str | None = None
        self.network_module: str | None = None

    # bookkeeping ---------------------------------------------------------
    def raw(self, key: str, default: object = None) -> object:
        return self.gui.get(key, default)

    def take(self, *keys: str) -> None:
        for key in keys:
            if key in self.gui:
                self.consumed[key] = None

    def report(self, key: str, value: object, reason: str) -> None:
        self.unmapped.append(Unmapped(key, value, reason))
        self.reported.add(key)

    def put(self, section: str, key: str, value: object) -> None:
        if section == "name":
            self.spec["name"] = value
        else:
            self.spec.setdefault(section, {})[key] = value

    def done(self, key: str) -> bool:
        return key in self.consumed or key in self.reported

    def value(self, key: str, kind: str, blank: object = None) -> tuple[bool, Any]:
        """(ok, converted value); a value that cannot be read is reported."""
        raw = self.gui.get(key)
        if _blank(raw):
            return True, blank
        try:
            return True, _CONVERT[kind](raw)
        except _BadValue as exc:
            self.report(key, raw, _bad(str(exc)))
            return False, None

    def inactive(self, key: str, why: str) -> None:
        """A key the GUI ignores here: consumed at its default, reported otherwise."""
        if key not in self.gui or self.done(key):
            return
        if _is_gui_default(key, self.gui[key]):
            self.take(key)
        else:
            self.report(key, self.gui[key], _inactive(why))


def _import_family(imp: _Import) -> None:
    flags: dict[str, bool] = {}
    for key in ("v2", "v_parameterization", "sdxl", "flux1_checkbox", *_UNSUPPORTED_FAMILIES):
        if key in imp.gui:
            ok, value = imp.value(key, "bool", blank=False)
            flags[key] = bool(value) if ok else False
    order = ("sdxl", "flux1_checkbox", *_UNSUPPORTED_FAMILIES)  # train_model's precedence
    chosen = next((k for k in order if flags.get(k)), None)
    unsupported_box = chosen if chosen in _UNSUPPORTED_FAMILIES else None
    if chosen == "sdxl":
        imp.family = "sdxl"
    elif chosen == "flux1_checkbox":
        imp.family = "flux"
    elif chosen is None:
        imp.family = "sd2" if flags.get("v2") else "sd15"
    if imp.family:
        imp.put("model", "family", imp.family)
    for key in order:
        if key not in imp.gui or imp.done(key):
            continue
        if key == unsupported_box:
            imp.report(key, imp.gui[key], f"model family {_UNSUPPORTED_FAMILIES[key]} is not supported by kohya-wrap")
            imp.notes.append(f"{_UNSUPPORTED_FAMILIES[key]} configs cannot be imported; model.family is not set.")
        elif flags.get(key) and key != chosen:
            imp.report(key, imp.gui[key], f"ignored: the GUI trains with {chosen} when both are checked")
        else:
            imp.take(key)
    if "v2" in imp.gui and not imp.done("v2"):
        if flags.get("v2") and imp.family not in ("sd15", "sd2"):
            imp.report("v2", imp.gui["v2"], f"conflicts with model family {imp.family or chosen}")
        else:
            imp.take("v2")
    if "v_parameterization" in imp.gui and not imp.done("v_parameterization"):
        if flags.get("v_parameterization") and imp.family == "sd2":
            imp.put("model", "v_parameterization", True)
            imp.take("v_parameterization")
        elif flags.get("v_parameterization"):
            imp.report("v_parameterization", True, f"{R_NO_SPEC_FIELD}: kohya-wrap takes v_parameterization only with family sd2 (this config: {imp.family or chosen})")
        else:
            imp.take("v_parameterization")
    _import_other_families(imp, unsupported_box)


def _import_other_families(imp: _Import, chosen_box: str | None) -> None:
    """Parameters of the families kohya-wrap does not train (SD3, HunyuanImage, Anima, Lumina)."""
    idle = 0
    for key in list(imp.gui):
        box = _unsupported_family_of(key)
        if box is None or imp.done(key):
            continue
        if box == chosen_box:
            imp.report(key, imp.gui[key], f"belongs to model family {_UNSUPPORTED_FAMILIES[box]}, which kohya-wrap does not support")
        else:
            imp.take(key)
            idle += 1
    if idle:
        imp.notes.append(f"Skipped {idle} settings of SD3/HunyuanImage/Anima/Lumina: their model checkboxes are off, so the GUI does not use them.")


def _import_model_and_name(imp: _Import) -> None:
    if "pretrained_model_name_or_path" in imp.gui:
        ok, base = imp.value("pretrained_model_name_or_path", "str", blank="")
        if ok:
            imp.take("pretrained_model_name_or_path")
            if base in _GUI_HUB_MODELS:
                imp.put("model", "base", f"hf://{base}")
                imp.notes.append(f"Base model {base!r} is a Hugging Face repository; written as hf://{base}.")
            elif base:
                imp.put("model", "base", base)
                if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", base) and not re.search(r"\.(safetensors|ckpt|pt|bin)$", base):
                    imp.notes.append(f"Base model {base!r} looks like a Hugging Face repository id; if it is one, write it as hf://{base}.")
            else:
                imp.notes.append("The config names no base model; set model.base.")
    if "output_name" in imp.gui:
        ok, name = imp.value("output_name", "str", blank="")
        if ok and name:
            clean = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")
            if not clean:
                imp.report("output_name", name, _bad("no ASCII letters or digits to build a name from"))
                return
            if clean != name:
                imp.notes.append(f"output_name {name!r} has characters kohya-wrap names do not allow; the spec uses {clean!r}.")
            imp.put("name", "name", clean)
            imp.take("output_name")
        elif ok:
            imp.take("output_name")


def _concepts_from(imp: _Import, key: str, root: str, is_reg: bool) -> list[dict]:
    assert imp.subfolders is not None
    try:
        names = sorted(imp.subfolders(root))
    except OSError as exc:
        imp.report(key, root, _bad(f"cannot list the folder: {exc}"))
        return []
    concepts = []
    for name in names:
        match = _CONCEPT_DIR_RE.match(name)
        path = _join(root, name)
        if not match:
            imp.report(key, path, "folder name is not <repeats>_<name>: sd-scripts skips this folder")
            continue
        repeats, rest = int(match.group(1)), match.group(2).strip()
        if not rest:
            imp.report(key, path, _bad("no name after the repeats prefix"))
            continue
        if is_reg:
            concept: dict[str, object] = {"class": rest, "repeats": repeats, "is_reg": True, "source": path}
        else:
            words = rest.split(None, 1)
            token, klass = words[0], (words[1] if len(words) > 1 else "")
            concept = {"token": token, "class": klass, "repeats": repeats, "source": path}
            if not klass:
                imp.notes.append(f"Concept folder {name!r} has only one word: token {token!r}, no class.")
        if repeats == 0:
            imp.report(key, path, "0 repeats: sd-scripts uses none of its images (kohya-wrap needs repeats >= 1)")
            continue
        concepts.append(concept)
    return concepts


def _import_folders(imp: _Import) -> None:
    ok, dataset_config = imp.value("dataset_config", "str", blank="") if "dataset_config" in imp.gui else (True, "")
    if ok and dataset_config:
        imp.report("dataset_config", dataset_config, f"{R_LAYOUT}: kohya-wrap writes its own dataset config; turn this TOML's subsets into [[concepts]] by hand")
    elif ok:
        imp.take("dataset_config")
    concepts: list[dict] = []
    for key, is_reg in (("train_data_dir", False), ("reg_data_dir", True)):
        if key not in imp.gui:
            continue
        ok, root = imp.value(key, "str", blank="")
        if not ok:
            continue
        if not root:
            imp.take(key)
        elif dataset_config:
            imp.report(key, root, _inactive("sd-scripts ignores it when dataset_config is set"))
        elif imp.subfolders is None:
            imp.report(key, root, "concept folders not listed: pass subfolders= to derive [[concepts]]")
        else:
            found = _concepts_from(imp, key, root, is_reg)
            if not found:
                imp.notes.append(f"{key} {root!r} holds no <repeats>_<name> folders.")
            concepts.extend(found)
            imp.take(key)
    if concepts:
        imp.spec["concepts"] = concepts
    for key in ("output_dir", "logging_dir"):
        if key in imp.gui:
            if _blank(imp.gui[key]):
                imp.take(key)
            else:
                where = "DIR/model" if key == "output_dir" else "DIR/log"
                imp.report(key, imp.gui[key], f"{R_LAYOUT} ({where})")


def _import_resolution(imp: _Import) -> None:
    raw = imp.raw("max_resolution")
    if "max_resolution" not in imp.gui:
        return
    if _blank(raw):
        imp.take("max_resolution")
        return
    parts = [p.strip() for p in str(raw).split(",")] if isinstance(raw, str) else [str(raw)]
    try:
        sizes = [_to_int(p) for p in parts]
        if len(sizes) not in (1, 2) or min(sizes) <= 0:
            raise _BadValue("expected 'width,height'")
    except _BadValue as exc:
        imp.report("max_resolution", raw, _bad(str(exc)))
        return
    width, height = sizes[0], sizes[-1]
    imp.put("dataset", "resolution", width if width == height else [width, height])
    imp.take("max_resolution")


def _import_learning_rates(imp: _Import) -> None:
    rates: dict[str, float] = {}
    for key in ("learning_rate", "text_encoder_lr", "unet_lr", "t5xxl_lr"):
        if key in imp.gui:
            ok, value = imp.value(key, "float", blank=0.0)
            if not ok:
                continue
            rates[key] = value
            imp.take(key)
    lr, te, unet, t5 = (rates.get(k, 0.0) for k in ("learning_rate", "text_encoder_lr", "unet_lr", "t5xxl_lr"))
    if lr:
        imp.put("training", "learning_rate", lr)
    if te > 0:
        if t5 > 0 and t5 != te and imp.network_module == "networks.lora_flux":
            imp.put("training", "text_encoder_lr", [te, t5])
        else:
            imp.put("training", "text_encoder_lr", te)
    if t5 > 0 and "t5xxl_lr" in imp.consumed:
        if te == 0:
            del imp.consumed["t5xxl_lr"]
            imp.report("t5xxl_lr", imp.gui["t5xxl_lr"], _bad("the GUI refuses a T5XXL learning rate without a text encoder learning rate"))
        elif imp.network_module != "networks.lora_flux":
            del imp.consumed["t5xxl_lr"]
            imp.report("t5xxl_lr", imp.gui["t5xxl_lr"], _inactive("only networks.lora_flux takes a second text encoder rate"))
    if unet > 0:
        imp.put("training", "unet_lr", unet)
    if te == 0 and unet != 0:
        imp.put("training", "network_train_unet_only", True)
        imp.notes.append("Text encoder learning rate 0: the GUI trains the U-Net only (network_train_unet_only).")
    elif te != 0 and unet == 0:
        imp.put("training", "network_train_text_encoder_only", True)
        imp.notes.append("U-Net learning rate 0: the GUI trains the text encoder only (network_train_text_encoder_only).")
    if not (lr or te or unet) and rates:
        imp.notes.append("All learning rates are 0: the GUI refuses to train this config.")


def _import_duration(imp: _Import) -> None:
    counts: dict[str, int] = {}
    for key in ("epoch", "max_train_epochs", "max_train_steps"):
        if key in imp.gui:
            ok, value = imp.value(key, "int", blank=0)
            if ok:
                counts[key] = value
    epochs, steps, epoch = (counts.get(k, 0) for k in ("max_train_epochs", "max_train_steps", "epoch"))
    if epochs > 0:
        imp.put("training", "max_train_epochs", epochs)
    if steps > 0:
        imp.put("training", "max_train_steps", steps)
    imp.take(*(k for k in ("max_train_epochs", "max_train_steps") if k in counts))
    if "epoch" not in counts:
        return
    if epochs == 0 and steps == 0:
        if epoch > 0:
            imp.put("training", "max_train_epochs", epoch)
            imp.notes.append(f"epoch {epoch}: the GUI turns it into max_train_steps from the image count; the spec says max_train_epochs = {epoch}.")
        imp.take("epoch")
    elif epoch in (0, 1, epochs):
        imp.take("epoch")
    else:
        imp.report("epoch", imp.gui["epoch"], _inactive("the GUI ignores epoch when max_train_steps or max_train_epochs is set"))


def _import_warmup(imp: _Import) -> None:
    ok_p, percent = imp.value("lr_warmup", "float", blank=0.0) if "lr_warmup" in imp.gui else (True, 0.0)
    ok_s, steps = imp.value("lr_warmup_steps", "float", blank=0.0) if "lr_warmup_steps" in imp.gui else (True, 0.0)
    if ok_s and steps > 0:
        if not float(steps).is_integer():
            imp.report("lr_warmup_steps", imp.gui["lr_warmup_steps"], _bad("not a whole number of steps"))
        else:
            imp.put("training", "lr_warmup_steps", int(steps))
            imp.take("lr_warmup_steps")
        if ok_p and percent:
            imp.report("lr_warmup", imp.gui["lr_warmup"], _inactive("overridden by lr_warmup_steps"))
        elif ok_p:
            imp.take("lr_warmup")
        return
    if ok_s:
        imp.take("lr_warmup_steps")
    if ok_p and percent:
        if not 0 < percent <= 100:
            imp.report("lr_warmup", imp.gui["lr_warmup"], _bad("expected a percentage of the total steps"))
            return
        imp.put("training", "lr_warmup_steps", round(percent / 100, 6))
    if ok_p:
        imp.take("lr_warmup")


def _import_attention(imp: _Import) -> None:
    if "xformers" not in imp.gui:
        return
    raw = imp.gui["xformers"]
    mode = ("xformers" if raw else "none") if isinstance(raw, bool) else (str(raw).strip() or "none")
    if mode in ("xformers", "sdpa"):
        imp.put("training", mode, True)
    elif mode != "none":
        imp.report("xformers", raw, _bad("expected 'xformers', 'sdpa' or 'none'"))
        return
    imp.take("xformers")


def _import_noise(imp: _Import) -> None:
    keys = ("noise_offset_type", "noise_offset", "adaptive_noise_scale",
            "noise_offset_random_strength", "multires_noise_iterations", "multires_noise_discount")
    if not any(k in imp.gui for k in keys):
        return
    kind = str(imp.raw("noise_offset_type") or "Original").strip()
    if kind not in ("Original", "Multires"):
        imp.report("noise_offset_type", imp.raw("noise_offset_type"), _bad("expected 'Original' or 'Multires'"))
        for key in keys[1:]:
            imp.inactive(key, "noise_offset_type not understood")
        return
    imp.take("noise_offset_type")
    fields = {"noise_offset": "float", "adaptive_noise_scale": "float",
              "noise_offset_random_strength": "bool", "multires_noise_iterations": "int",
              "multires_noise_discount": "float"}
    values = {}
    for key, kind_of in fields.items():
        if key in imp.gui:
            ok, value = imp.value(key, kind_of)
            if ok:
                values[key] = value
    active = ("noise_offset", "adaptive_noise_scale", "noise_offset_random_strength") if kind == "Original" \
        else ("multires_noise_iterations", "multires_noise_discount")
    for key in active:
        value = values.get(key)
        if key not in values:
            continue
        if key == "multires_noise_discount" and not values.get("multires_noise_iterations"):
            imp.take(key)  # passed by the GUI, but sd-scripts ignores it without iterations
        elif value:
            imp.put("training", key, value)
            imp.take(key)
        else:
            imp.take(key)
    for key in values:
        if key not in active:
            if key == "multires_noise_discount" and not values.get("multires_noise_iterations"):
                imp.take(key)
            else:
                imp.inactive(key, f"noise_offset_type is {kind}")


def _lora_type(imp: _Import) -> tuple[str, _NetType] | None:
    """The GUI's LoRA_type, repaired like "Open config" does; None (reported) if unusable."""
    raw_type = imp.raw("LoRA_type")
    type_name = "Standard" if _blank(raw_type) else str(raw_type).strip()
    if type_name in _LEGACY_TYPES:
        imp.notes.append(f"LoRA_type {type_name!r} is the old name of {_LEGACY_TYPES[type_name]!r}.")
        type_name = _LEGACY_TYPES[type_name]
    nettype = _NET_TYPES.get(type_name)
    if nettype is None:
        if type_name in _UNSUPPORTED_TYPES:
            imp.report("LoRA_type", raw_type, f"LoRA type for model family {_UNSUPPORTED_TYPES[type_name]}, which kohya-wrap does not support")
        else:
            imp.report("LoRA_type", raw_type, _bad("unknown LoRA type"))
        return None
    imp.take("LoRA_type")
    if nettype.requires and nettype.requires != imp.family:
        imp.notes.append(f"LoRA_type {type_name!r} needs the {_WHEN[nettype.requires][1]} model checkbox; the GUI refuses to train this config.")
    if imp.family == "flux" and nettype.requires != "flux" and nettype.module != "lycoris.kohya":
        imp.notes.append(f"FLUX.1 needs LoRA_type Flux1, Flux1 OFT or LyCORIS; the GUI refuses to train with {type_name!r}.")
    return type_name, nettype


def _network_values(imp: _Import) -> dict[str, object]:
    """The network keys of the file, converted; plus the switches the rules look at."""
    values: dict[str, object] = {}
    for key, kind in _NET_KEYS.items():
        if key in imp.gui:
            ok, value = imp.value(key, kind)
            if ok:
                values[key] = _GUI_BASE.get(key) if value is None else value
    try:
        split = imp.gui.get("split_mode")
        values["split_mode"] = imp.family == "flux" and not _blank(split) and _to_bool(split)
    except _BadValue:
        values["split_mode"] = False  # reported with the one-to-one keys
    return values


def _network_args(imp: _Import, nettype: _NetType, values: dict[str, object]) -> tuple[list[str], set[str]]:
    """What train_model passes as network_args, and the GUI keys it looked at."""
    args: list[str] = [f"algo={nettype.algo}"] if nettype.algo else []
    used: set[str] = set()
    for arg, key, rule in (*nettype.args, *((k, k, "truthy") for k in _LORAPLUS)):
        if rule == "split_mode":
            if values["split_mode"]:
                used.add(key)
                if values.get(key) not in ("single", "all", None, ""):
                    imp.notes.append(f"split_mode is on: the GUI trains train_blocks=single, not {values[key]!r}.")
                args.append("train_blocks=single")
            continue
        if key in values:
            value = values[key]
        elif rule == "always":
            value = _GUI_BASE[key]  # missing from the file: the GUI keeps its field's default
        else:
            continue
        used.add(key)
        if _emitted(rule, key, value, values):
            try:
                args.append(_arg_text(rule, arg, key, value))
            except _BadValue as exc:
                imp.report(key, imp.gui.get(key), _bad(str(exc)))
    if nettype.module == "networks.lora_flux":
        used.add("train_lora_ggpo")
    return args, used


def _import_network(imp: _Import) -> None:
    if not any(k in imp.gui for k in ("LoRA_type", *_NET_KEYS)):
        return
    chosen = _lora_type(imp)
    if chosen is None:
        for key in _NET_KEYS:
            imp.inactive(key, "LoRA_type not mapped")
        return
    type_name, nettype = chosen
    values = _network_values(imp)
    t5xxl_ignored = imp.family != "flux" and values.get("train_t5xxl") is True
    if t5xxl_ignored:
        values["train_t5xxl"] = False  # the GUI passes train_t5xxl only with the FLUX.1 checkbox
    args, used = _network_args(imp, nettype, values)
    if t5xxl_ignored:
        used.discard("train_t5xxl")
    imp.network_module = nettype.module
    imp.put("training", "network_module", nettype.module)
    if args:
        imp.put("training", "network_args", args)
    for key in _NET_KEYS:
        if key not in imp.gui or imp.done(key):
            continue
        if key in used:
            imp.take(key)
        elif key == "train_t5xxl" and t5xxl_ignored:
            imp.inactive(key, "the GUI passes train_t5xxl only with the FLUX.1 checkbox")
        elif key == "train_blocks":
            imp.inactive(key, "the GUI passes train_blocks only with split_mode")
        else:
            imp.inactive(key, f"not used by LoRA_type {type_name}")
    if nettype.module in ("networks.loha", "networks.lokr"):
        imp.notes.append(f"{nettype.module} is a recent sd-scripts module (absent from sd-scripts v0.10.1, kohya-wrap's pin); check that the sd-scripts you run has it.")


def _import_sample(imp: _Import) -> None:
    keys = ("sample_prompts", "sample_sampler", "sample_every_n_epochs", "sample_every_n_steps")
    if not any(k in imp.gui for k in keys):
        return
    schedule: dict[str, object] = {}
    for key, dest, kind in (("sample_every_n_epochs", "every_n_epochs", "int"),
                            ("sample_every_n_steps", "every_n_steps", "int"),
                            ("sample_sampler", "sampler", "str")):
        if key in imp.gui:
            ok, value = imp.value(key, kind)
            if ok and value:
                schedule[dest] = value
            elif ok:
                imp.take(key)
    ok, text = imp.value("sample_prompts", "str", blank="") if "sample_prompts" in imp.gui else (True, "")
    parsed: dict[str, object] = {}
    if ok and text:
        try:
            parsed, dropped = _prompts_to_sample(text)
        except _BadValue as exc:
            imp.report("sample_prompts", text, _bad(str(exc)))
            ok = False
        else:
            for option in dropped:
                imp.notes.append(f"Sample prompt option {option!r} has no place in the spec; left out.")
    if ok:
        imp.take("sample_prompts")
    has_schedule = bool(schedule.get("every_n_epochs") or schedule.get("every_n_steps"))
    if parsed.get("prompts") and not has_schedule:
        del imp.consumed["sample_prompts"]
        imp.report("sample_prompts", text, _inactive("sample_every_n_epochs and sample_every_n_steps are 0, so sd-scripts makes no samples"))
        parsed = {}
    for dest, key in (("every_n_epochs", "sample_every_n_epochs"), ("every_n_steps", "sample_every_n_steps"),
                      ("sampler", "sample_sampler")):
        if dest not in schedule:
            continue
        if parsed.get("prompts"):
            imp.take(key)
        else:
            del schedule[dest]
            imp.inactive(key, "no sample_prompts")
    if parsed.get("prompts"):
        missing = [f"--{flag}" for flag, (name, _p) in _PROMPT_FLAGS.items()
                   if name in ("steps", "cfg", "seed") and name not in parsed]
        if missing:
            imp.notes.append(f"Sample prompts without {', '.join(missing)} got sd-scripts' defaults in the GUI; the spec's [sample] defaults apply now.")
        imp.spec["sample"] = {**parsed, **schedule}


def _import_mixed_precision(imp: _Import) -> None:
    if "mixed_precision" not in imp.gui:
        return
    ok, value = imp.value("mixed_precision", "str", blank="")
    if ok:
        if value:
            imp.put("training", "mixed_precision", value)  # the GUI passes it to both
            imp.put("launch", "mixed_precision", value)
        imp.take("mixed_precision")


def _import_legacy(imp: _Import) -> None:
    """What common_gui.update_my_data does to old files."""
    if "use_8bit_adam" in imp.gui:
        ok, on = imp.value("use_8bit_adam", "bool", blank=False)
        if ok and "optimizer" not in imp.gui:
            imp.put("training", "optimizer_type", "AdamW8bit" if on else "AdamW")
            imp.take("use_8bit_adam")
        elif ok and on:
            imp.report("use_8bit_adam", True, _inactive("obsolete GUI key; optimizer decides"))
        elif ok:
            imp.take("use_8bit_adam")
    if "lora_network_weights" in imp.gui:
        if _blank(imp.gui["lora_network_weights"]):
            imp.take("lora_network_weights")
        elif _blank(imp.gui.get("network_weights")):
            ok, path = imp.value("lora_network_weights", "str")
            if ok:
                imp.put("training", "network_weights", path)
                imp.take("lora_network_weights")
        else:
            imp.report("lora_network_weights", imp.gui["lora_network_weights"], _inactive("obsolete GUI key; network_weights is set"))
    if "use_wandb" in imp.gui:
        ok, on = imp.value("use_wandb", "bool", blank=False)
        if ok and on and _blank(imp.gui.get("log_with")):
            imp.put("training", "log_with", "wandb")
        if ok:
            imp.take("use_wandb")


def _import_no_field(imp: _Import) -> None:
    for key in _UI_ONLY:
        if key in imp.gui and not imp.done(key):
            imp.report(key, imp.gui[key], f"{R_GUI_ONLY} (UI state)")
    for key, reason in _NO_FIELD.items():
        if key not in imp.gui or imp.done(key):
            continue
        value = imp.gui[key]
        if _is_gui_default(key, value) or value in (0, False, "0"):
            imp.take(key)
        elif key == "show_timesteps_resolution":
            if _blank(imp.gui.get("show_timesteps")):
                imp.take(key)
            else:
                imp.report(key, value, reason)
        else:
            imp.report(key, value, reason)
    if "model_type" in imp.gui and not imp.done("model_type"):
        kind = str(imp.gui["model_type"] or "flux").strip().lower()
        if kind == "chroma" and imp.family == "flux":
            imp.put("training", "model_type", "chroma")
            # train_model forces these two for Chroma, guidance_scale even when it is 0
            imp.put("training", "apply_t5_attn_mask", True)
            ok, scale = imp.value("guidance_scale", "float", blank=0.0) if "guidance_scale" in imp.gui else (True, 0.0)
            if ok:
                imp.put("training", "guidance_scale", scale)
                imp.take("guidance_scale")
            imp.notes.append("model_type chroma: sd-scripts trains Chroma, which uses no clip_l (kohya-wrap's spec still asks for model.clip_l).")
            imp.take("model_type")
        elif kind in ("flux", ""):
            imp.take("model_type")
        else:
            imp.inactive("model_type", "only used with the FLUX.1 checkbox")


def _import_fields(imp: _Import) -> None:
    for key, field in _FIELDS.items():
        if key not in imp.gui or imp.done(key):
            continue
        raw = imp.gui[key]
        if _blank(raw) and field.blank is not _NOTHING:
            value: Any = field.blank
        else:
            ok, value = imp.value(key, field.kind)
            if not ok:
                continue
        active = not field.when or _WHEN[field.when][0](imp.family)
        if value is None or _unset(value, field):
            imp.take(key)
        elif not active:
            imp.inactive(key, f"the GUI passes it only for {_WHEN[field.when][1]}")
        else:
            imp.put(field.dest[0], field.dest[1], value)
            imp.take(key)


def _unset(value: object, field: _Field) -> bool:
    if value in field.unset:
        return True
    if field.kind == "flag":
        return value is False
    if field.kind == "bool":
        return False
    if field.kind in ("int", "float"):
        return value == 0 and not field.keep_zero
    return value in ("", [])


_IMPORT_STEPS: tuple[Callable[[_Import], None], ...] = (
    _import_family,
    _import_model_and_name,
    _import_folders,
    _import_resolution,
    _import_network,
    _import_learning_rates,
    _import_duration,
    _import_warmup,
    _import_attention,
    _import_noise,
    _import_sample,
    _import_mixed_precision,
    _import_legacy,
    _import_no_field,
    _import_fields,
)


def spec_from_kohya_ss(gui: dict, *, subfolders: Callable[[str], list[str]] | None = None) -> ImportResult:
    """Build a kohya-wrap spec dict from a kohya_ss GUI LoRA config dict.

    ``subfolders(path)`` lists the subfolder names of a GUI ``train_data_dir``
    or ``reg_data_dir``; with it, each ``<repeats>_<token> <class>`` folder
    becomes a ``[[concepts]]`` entry whose ``source`` is that folder. Without
    it, the folders are reported as unmapped.
    """
    if not isinstance(gui, dict):
        raise TypeError(f"expected the GUI config as a dict, got {type(gui).__name__}")
    imp = _Import(gui, subfolders)
    for step in _IMPORT_STEPS:
        step(imp)
    for key, value in gui.items():
        if not imp.done(key):
            imp.report(key, value, R_UNKNOWN)
    spec = _ordered_spec(imp.spec)
    return ImportResult(spec=spec, unmapped=tuple(imp.unmapped), notes=tuple(imp.notes),
                        consumed=tuple(k for k in gui if k in imp.consumed))


_SPEC_ORDER = ("extends", "name", "model", "concepts", "dataset", "training", "sample", "launch")


def _ordered_spec(spec: dict) -> dict:
    out = {k: spec[k] for k in _SPEC_ORDER if k in spec}
    out.update({k: v for k, v in spec.items() if k not in out})
    return out


# --------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------

_SPEC_OWNED = frozenset({"pretrained_model_name_or_path", "output_name", "output_dir", "logging_dir",
                         "train_data_dir", "reg_data_dir", "resolution", "sample_prompts",
                         "config_file", "dataset_config"})
_CONCEPT_KEYS = frozenset({"token", "class", "repeats", "source", "is_reg"})
_FAMILY_FLAGS = {"sd15": (), "sd2": ("v2",), "sdxl": ("sdxl",), "flux": ("flux1_checkbox",)}


class _Export:
    def __init__(self, spec: dict, project_dir: str) -> None:
        self.spec = spec
        self.project_dir = project_dir
        self.gui: dict[str, object] = dict(_GUI_BASE)
        self.unmapped: list[Unmapped] = []
        self.done: set[tuple[str, str]] = set()
        self.family: str | None = None

    def section(self, name: str) -> dict:
        value = self.spec.get(name)
        return value if isinstance(value, dict) else {}

    def get(self, section: str, key: str, default: object = None) -> object:
        return self.section(section).get(key, default)

    def has(self, section: str, key: str) -> bool:
        return key in self.section(section)

    def use(self, section: str, *keys: str) -> None:
        self.done.update((section, k) for k in keys)

    def report(self, key: str, value: object, reason: str) -> None:
        self.unmapped.append(Unmapped(key, value, reason))


# The value kind of the GUI keys that _FIELDS and _NET_KEYS do not cover.
_OTHER_KINDS: dict[str, str] = {
    "learning_rate": "float", "text_encoder_lr": "float", "unet_lr": "float", "t5xxl_lr": "float",
    "noise_offset": "float", "adaptive_noise_scale": "float", "multires_noise_discount": "float",
    "noise_offset_random_strength": "bool", "multires_noise_iterations": "int",
    "sample_every_n_epochs": "int", "sample_every_n_steps": "int", "sample_sampler": "str",
}


def _kind_of(key: str) -> str:
    if key in _FIELDS:
        return _FIELDS[key].kind
    return _NET_KEYS.get(key) or _OTHER_KINDS.get(key) or "str"


def _gui_value(key: str, value: object) -> object:
    """A spec value in the type the GUI stores for ``key``."""
    kind = _kind_of(key)
    if kind in ("flag", "bool"):
        return _to_bool(value)
    if kind == "int":
        return _to_int(value)
    if kind == "float":
        number = _to_float(value)
        return int(number) if isinstance(value, int) and not isinstance(value, bool) else number
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
        if any(re.search(r"\s|\"", v) for v in items):
            raise _BadValue(f"{value!r}: an item contains blanks or quotes, which the GUI cannot keep")
        return " ".join(items)
    return _to_str(value)


def _export_top(exp: _Export) -> None:
    for key in exp.spec:
        if key not in _SPEC_ORDER:
            exp.report(key, exp.spec[key], R_NO_GUI_FIELD)
    if "extends" in exp.spec:
        exp.report("extends", exp.spec["extends"], "presets are not exported: resolve the preset into the spec first, or the GUI file lacks its settings")
    name = exp.spec.get("name")
    if name is not None:
        if isinstance(name, str) and _NAME_RE.fullmatch(name):
            exp.gui["output_name"] = name
        else:
            exp.report("name", name, _bad("not a valid output name"))
    exp.gui["output_dir"] = _join(exp.project_dir, "model")
    exp.gui["logging_dir"] = _join(exp.project_dir, "log")


def _export_model(exp: _Export) -> None:
    model = exp.section("model")
    family = model.get("family")
    if family in _FAMILY_FLAGS:
        exp.family = str(family)
        for flag in _FAMILY_FLAGS[exp.family]:
            exp.gui[flag] = True
    elif family is not None:
        exp.report("model.family", family, _bad("expected sd15, sd2, sdxl or flux"))
    base = model.get("base")
    if isinstance(base, str) and base.startswith("hf://"):
        repo = base[len("hf://"):].strip("/")
        if repo.count("/") == 1:
            exp.gui["pretrained_model_name_or_path"] = repo
        else:
            exp.report("model.base", base, f"{R_NO_GUI_FIELD}: the GUI cannot load a single file from the Hub; download it and use its path")
    elif isinstance(base, str):
        exp.gui["pretrained_model_name_or_path"] = base
    elif base is not None:
        exp.report("model.base", base, _bad("expected a path"))
    if model.get("v_parameterization"):
        exp.gui["v_parameterization"] = True
    for key in ("vae", "ae", "clip_l", "t5xxl"):
        if key in model:
            field = _FIELDS[key]
            if field.when and not _WHEN[field.when][0](exp.family):
                exp.report(f"model.{key}", model[key], f"{R_NO_GUI_FIELD} for {exp.family or 'this'} models (the GUI passes it only for {_WHEN[field.when][1]})")
            else:
                exp.gui[key] = str(model[key])
    for key, value in model.items():
        if key not in ("family", "base", "v_parameterization", "vae", "ae", "clip_l", "t5xxl"):
            exp.report(f"model.{key}", value, R_NO_GUI_FIELD)


def _export_concepts(exp: _Export) -> None:
    concepts = exp.spec.get("concepts") or []
    if not isinstance(concepts, list):
        exp.report("concepts", concepts, _bad("expected a list"))
        return
    exp.gui["train_data_dir"] = _join(exp.project_dir, "image")
    if any(isinstance(c, dict) and c.get("is_reg") for c in concepts):
        exp.gui["reg_data_dir"] = _join(exp.project_dir, "reg")
    for index, concept in enumerate(concepts):
        if not isinstance(concept, dict):
            exp.report(f"concepts[{index}]", concept, _bad("expected a table"))
            continue
        for key, value in concept.items():
            if key not in _CONCEPT_KEYS:
                exp.report(f"concepts[{index}].{key}", value, f"{R_NO_GUI_FIELD}: the GUI has only dataset-wide settings")


def _export_resolution(exp: _Export) -> None:
    if not exp.has("dataset", "resolution"):
        return
    exp.use("dataset", "resolution")
    value = exp.get("dataset", "resolution")
    try:
        if isinstance(value, (list, tuple)) and len(value) == 2:
            width, height = (_to_int(v) for v in value)
        else:
            width = height = _to_int(value)
    except _BadValue as exc:
        exp.report("dataset.resolution", value, _bad(str(exc)))
        return
    exp.gui["max_resolution"] = f"{width},{height}"


def _spec_network_args(exp: _Export) -> list[tuple[str, str]]:
    raw_args = exp.get("training", "network_args") or []
    if isinstance(raw_args, str):
        raw_args = raw_args.split()
    pairs: list[tuple[str, str]] = []
    for item in raw_args if isinstance(raw_args, (list, tuple)) else [raw_args]:
        key, sep, val = str(item).partition("=")
        if sep:
            pairs.append((key.strip(), val.strip()))
        else:
            exp.report("training.network_args", str(item), _bad("expected key=value"))
    return pairs


def _gui_lora_type(exp: _Export, module: object, given: dict[str, str]) -> str | None:
    """The GUI LoRA_type for a network_module (+ LyCORIS algo); None (reported) if none fits."""
    if module is None:
        return "Flux1" if exp.family == "flux" else "Standard"
    if module == "lycoris.kohya":
        algo = given.get("algo", "lora").lower()
        if algo not in _ALGO_TO_TYPE:
            exp.report("training.network_args", f"algo={algo}", f"{R_NO_GUI_FIELD}: the GUI has no LyCORIS type for this algo")
        return _ALGO_TO_TYPE.get(algo)
    if module == "networks.lora":
        return "Kohya LoCon" if "conv_dim" in given or "conv_alpha" in given else "Standard"
    if module in _MODULE_TO_TYPE:
        return _MODULE_TO_TYPE[str(module)]
    exp.report("training.network_module", module, f"{R_NO_GUI_FIELD}: no GUI LoRA type uses this module")
    if given:
        exp.report("training.network_args", [f"{k}={v}" for k, v in given.items()], f"{R_NO_GUI_FIELD}: no GUI LoRA type uses this module")
    return None


def _set_network_arg(exp: _Export, key: str, rule: str, arg: str, text: str) -> bool:
    """Put one network arg into its GUI field; False when it could not be."""
    shown = f"{arg}={text}"
    value = _parse_scalar(text)
    if rule == "split_mode":
        if text == "single" and exp.get("training", "split_mode") is True:
            exp.gui["train_blocks"] = "single"
        elif text != "all":
            exp.report("training.network_args", shown, f"{R_NO_GUI_FIELD}: the GUI sets train_blocks only as 'single', with split_mode")
        return False
    if rule == "flag" and value is not True:
        if value is not False:
            exp.report("training.network_args", shown, _bad("expected True or False"))
        return False
    try:
        exp.gui[key] = text if _NET_KEYS.get(key) == "str" else _gui_value(key, value)
    except _BadValue as exc:
        exp.report("training.network_args", shown, _bad(str(exc)))
        return False
    if rule == "ggpo":
        exp.gui["train_lora_ggpo"] = True
    return True


def _export_network(exp: _Export) -> None:
    exp.use("training", "network_module", "network_args")
    pairs = _spec_network_args(exp)
    given = dict(pairs)
    type_name = _gui_lora_type(exp, exp.get("training", "network_module"), given)
    if type_name is None:
        return
    nettype = _NET_TYPES[type_name]
    exp.gui["LoRA_type"] = type_name
    by_arg = {arg: (key, rule) for arg, key, rule in nettype.args}
    by_arg.update({key: (key, "truthy") for key in _LORAPLUS})
    set_keys: set[str] = set()
    for arg, text in pairs:
        if arg == "algo" and nettype.algo:
            continue
        if arg not in by_arg:
            exp.report("training.network_args", f"{arg}={text}", f"{R_NO_GUI_FIELD} for LoRA_type {type_name}")
        elif _set_network_arg(exp, *by_arg[arg], arg, text):
            set_keys.add(by_arg[arg][0])
    filled = [f"{arg}={_fmt_arg(key, exp.gui[key])}" for arg, key, rule in nettype.args
              if rule == "always" and key not in set_keys]
    if filled:
        exp.report("training.network_args", filled, f"the GUI always passes these for LoRA_type {type_name}; the file has the GUI defaults")
    if type_name == "Flux1" and exp.get("training", "split_mode") is True:
        exp.gui["train_blocks"] = "single"  # the GUI forces it with split_mode


def _export_learning_rates(exp: _Export) -> None:
    training = exp.section("training")
    exp.use("training", "learning_rate", "text_encoder_lr", "unet_lr",
            "network_train_unet_only", "network_train_text_encoder_only")
    try:
        lr = _to_float(training["learning_rate"]) if "learning_rate" in training else None
        unet = _to_float(training["unet_lr"]) if training.get("unet_lr") is not None else 0.0
        te_raw = training.get("text_encoder_lr")
        te_list = [] if te_raw is None else [_to_float(v) for v in (te_raw if isinstance(te_raw, (list, tuple)) else [te_raw])]
    except _BadValue as exc:
        exp.report("training.learning_rate", None, _bad(str(exc)))
        return
    if lr is not None:
        exp.gui["learning_rate"] = lr
    fallback = lr if lr else float(_GUI_BASE["learning_rate"])  # type: ignore[arg-type]
    if len(te_list) > 2:
        exp.report("training.text_encoder_lr", te_raw, f"{R_NO_GUI_FIELD}: the GUI holds at most two text encoder rates")
        te_list = te_list[:1]
    te = te_list[0] if te_list else 0.0
    t5 = te_list[1] if len(te_list) == 2 and te_list[1] != te else 0.0
    unet_only = training.get("network_train_unet_only") is True
    te_only = training.get("network_train_text_encoder_only") is True
    if unet_only and te_only:
        exp.report("training.network_train_text_encoder_only", True, _bad("conflicts with network_train_unet_only"))
        te_only = False
    if unet_only:
        if te_list:
            exp.report("training.text_encoder_lr", te_raw, _inactive("network_train_unet_only is set"))
        te, t5, unet = 0.0, 0.0, unet or fallback
    elif te_only:
        if unet:
            exp.report("training.unet_lr", unet, _inactive("network_train_text_encoder_only is set"))
        te, unet = te or fallback, 0.0
    elif te and not unet:
        unet = fallback  # a U-Net rate of 0 would make the GUI train the text encoder only
    elif unet and not te:
        te = fallback  # a text encoder rate of 0 would make the GUI train the U-Net only
    exp.gui["text_encoder_lr"], exp.gui["t5xxl_lr"], exp.gui["unet_lr"] = te, t5, unet


def _export_duration(exp: _Export) -> None:
    exp.use("training", "max_train_epochs", "max_train_steps", "lr_warmup_steps")
    try:
        epochs = _to_int(exp.get("training", "max_train_epochs") or 0)
        steps = _to_int(exp.get("training", "max_train_steps") or 0)
    except _BadValue as exc:
        exp.report("training.max_train_epochs", None, _bad(str(exc)))
        return
    exp.gui["epoch"] = epochs or 1
    exp.gui["max_train_epochs"] = epochs
    exp.gui["max_train_steps"] = steps or (0 if epochs else _GUI_BASE["max_train_steps"])
    warmup = exp.get("training", "lr_warmup_steps")
    if warmup is None:
        return
    if isinstance(warmup, float) and 0 < warmup < 1:
        percent = round(warmup * 100, 6)
        exp.gui["lr_warmup"] = int(percent) if float(percent).is_integer() else percent
        exp.gui["lr_warmup_steps"] = 0
    else:
        try:
            exp.gui["lr_warmup_steps"] = _to_int(warmup)
            exp.gui["lr_warmup"] = 0
        except _BadValue as exc:
            exp.report("training.lr_warmup_steps", warmup, _bad(str(exc)))


def _export_switches(exp: _Export) -> None:
    training = exp.section("training")
    exp.use("training", "xformers", "sdpa", "mixed_precision", "model_type")
    if training.get("xformers") is True:
        exp.gui["xformers"] = "xformers"
        if training.get("sdpa") is True:
            exp.report("training.sdpa", True, f"{R_NO_GUI_FIELD}: the GUI's attention choice is one of xformers/sdpa/none; exported xformers")
    elif training.get("sdpa") is True:
        exp.gui["xformers"] = "sdpa"
    launch_mp, train_mp = exp.get("launch", "mixed_precision"), training.get("mixed_precision")
    exp.use("launch", "mixed_precision")
    if launch_mp is not None or train_mp is not None:
        exp.gui["mixed_precision"] = str(launch_mp if launch_mp is not None else train_mp)
        if launch_mp is not None and train_mp is not None and launch_mp != train_mp:
            exp.report("training.mixed_precision", train_mp, f"{R_NO_GUI_FIELD}: the GUI has one mixed_precision for accelerate and sd-scripts; exported launch.mixed_precision")
    model_type = training.get("model_type")
    if model_type is not None:
        if exp.family == "flux" and model_type in ("flux", "chroma"):
            exp.gui["model_type"] = model_type
        else:
            exp.report("training.model_type", model_type, R_NO_GUI_FIELD)
    # noise offset: the GUI holds one kind at a time
    noise = {k: training[k] for k in ("noise_offset", "adaptive_noise_scale", "noise_offset_random_strength",
                                      "multires_noise_iterations", "multires_noise_discount") if k in training}
    exp.use("training", *noise)
    multires = bool(noise.get("multires_noise_iterations"))
    original = any(noise.get(k) for k in ("noise_offset", "adaptive_noise_scale", "noise_offset_random_strength"))
    if multires and original:
        for key in ("multires_noise_iterations", "multires_noise_discount"):
            if key in noise:
                exp.report(f"training.{key}", noise[key], f"{R_NO_GUI_FIELD}: the GUI uses either noise_offset or multires noise; exported noise_offset")
        multires = False
    exp.gui["noise_offset_type"] = "Multires" if multires else "Original"
    wanted = ("multires_noise_iterations", "multires_noise_discount") if multires else \
        ("noise_offset", "adaptive_noise_scale", "noise_offset_random_strength")
    for key, value in noise.items():
        if key not in wanted:
            continue  # reported above, or a value without effect (0, or a discount without iterations)
        try:
            exp.gui[key] = _gui_value(key, value)
        except _BadValue as exc:
            exp.report(f"training.{key}", value, _bad(str(exc)))


def _prompt_line(exp: _Export, index: int, prompt: object, section: dict[str, object]) -> str | None:
    """One GUI prompt line: the text, then the section's options overridden by the prompt's own."""
    own = dict(prompt) if isinstance(prompt, dict) else {"text": prompt}
    text = own.pop("text", None)
    if not isinstance(text, str) or "\n" in text or " --" in text:
        exp.report(f"sample.prompts[{index}]", prompt, _bad("expected one line of text without ' --'"))
        return None
    line = text.strip()
    for flag, (name, _pattern) in _PROMPT_FLAGS.items():
        value = own.pop(name, section.get(name))
        if value is None or (name == "sampler" and value == section.get("sampler")):
            continue
        shown = _fmt_number(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
        if " --" in shown or "\n" in shown:
            exp.report(f"sample.prompts[{index}].{name}", value, _bad("contains ' --' or a line break"))
            continue
        line += f" --{flag} {shown}"
    for key, value in own.items():
        exp.report(f"sample.prompts[{index}].{key}", value, R_NO_GUI_FIELD)
    return line


def _export_sample(exp: _Export) -> None:
    sample = exp.section("sample")
    if not sample:
        return
    section = {**_SPEC_SAMPLE_DEFAULTS, **{k: v for k, v in sample.items() if v is not None}}
    size = exp.get("dataset", "resolution")
    if isinstance(size, int) or (isinstance(size, (list, tuple)) and len(size) == 2):
        width, height = (size, size) if isinstance(size, int) else size
        section.setdefault("width", width)  # the spec's default sample size is the training size
        section.setdefault("height", height)
    prompts = sample.get("prompts") or []
    lines = [_prompt_line(exp, i, p, section) for i, p in enumerate(prompts if isinstance(prompts, list) else [prompts])]
    exp.gui["sample_prompts"] = "\n".join(line for line in lines if line is not None)
    for name, key in (("every_n_epochs", "sample_every_n_epochs"), ("every_n_steps", "sample_every_n_steps"),
                      ("sampler", "sample_sampler")):
        if section.get(name) is not None:
            try:
                exp.gui[key] = _gui_value(key, section[name])
            except _BadValue as exc:
                exp.report(f"sample.{name}", section[name], _bad(str(exc)))
    handled = {"prompts", "every_n_epochs", "every_n_steps", *(n for n, _ in _PROMPT_FLAGS.values())}
    for key, value in sample.items():
        if key not in handled and not (key == "at_first" and value is False):
            exp.report(f"sample.{key}", value, R_NO_GUI_FIELD)


def _export_fields(exp: _Export) -> None:
    """The one-to-one keys of dataset, training and launch, and what is left."""
    reverse: dict[tuple[str, str], list[tuple[str, _Field]]] = {}
    for key, field in _FIELDS.items():
        reverse.setdefault(field.dest, []).append((key, field))
    for section in ("dataset", "training", "launch"):
        for key, value in exp.section(section).items():
            if (section, key) in exp.done:
                continue
            if section == "training" and key in _SPEC_OWNED:
                exp.report(f"{section}.{key}", value, "kohya-wrap owns this setting (see model/name/dataset/sample); not exported from [training]")
                continue
            candidates = reverse.get((section, key), [])
            active = [(k, f) for k, f in candidates if not f.when or _WHEN[f.when][0](exp.family)]
            if not active:
                why = R_NO_GUI_FIELD
                if candidates:
                    whens = sorted({_WHEN[f.when][1] for _k, f in candidates if f.when})
                    why = f"{R_NO_GUI_FIELD} for {exp.family or 'this'} models (the GUI passes it only for {', '.join(whens)})"
                exp.report(f"{section}.{key}", value, why)
                continue
            gui_key, field = active[0]
            if field.kind == "flag" and value is not True:
                if value is not False:
                    exp.report(f"{section}.{key}", value, _bad("expected true or false"))
                continue
            try:
                exp.gui[gui_key] = _gui_value(gui_key, value)
            except _BadValue as exc:
                exp.report(f"{section}.{key}", value, _bad(str(exc)))


_EXPORT_STEPS: tuple[Callable[[_Export], None], ...] = (
    _export_top,
    _export_model,
    _export_concepts,
    _export_resolution,
    _export_network,
    _export_learning_rates,
    _export_duration,
    _export_switches,
    _export_sample,
    _export_fields,
)


def kohya_ss_from_spec(spec: dict, *, project_dir: str) -> tuple[dict, tuple[Unmapped, ...]]:
    """Build a kohya_ss GUI LoRA config (what "Open config" loads) from a spec.

    The folders point into ``project_dir``: ``image/`` (``train_data_dir``),
    ``reg/`` (``reg_data_dir``, when a concept has ``is_reg``), ``model/`` and
    ``log/``. Returns the GUI dict, sorted by key like the GUI's own files, and
    the spec settings the GUI has no field for.
    """
    if not isinstance(spec, dict):
        raise TypeError(f"expected the spec as a dict, got {type(spec).__name__}")
    exp = _Export(spec, project_dir)
    for step in _EXPORT_STEPS:
        step(exp)
    return dict(sorted(exp.gui.items())), tuple(exp.unmapped)
