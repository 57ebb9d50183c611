"""The GUI's own settings of the families trained with a script of their own — SD3, Lumina,
HunyuanImage-2.1, Anima — as data, and their import: each key that becomes an sd-scripts option
of that script (``train_model``'s ``config_toml_data`` at the commit in tables.py, checked against
the option schema of kohya-wrap's pinned sd-scripts) maps to the spec key of that option; the
few that do not are reported with the reason."""

from __future__ import annotations

from dataclasses import dataclass

from kohya_wrap.interop.kohya_ss.state import _Import
from kohya_wrap.interop.kohya_ss.tables import _UNSUPPORTED_FAMILIES, _NetType, _unsupported_family_of
from kohya_wrap.interop.kohya_ss.values import R_NO_EQUIV


@dataclass(frozen=True)
class _FamilyKey:
    """A GUI key of one family's panel: what train_model passes it as (``dest``, section and key), in
    which GUI type (``kind``: flag, int, float, str), and values it drops besides its final filter's
    ``""``, ``False``, ``0`` and ``None`` (``skip``: Anima's attention mode "torch" is not passed)."""

    dest: tuple[str, str]
    kind: str
    skip: tuple[object, ...] = ()


def _T(key: str, kind: str, *skip: object) -> _FamilyKey:
    return _FamilyKey(("training", key), kind, skip)


def _M(key: str) -> _FamilyKey:
    return _FamilyKey(("model", key), "str")


# checkbox → GUI key → the option; kohya_gui/lora_gui.py train_model (config_toml_data), class_sd3.py,
# class_lumina.py, class_hunyuan_image.py, class_anima.py
_FAMILY_KEYS: dict[str, dict[str, _FamilyKey]] = {
    "sd3_checkbox": {
        "sd3_clip_l": _M("clip_l"),
        "sd3_t5xxl": _M("t5xxl"),
        "clip_g": _T("clip_g", "str"),
        "sd3_cache_text_encoder_outputs": _T("cache_text_encoder_outputs", "flag"),
        "sd3_cache_text_encoder_outputs_to_disk": _T("cache_text_encoder_outputs_to_disk", "flag"),
        "sd3_fused_backward_pass": _T("fused_backward_pass", "flag"),
        "sd3_disable_mmap_load_safetensors": _T("disable_mmap_load_safetensors", "flag"),
        "sd3_enable_scaled_pos_embed": _T("enable_scaled_pos_embed", "flag"),
        "sd3_clip_l_dropout_rate": _T("clip_l_dropout_rate", "float"),
        "clip_g_dropout_rate": _T("clip_g_dropout_rate", "float"),
        "sd3_t5_dropout_rate": _T("t5_dropout_rate", "float"),
        "pos_emb_random_crop_rate": _T("pos_emb_random_crop_rate", "float"),
        "weighting_scheme": _T("weighting_scheme", "str"),
        "logit_mean": _T("logit_mean", "float"),
        "logit_std": _T("logit_std", "float"),
        "mode_scale": _T("mode_scale", "float"),
        "save_clip": _T("save_clip", "flag"),
        "save_t5xxl": _T("save_t5xxl", "flag"),
        "t5xxl_device": _T("t5xxl_device", "str"),
        "t5xxl_dtype": _T("t5xxl_dtype", "str"),
        "sd3_text_encoder_batch_size": _T("text_encoder_batch_size", "int"),
    },
    "lumina_checkbox": {
        "lumina_gemma2": _T("gemma2", "str"),
        "lumina_ae": _M("ae"),
        "lumina_cache_text_encoder_outputs": _T("cache_text_encoder_outputs", "flag"),
        "lumina_cache_text_encoder_outputs_to_disk": _T("cache_text_encoder_outputs_to_disk", "flag"),
        "lumina_discrete_flow_shift": _T("discrete_flow_shift", "float"),
        "lumina_model_prediction_type": _T("model_prediction_type", "str"),
        "lumina_timestep_sampling": _T("timestep_sampling", "str"),
        "lumina_sigmoid_scale": _T("sigmoid_scale", "float"),
        "lumina_gemma2_max_token_length": _T("gemma2_max_token_length", "int"),
        "lumina_system_prompt": _T("system_prompt", "str"),
        "lumina_use_flash_attn": _T("use_flash_attn", "flag"),
        "lumina_use_sage_attn": _T("use_sage_attn", "flag"),
    },
    "hunyuan_image_checkbox": {
        "hunyuan_text_encoder": _T("text_encoder", "str"),
        "hunyuan_byt5": _T("byt5", "str"),
        "hunyuan_vae": _M("vae"),
        "hunyuan_image_cache_text_encoder_outputs": _T("cache_text_encoder_outputs", "flag"),
        "hunyuan_image_cache_text_encoder_outputs_to_disk": _T("cache_text_encoder_outputs_to_disk", "flag"),
        "hunyuan_discrete_flow_shift": _T("discrete_flow_shift", "float"),
        "hunyuan_model_prediction_type": _T("model_prediction_type", "str"),
        "hunyuan_timestep_sampling": _T("timestep_sampling", "str"),
        "hunyuan_sigmoid_scale": _T("sigmoid_scale", "float"),
        "hunyuan_attn_mode": _T("attn_mode", "str"),
        "hunyuan_split_attn": _T("split_attn", "flag"),
        "hunyuan_fp8_scaled": _T("fp8_scaled", "flag"),
        "hunyuan_fp8_vl": _T("fp8_vl", "flag"),
        "hunyuan_text_encoder_cpu": _T("text_encoder_cpu", "flag"),
        "hunyuan_vae_chunk_size": _T("vae_chunk_size", "int"),
    },
    "anima_checkbox": {
        "anima_qwen3": _T("qwen3", "str"),
        "anima_vae": _M("vae"),
        "anima_llm_adapter_path": _T("llm_adapter_path", "str"),
        "anima_t5_tokenizer_path": _T("t5_tokenizer_path", "str"),
        "anima_cache_text_encoder_outputs": _T("cache_text_encoder_outputs", "flag"),
        "anima_cache_text_encoder_outputs_to_disk": _T("cache_text_encoder_outputs_to_disk", "flag"),
        "anima_discrete_flow_shift": _T("discrete_flow_shift", "float"),
        "anima_timestep_sampling": _T("timestep_sampling", "str"),
        "anima_sigmoid_scale": _T("sigmoid_scale", "float"),
        "anima_qwen3_max_token_length": _T("qwen3_max_token_length", "int"),
        "anima_t5_max_token_length": _T("t5_max_token_length", "int"),
        "anima_attn_mode": _T("attn_mode", "str", "torch"),
        "anima_split_attn": _T("split_attn", "flag"),
        "anima_vae_chunk_size": _T("vae_chunk_size", "int"),
        "anima_vae_disable_cache": _T("vae_disable_cache", "flag"),
        "anima_unsloth_offload_checkpointing": _T("unsloth_offload_checkpointing", "flag"),
        "anima_torch_compile": _T("torch_compile", "flag"),
    },
}

# Keys whose option the pinned sd-scripts (v0.10.1) does not have: the GUI passes them to a newer
# anima_train_network.py. Reported when they hold a setting (the compile_* ones only count with
# anima_compile on, as the GUI passes them only then); consumed at their GUI default.
_ANIMA_NEWER = ("qwen_image_vae_2d", "compile")
_ANIMA_COMPILE = {
    "anima_compile_backend": "inductor",
    "anima_compile_mode": "default",
    "anima_compile_dynamic": "auto",
    "anima_compile_fullgraph": False,
    "anima_compile_cache_size_limit": 0,
}
R_NEWER = (
    f"{R_NO_EQUIV}: not an option of anima_train_network.py in sd-scripts v0.10.1 (kohya-wrap's pin); with an "
    "sd-scripts that has it, set training.{option} by hand"
)

# The LoRA types of these families: train_model's network_module, with rank_dropout / module_dropout
# passed when above 0 (append_rank_module_dropout_network_args).
_DROPOUTS = (("rank_dropout", "rank_dropout", "positive"), ("module_dropout", "module_dropout", "positive"))
_FAMILY_NET_TYPES: dict[str, _NetType] = {
    "Lumina": _NetType("networks.lora_lumina", _DROPOUTS, requires="lumina"),
    "Anima": _NetType("networks.lora_anima", _DROPOUTS, requires="anima"),
    "HunyuanImage-2.1": _NetType("networks.lora_hunyuan_image", _DROPOUTS, requires="hunyuan_image"),
}
# the LoRA types the GUI accepts with a family's checkbox (train_model refuses the others)
_TYPES_OF_FAMILY = {"lumina": ("Lumina",), "anima": ("Anima", "Kohya LoHa", "Kohya LoKr")}


def _dropped(value: object, key: _FamilyKey) -> bool:
    """train_model's final filter (`value not in ["", False, None]`, which 0 and 0.0 equal) and the key's own."""
    return value is None or value == "" or value is False or value == 0 or value in key.skip


def import_family_keys(imp: _Import, chosen_box: str | None) -> None:
    """The settings of the SD3 / Lumina / HunyuanImage-2.1 / Anima panels: the chosen family's mapped,
    the other families' consumed (the GUI ignores a panel whose checkbox is off; counted in one note)."""
    idle = 0
    keys = _FAMILY_KEYS.get(chosen_box or "", {})
    for name in list(imp.gui):
        box = _unsupported_family_of(name)
        if box is None or imp.done(name):
            continue
        if box != chosen_box:
            imp.take(name)
            idle += 1
        elif name in keys:
            key = keys[name]
            ok, value = imp.value(name, key.kind)
            if not ok:
                continue
            if not _dropped(value, key):
                imp.put(key.dest[0], key.dest[1], value)
            imp.take(name)
        else:
            _import_newer(imp, name)
    if idle:
        imp.notes.append(
            f"Skipped {idle} settings of SD3/HunyuanImage/Anima/Lumina: their model checkboxes are off, so the GUI "
            "does not use them."
        )


def _import_newer(imp: _Import, name: str) -> None:
    value = imp.gui[name]
    option = name.removeprefix("anima_")
    if name in _ANIMA_COMPILE:
        compile_on = imp.gui.get("anima_compile") in (True, "true", "True", 1)
        if not compile_on or value == _ANIMA_COMPILE[name] or value in ("", None):
            imp.take(name)
        else:
            imp.report(name, value, R_NEWER.format(option=option))
    elif option in _ANIMA_NEWER:
        if value in (False, "", None, 0, "false", "False"):
            imp.take(name)
        else:
            imp.report(name, value, R_NEWER.format(option=option))
    else:  # a key of the panel that the table above does not know: a newer GUI's
        imp.report(
            name,
            value,
            f"a {_UNSUPPORTED_FAMILIES[_unsupported_family_of(name) or '']} setting the importer does not know — "
            "set it as the [training] key sd-scripts names, if you need it",
        )
