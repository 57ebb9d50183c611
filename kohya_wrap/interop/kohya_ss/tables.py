"""The kohya_ss GUI's side of the mapping, as data: every key of a LoRA "Save config" file and the
value the exporter writes for it, the keys that map one-to-one to a spec key (``_FIELDS``), the keys
with no spec field, the model families kohya-wrap does not train, and the LoRA types with the
``network_module`` and ``network_args`` the GUI passes for each (``_NET_TYPES``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from kohya_wrap.errors import shown
from kohya_wrap.interop.kohya_ss.values import (
    R_GUI_ONLY,
    R_NO_EQUIV,
    R_NO_SPEC_FIELD,
    R_SECRET,
    _BadValue,
    _blank,
    _same,
    _to_bool,
    _to_float,
    _to_int,
    _to_str,
)

# the kohya_ss commit the tables were read from (see the package docstring)
KOHYA_SS_COMMIT = "45088f04af78e11cec5407ff4652ea3ed2c14422"

# --------------------------------------------------------------------------
# the GUI's keys and the values the exporter writes when the spec is silent
# --------------------------------------------------------------------------

# Every key of a LoRA "Save config" JSON, except the parameters of the model
# families kohya-wrap does not train (their checkboxes are kept). Values: what
# the exporter writes when the spec does not set the key (sd-scripts' own
# default where the GUI always passes the key; the GUI's "off" value otherwise).
_GUI_BASE: dict[str, object] = {
    # source model
    "pretrained_model_name_or_path": "",
    "v2": False,
    "v_parameterization": False,
    "sdxl": False,
    "flux1_checkbox": False,
    "sd3_checkbox": False,
    "hunyuan_image_checkbox": False,
    "anima_checkbox": False,
    "lumina_checkbox": False,
    "dataset_config": "",
    "save_model_as": "safetensors",
    "save_precision": "fp16",
    "train_data_dir": "",
    "output_name": "last",
    "model_list": "custom",
    "training_comment": "",
    # folders
    "logging_dir": "",
    "reg_data_dir": "",
    "output_dir": "",
    # basic training
    "max_resolution": "512,512",
    "learning_rate": 2e-06,
    "lr_scheduler": "constant",
    "lr_warmup": 0,
    "lr_warmup_steps": 0,
    "train_batch_size": 1,
    "epoch": 1,
    "save_every_n_epochs": 0,
    "seed": 0,
    "cache_latents": False,
    "cache_latents_to_disk": False,
    "train_inpainting": False,
    "caption_extension": ".txt",
    "enable_bucket": False,
    "stop_text_encoder_training": 0,
    "min_bucket_reso": 256,
    "max_bucket_reso": 1024,
    "max_train_epochs": 0,
    "max_train_steps": 1600,
    "lr_scheduler_num_cycles": 1,
    "lr_scheduler_power": 1.0,
    "optimizer": "AdamW",
    "optimizer_args": "",
    "lr_scheduler_args": "",
    "lr_scheduler_type": "",
    "max_grad_norm": 1.0,
    # accelerate launch
    "mixed_precision": "no",
    "num_cpu_threads_per_process": 2,
    "num_processes": 1,
    "num_machines": 1,
    "multi_gpu": False,
    "gpu_ids": "",
    "main_process_port": 0,
    "dynamo_backend": "no",
    "dynamo_mode": "default",
    "dynamo_use_fullgraph": False,
    "dynamo_use_dynamic": False,
    "extra_accelerate_launch_args": "",
    # advanced training
    "gradient_checkpointing": False,
    "fp8_base": False,
    "fp8_base_unet": False,
    "full_fp16": False,
    "highvram": False,
    "lowvram": False,
    "xformers": "none",
    "shuffle_caption": False,
    "save_state": False,
    "save_state_on_train_end": False,
    "resume": "",
    "prior_loss_weight": 1.0,
    "color_aug": False,
    "flip_aug": False,
    "masked_loss": False,
    "clip_skip": 1,
    "gradient_accumulation_steps": 1,
    "mem_eff_attn": False,
    "max_token_length": 75,
    "max_data_loader_n_workers": 8,
    "keep_tokens": 0,
    "persistent_data_loader_workers": False,
    "bucket_no_upscale": False,
    "random_crop": False,
    "bucket_reso_steps": 64,
    "v_pred_like_loss": 0,
    "caption_dropout_every_n_epochs": 0,
    "caption_dropout_rate": 0,
    "noise_offset_type": "Original",
    "noise_offset": 0,
    "noise_offset_random_strength": False,
    "adaptive_noise_scale": 0,
    "multires_noise_iterations": 0,
    "multires_noise_discount": 0.3,
    "ip_noise_gamma": 0,
    "ip_noise_gamma_random_strength": False,
    "additional_parameters": "",
    "loss_type": "l2",
    "huber_schedule": "snr",
    "huber_c": 0.1,
    "huber_scale": 1.0,
    "vae_batch_size": 0,
    "min_snr_gamma": 0,
    "save_every_n_steps": 0,
    "save_last_n_steps": 0,
    "save_last_n_steps_state": 0,
    "save_last_n_epochs": 0,
    "save_last_n_epochs_state": 0,
    "skip_cache_check": False,
    "log_with": "",
    "wandb_api_key": "",
    "wandb_run_name": "",
    "log_tracker_name": "",
    "log_tracker_config": "",
    "log_config": False,
    "scale_v_pred_loss_like_noise_pred": False,
    "full_bf16": False,
    "min_timestep": 0,
    "max_timestep": 1000,
    "vae": "",
    "weighted_captions": False,
    "debiased_estimation_loss": False,
    # SDXL
    "sdxl_cache_text_encoder_outputs": False,
    "sdxl_no_half_vae": False,
    # network
    "text_encoder_lr": 0.0,
    "t5xxl_lr": 0.0,
    "unet_lr": 0.0,
    "network_dim": 4,
    "network_weights": "",
    "dim_from_weights": False,
    "network_alpha": 1.0,
    "LoRA_type": "Standard",
    "factor": -1,
    "bypass_mode": False,
    "dora_wd": False,
    "use_cp": False,
    "use_tucker": False,
    "use_scalar": False,
    "rank_dropout_scale": False,
    "constrain": 0.0,
    "rescaled": False,
    "train_norm": False,
    "decompose_both": False,
    "train_on_input": True,
    "conv_dim": 1,
    "conv_alpha": 1,
    # samples
    "sample_every_n_steps": 0,
    "sample_every_n_epochs": 0,
    "sample_sampler": "euler_a",
    "sample_prompts": "",
    # block-wise LoRA
    "down_lr_weight": "",
    "mid_lr_weight": "",
    "up_lr_weight": "",
    "block_lr_zero_threshold": "",
    "block_dims": "",
    "block_alphas": "",
    "conv_block_dims": "",
    "conv_block_alphas": "",
    "unit": 1,
    "scale_weight_norms": 0,
    "network_dropout": 0,
    "rank_dropout": 0,
    "module_dropout": 0,
    "LyCORIS_preset": "full",
    "loraplus_lr_ratio": 0,
    "loraplus_text_encoder_lr_ratio": 0,
    "loraplus_unet_lr_ratio": 0,
    "train_lora_ggpo": False,
    "ggpo_sigma": 0.03,
    "ggpo_beta": 0.01,
    # huggingface
    "huggingface_repo_id": "",
    "huggingface_token": "",
    "huggingface_repo_type": "",
    "huggingface_repo_visibility": "",
    "huggingface_path_in_repo": "",
    "save_state_to_huggingface": False,
    "resume_from_huggingface": "",
    "async_upload": False,
    # metadata
    "metadata_author": "",
    "metadata_description": "",
    "metadata_license": "",
    "metadata_tags": "",
    "metadata_title": "",
    # FLUX.1
    "flux1_cache_text_encoder_outputs": False,
    "flux1_cache_text_encoder_outputs_to_disk": False,
    "model_type": "flux",
    "ae": "",
    "clip_l": "",
    "t5xxl": "",
    "discrete_flow_shift": 3.0,
    "model_prediction_type": "sigma_scaled",
    "timestep_sampling": "sigma",
    "split_mode": False,
    "train_blocks": "all",
    "t5xxl_max_token_length": 512,
    "enable_all_linear": False,
    "guidance_scale": 3.5,
    "mem_eff_save": False,
    "apply_t5_attn_mask": False,
    "split_qkv": False,
    "train_t5xxl": False,
    "cpu_offload_checkpointing": False,
    "blocks_to_swap": 0,
    "single_blocks_to_swap": 0,
    "double_blocks_to_swap": 0,
    "show_timesteps": "",
    "show_timesteps_resolution": "1024",
    "img_attn_dim": "",
    "img_mlp_dim": "",
    "img_mod_dim": "",
    "single_dim": "",
    "txt_attn_dim": "",
    "txt_mlp_dim": "",
    "txt_mod_dim": "",
    "single_mod_dim": "",
    "in_dims": "",
    "train_double_block_indices": "",
    "train_single_block_indices": "",
    # UI state
    "save_as_bool": False,
}

# The GUI's own default where it differs from _GUI_BASE (used to decide
# whether an inactive key holds a setting worth reporting).
_GUI_FACTORY: dict[str, object] = {
    "train_double_block_indices": "all",
    "train_single_block_indices": "all",
    "max_bucket_reso": 2048,
    "max_data_loader_n_workers": 0,
}

# What the GUI trains with when a file lacks one of the keys a kohya-wrap spec needs: "Open config"
# keeps the field's current value for a missing key (lora_gui.py open_configuration, `json_value if
# json_value is not None else value`), which in a fresh GUI is the field's default:
# kohya_gui/class_basic_training.py `basic.max_resolution` "512,512" and `basic.epoch` 1, the same
# in "config example.toml" [basic]. A missing max_train_steps / max_train_epochs reads as 0, as in
# config example.toml and in the 2023 GUI that wrote the presets (empty fields); today's
# class_basic_training.py defaults max_train_steps to 1600 (kohya_ss 542af989, 2024-04), which a
# GUI without config.toml keeps for such a file. So epoch decides, as the presets' authors meant.
_GUI_MISSING_DEFAULTS: dict[str, object] = {
    "max_resolution": "512,512",
    "epoch": 1,
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
    "clip_skip": _F("training", "clip_skip", "int", when="clip_skip"),
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
    "flux1_cache_text_encoder_outputs_to_disk": _F(
        "training", "cache_text_encoder_outputs_to_disk", "flag", when="flux"
    ),
    "fp8_base_unet": _F("training", "fp8_base_unet", "flag", when="flux"),
    "discrete_flow_shift": _F("training", "discrete_flow_shift", "float", when="flux"),
    "model_prediction_type": _F("training", "model_prediction_type", "str", when="flux"),
    "timestep_sampling": _F("training", "timestep_sampling", "str", when="flux"),
    "split_mode": _F("training", "split_mode", "flag", when="flux"),
    "t5xxl_max_token_length": _F("training", "t5xxl_max_token_length", "int", when="flux"),
    "guidance_scale": _F("training", "guidance_scale", "float", when="flux"),
    "apply_t5_attn_mask": _F("training", "apply_t5_attn_mask", "flag", when="flux"),
    "cpu_offload_checkpointing": _F("training", "cpu_offload_checkpointing", "flag", when="flux"),
    "blocks_to_swap": _F("training", "blocks_to_swap", "int", when="dit"),
    # model files
    "vae": _F("model", "vae", "str", when="not_own_vae"),  # HunyuanImage/Anima: hunyuan_vae/anima_vae
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
    # train_model's conditions for the keys the families with their own script share with others
    "not_flux": (
        lambda family: family not in ("flux", "hunyuan_image", "anima", "lumina"),
        "models other than FLUX.1, HunyuanImage-2.1, Anima and Lumina",
    ),
    "clip_skip": (
        lambda family: family not in ("hunyuan_image", "anima", "lumina"),
        "models other than HunyuanImage-2.1, Anima and Lumina",
    ),
    "dit": (
        lambda family: family in ("flux", "sd3", "hunyuan_image", "anima", "lumina"),
        "FLUX.1, SD3, HunyuanImage-2.1, Anima and Lumina",
    ),
    "not_own_vae": (
        lambda family: family not in ("hunyuan_image", "anima"),
        "models other than HunyuanImage-2.1 and Anima (hunyuan_vae / anima_vae)",
    ),
    # the families a LoRA type needs (families._FAMILY_NET_TYPES)
    "lumina": (lambda family: family == "lumina", "Lumina"),
    "anima": (lambda family: family == "anima", "Anima"),
    "hunyuan_image": (lambda family: family == "hunyuan_image", "HunyuanImage-2.1"),
}

# Keys with no spec field: reported when they hold a setting.
_NO_FIELD: dict[str, str] = {
    "dynamo_backend": f"{R_NO_SPEC_FIELD} (accelerate launch --dynamo_backend)",
    "dynamo_mode": f"{R_NO_SPEC_FIELD} (accelerate launch --dynamo_mode)",
    "dynamo_use_fullgraph": f"{R_NO_SPEC_FIELD} (accelerate launch --dynamo_use_fullgraph)",
    "dynamo_use_dynamic": f"{R_NO_SPEC_FIELD} (accelerate launch --dynamo_use_dynamic)",
    "extra_accelerate_launch_args": f"{R_NO_SPEC_FIELD}: free-form accelerate arguments; add the matching [launch] "
    "keys by hand",
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
    "resume_from_huggingface": f"{R_NO_SPEC_FIELD}: sd-scripts' --resume_from_huggingface is a switch and the Hub "
    "location goes in resume; set training.resume_from_huggingface = true and training.resume by hand",
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
_SD3_KEYS = frozenset(
    {
        "clip_g",
        "clip_g_dropout_rate",
        "logit_mean",
        "logit_std",
        "mode_scale",
        "pos_emb_random_crop_rate",
        "save_clip",
        "save_t5xxl",
        "t5xxl_device",
        "t5xxl_dtype",
        "weighting_scheme",
    }
)


def _unsupported_family_of(key: str) -> str | None:
    if key in _UNSUPPORTED_FAMILIES:
        return None
    if key.startswith("sd3_") or key in _SD3_KEYS:
        return "sd3_checkbox"
    for prefix, box in (
        ("hunyuan_", "hunyuan_image_checkbox"),
        ("anima_", "anima_checkbox"),
        ("lumina_", "lumina_checkbox"),
    ):
        if key.startswith(prefix):
            return box
    return None


# Repositories the GUI offers in its model list (kohya_gui/common_gui.py).
_GUI_HUB_MODELS = frozenset(
    {
        "CompVis/stable-diffusion-v1-4",
        "runwayml/stable-diffusion-v1-5",
        "stabilityai/stable-diffusion-2-1-base",
        "stabilityai/stable-diffusion-2-base",
        "stabilityai/stable-diffusion-2-1",
        "stabilityai/stable-diffusion-2",
        "stabilityai/stable-diffusion-xl-base-1.0",
        "stabilityai/stable-diffusion-xl-refiner-1.0",
    }
)

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
_BLOCKS = (
    "down_lr_weight",
    "mid_lr_weight",
    "up_lr_weight",
    "block_lr_zero_threshold",
    "block_dims",
    "block_alphas",
    "conv_block_dims",
    "conv_block_alphas",
)
_LOCON_LIKE = (
    "LyCORIS_preset",
    "conv_dim",
    "conv_alpha",
    "use_tucker",
    "rank_dropout",
    "bypass_mode",
    "dora_wd",
    "module_dropout",
    "use_scalar",
    "rank_dropout_scale",
    "train_norm",
)
_FLUX_DIMS = (
    "img_attn_dim",
    "img_mlp_dim",
    "img_mod_dim",
    "single_dim",
    "txt_attn_dim",
    "txt_mlp_dim",
    "txt_mod_dim",
    "single_mod_dim",
    "in_dims",
    "train_double_block_indices",
    "train_single_block_indices",
)

_NET_TYPES: dict[str, _NetType] = {
    "Standard": _NetType("networks.lora", _truthy(*_BLOCKS, "rank_dropout", "module_dropout")),
    "Kohya LoCon": _NetType(
        "networks.lora", _always("conv_dim", "conv_alpha") + _truthy(*_BLOCKS, "rank_dropout", "module_dropout")
    ),
    "LoRA-FA": _NetType("networks.lora_fa", _truthy(*_BLOCKS, "rank_dropout", "module_dropout")),
    "Kohya DyLoRA": _NetType(
        "networks.dylora", _truthy("conv_dim", "conv_alpha", *_BLOCKS, "rank_dropout", "module_dropout", "unit")
    ),
    "Kohya LoHa": _NetType(
        "networks.loha",
        (
            ("conv_dim", "conv_dim", "conv"),
            ("conv_alpha", "conv_alpha", "with_conv"),
            ("use_tucker", "use_tucker", "flag"),
            ("rank_dropout", "rank_dropout", "positive"),
            ("module_dropout", "module_dropout", "positive"),
        ),
        requires="sdxl",
    ),
    "Kohya LoKr": _NetType(
        "networks.lokr",
        (
            ("conv_dim", "conv_dim", "conv"),
            ("conv_alpha", "conv_alpha", "with_conv"),
            ("use_tucker", "use_tucker", "flag"),
            ("factor", "factor", "factor"),
            ("rank_dropout", "rank_dropout", "positive"),
            ("module_dropout", "module_dropout", "positive"),
        ),
        requires="sdxl",
    ),
    "LyCORIS/LoCon": _NetType("lycoris.kohya", _always(*_LOCON_LIKE), algo="locon"),
    "LyCORIS/LoHa": _NetType("lycoris.kohya", _always(*_LOCON_LIKE), algo="loha"),
    "LyCORIS/LoKr": _NetType("lycoris.kohya", _always(*_LOCON_LIKE, "factor", "use_cp", "decompose_both"), algo="lokr"),
    "LyCORIS/iA3": _NetType(
        "lycoris.kohya", _always("LyCORIS_preset", "conv_dim", "conv_alpha", "train_on_input"), algo="ia3"
    ),
    "LyCORIS/DyLoRA": _NetType(
        "lycoris.kohya",
        _always(
            "LyCORIS_preset",
            "conv_dim",
            "conv_alpha",
            "use_tucker",
            "unit",
            "rank_dropout",
            "module_dropout",
            "train_norm",
        ),
        algo="dylora",
    ),
    "LyCORIS/GLoRA": _NetType(
        "lycoris.kohya",
        _always(
            "LyCORIS_preset",
            "conv_dim",
            "conv_alpha",
            "use_tucker",
            "rank_dropout",
            "module_dropout",
            "rank_dropout_scale",
            "train_norm",
        ),
        algo="glora",
    ),
    "LyCORIS/BOFT": _NetType(
        "lycoris.kohya",
        _always(
            "LyCORIS_preset",
            "conv_dim",
            "conv_alpha",
            "module_dropout",
            "use_tucker",
            "rank_dropout",
            "rank_dropout_scale",
            "train_norm",
        ),
        algo="boft",
    ),
    "LyCORIS/Diag-OFT": _NetType(
        "lycoris.kohya",
        _always(
            "LyCORIS_preset",
            "conv_dim",
            "conv_alpha",
            "module_dropout",
            "use_tucker",
            "rank_dropout",
            "rank_dropout_scale",
            "constrain",
            "rescaled",
            "train_norm",
        ),
        algo="diag-oft",
    ),
    "LyCORIS/Native Fine-Tuning": _NetType(
        "lycoris.kohya",
        _always("LyCORIS_preset", "rank_dropout", "module_dropout", "rank_dropout_scale", "train_norm"),
        algo="full",
    ),
    "Flux1": _NetType(
        "networks.lora_flux",
        _truthy(*_FLUX_DIMS)
        + (
            ("train_blocks", "train_blocks", "split_mode"),
            ("split_qkv", "split_qkv", "flag"),
            ("train_t5xxl", "train_t5xxl", "flag"),
            ("ggpo_sigma", "ggpo_sigma", "ggpo"),
            ("ggpo_beta", "ggpo_beta", "ggpo"),
            ("rank_dropout", "rank_dropout", "positive"),
            ("module_dropout", "module_dropout", "positive"),
        ),
        requires="flux",
    ),
    "Flux1 OFT": _NetType("networks.oft_flux", (("enable_all_linear", "enable_all_linear", "flag"),), requires="flux"),
}
_LEGACY_TYPES = {"LoCon": "LyCORIS/LoCon"}
_UNSUPPORTED_TYPES = {"Anima": "Anima", "Lumina": "Lumina", "HunyuanImage-2.1": "HunyuanImage-2.1"}
_LORAPLUS = ("loraplus_lr_ratio", "loraplus_unet_lr_ratio", "loraplus_text_encoder_lr_ratio")
# Every GUI key that only feeds network_args, with the GUI type of its value.
_NET_KEYS: dict[str, str] = {
    **{k: "str" for k in (*_BLOCKS, *_FLUX_DIMS, "LyCORIS_preset", "train_blocks")},
    **{
        k: "bool"
        for k in (
            "bypass_mode",
            "dora_wd",
            "use_cp",
            "use_tucker",
            "use_scalar",
            "rank_dropout_scale",
            "rescaled",
            "train_norm",
            "decompose_both",
            "train_on_input",
            "train_lora_ggpo",
            "enable_all_linear",
            "split_qkv",
            "train_t5xxl",
        )
    },
    **{
        k: "float"
        for k in ("constrain", "conv_alpha", "rank_dropout", "module_dropout", "ggpo_sigma", "ggpo_beta", *_LORAPLUS)
    },
    **{k: "int" for k in ("factor", "conv_dim", "unit")},
}
_ALGO_TO_TYPE = {t.algo: name for name, t in _NET_TYPES.items() if t.algo}
_ALGO_TO_TYPE["lora"] = "LyCORIS/LoCon"
_MODULE_TO_TYPE = {
    "networks.lora_fa": "LoRA-FA",
    "networks.dylora": "Kohya DyLoRA",
    "networks.loha": "Kohya LoHa",
    "networks.lokr": "Kohya LoKr",
    "networks.lora_flux": "Flux1",
    "networks.oft_flux": "Flux1 OFT",
}
_COMMA_LISTS = frozenset({*_BLOCKS, *_FLUX_DIMS})

# --------------------------------------------------------------------------
# the spec's sections, and the type of each GUI value
# --------------------------------------------------------------------------

# the top-level sections of a spec, in the order a spec file has them
_SPEC_ORDER = ("extends", "name", "model", "concepts", "dataset", "training", "sample", "launch")

# The value kind of the GUI keys that _FIELDS and _NET_KEYS do not cover.
_OTHER_KINDS: dict[str, str] = {
    "learning_rate": "float",
    "text_encoder_lr": "float",
    "unet_lr": "float",
    "t5xxl_lr": "float",
    "noise_offset": "float",
    "adaptive_noise_scale": "float",
    "multires_noise_discount": "float",
    "noise_offset_random_strength": "bool",
    "multires_noise_iterations": "int",
    "sample_every_n_epochs": "int",
    "sample_every_n_steps": "int",
    "sample_sampler": "str",
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
            raise _BadValue(f"{shown(value)}: an item contains blanks or quotes, which the GUI cannot keep")
        return " ".join(items)
    return _to_str(value)
