"""kohya_ss GUI config -> kohya-wrap spec: ``spec_from_kohya_ss`` and its steps (the network and
sample steps are in network.py and samples.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from kohya_wrap.errors import shorten, shown
from kohya_wrap.interop.kohya_ss.families import import_family_keys
from kohya_wrap.interop.kohya_ss.network import _import_network
from kohya_wrap.interop.kohya_ss.samples import _import_sample
from kohya_wrap.interop.kohya_ss.state import _Import
from kohya_wrap.interop.kohya_ss.tables import (
    _CONCEPT_DIR_RE,
    _FIELDS,
    _GUI_HUB_MODELS,
    _GUI_MISSING_DEFAULTS,
    _NO_FIELD,
    _NOTHING,
    _SPEC_ORDER,
    _UI_ONLY,
    _UNSUPPORTED_FAMILIES,
    _WHEN,
    _Field,
    _is_gui_default,
)
from kohya_wrap.interop.kohya_ss.values import (
    R_GUI_ONLY,
    R_LAYOUT,
    R_NO_SPEC_FIELD,
    R_UNKNOWN,
    Unmapped,
    _bad,
    _BadValue,
    _blank,
    _inactive,
    _join,
    _to_bool,
    _to_int,
)
from kohya_wrap.sdscripts.families import FAMILIES
from kohya_wrap.sdscripts.naming import NAME_PATTERN, safe_name
from kohya_wrap.spec.limits import caption_extension_problem


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


# the GUI's checkbox → model.family, for the families trained with a script of their own
_OTHER_FAMILY_NAMES = {
    "sd3_checkbox": "sd3",
    "lumina_checkbox": "lumina",
    "hunyuan_image_checkbox": "hunyuan_image",
    "anima_checkbox": "anima",
}


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
    elif chosen in _OTHER_FAMILY_NAMES:  # trained with its own script (spec docs: families)
        imp.family = _OTHER_FAMILY_NAMES[chosen]
    elif chosen is None:
        imp.family = "sd2" if flags.get("v2") else "sd15"
    if imp.family:
        imp.put("model", "family", imp.family)
    for key in order:
        if key not in imp.gui or imp.done(key):
            continue
        if key == unsupported_box:
            imp.take(key)  # its panel's settings: families.import_family_keys
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
            imp.report(
                "v_parameterization",
                True,
                f"{R_NO_SPEC_FIELD}: kohya-wrap takes v_parameterization only with family sd2 (this config: "
                f"{imp.family or chosen})",
            )
        else:
            imp.take("v_parameterization")
    import_family_keys(imp, unsupported_box)


def _import_model_and_name(imp: _Import) -> None:
    if "pretrained_model_name_or_path" in imp.gui:
        ok, base = imp.value("pretrained_model_name_or_path", "str", blank="")
        if ok:
            imp.take("pretrained_model_name_or_path")
            if base in _GUI_HUB_MODELS:
                imp.put("model", "base", f"hf://{base}")
                imp.notes.append(
                    f"Base model {shown(base)} is a Hugging Face repository; written as hf://{shorten(base)}."
                )
            elif base:
                imp.put("model", "base", base)
                if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", base) and not re.search(
                    r"\.(safetensors|ckpt|pt|bin)$", base
                ):
                    imp.notes.append(
                        f"Base model {shown(base)} looks like a Hugging Face repository id; if it is one, write it as hf://{shorten(base)}."
                    )
            else:
                imp.notes.append("The config names no base model; set model.base.")
    if "output_name" in imp.gui:
        ok, name = imp.value("output_name", "str", blank="")
        if ok and name:
            clean = name if NAME_PATTERN.fullmatch(name) else safe_name(name)  # what the spec's name check asks
            if not clean:
                imp.report("output_name", name, _bad("no ASCII letters or digits to build a name from"))
                return
            if clean != name:
                imp.notes.append(
                    f"output_name {shown(name)} has characters kohya-wrap names do not allow; "
                    f"the spec uses {shown(clean)}."
                )
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
                imp.notes.append(f"Concept folder {shown(name)} has only one word: token {shown(token)}, no class.")
        if repeats == 0:
            imp.report(key, path, "0 repeats: sd-scripts uses none of its images (kohya-wrap needs repeats >= 1)")
            continue
        concepts.append(concept)
    return concepts


def _import_folders(imp: _Import) -> None:
    ok, dataset_config = imp.value("dataset_config", "str", blank="") if "dataset_config" in imp.gui else (True, "")
    if ok and dataset_config:
        imp.report(
            "dataset_config",
            dataset_config,
            f"{R_LAYOUT}: kohya-wrap writes its own dataset config; turn this TOML's subsets into [[concepts]] by hand",
        )
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
                imp.notes.append(f"{key} {shown(root)} holds no <repeats>_<name> folders.")
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
    missing = "max_resolution" not in imp.gui
    if missing and not imp.gui_defaults:
        return
    raw = _GUI_MISSING_DEFAULTS["max_resolution"] if missing else imp.raw("max_resolution")
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
    resolution = width if width == height else [width, height]
    imp.put("dataset", "resolution", resolution)
    imp.take("max_resolution")
    if missing:
        imp.notes.append(
            f"The config has no max_resolution: the GUI trains at its default {shown(raw)}; the spec says "
            f"dataset.resolution = {resolution}."
        )


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
            imp.report(
                "t5xxl_lr",
                imp.gui["t5xxl_lr"],
                _bad("the GUI refuses a T5XXL learning rate without a text encoder learning rate"),
            )
        elif imp.network_module != "networks.lora_flux":
            del imp.consumed["t5xxl_lr"]
            imp.report(
                "t5xxl_lr", imp.gui["t5xxl_lr"], _inactive("only networks.lora_flux takes a second text encoder rate")
            )
    if unet > 0:
        imp.put("training", "unet_lr", unet)
    if imp.family == "hunyuan_image" and (lr or te or unet):  # train_model forces it (force_unet_only)
        imp.put("training", "network_train_unet_only", True)
        if te:
            imp.notes.append("HunyuanImage-2.1: the GUI trains the DiT only, whatever the text encoder rate.")
    elif te == 0 and unet != 0:
        imp.put("training", "network_train_unet_only", True)
        imp.notes.append("Text encoder learning rate 0: the GUI trains the U-Net only (network_train_unet_only).")
    elif te != 0 and unet == 0:
        imp.put("training", "network_train_text_encoder_only", True)
        imp.notes.append(
            "U-Net learning rate 0: the GUI trains the text encoder only (network_train_text_encoder_only)."
        )
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
    if "epoch" not in imp.gui and epochs == 0 and steps == 0 and imp.gui_defaults:
        epoch = _to_int(_GUI_MISSING_DEFAULTS["epoch"])
        imp.put("training", "max_train_epochs", epoch)
        imp.notes.append(
            f"The config sets no training length (no epoch, and no max_train_epochs or max_train_steps): the GUI "
            f"trains its default epoch = {epoch}; the spec says max_train_epochs = {epoch}. Raise it to train longer."
        )
        return
    if "epoch" not in counts:
        return
    if epochs == 0 and steps == 0:
        if epoch > 0:
            imp.put("training", "max_train_epochs", epoch)
            imp.notes.append(
                f"epoch {epoch}: the GUI turns it into max_train_steps from the image count; the spec says "
                f"max_train_epochs = {epoch}."
            )
        imp.take("epoch")
    elif epoch in (0, 1, epochs):
        imp.take("epoch")
    else:
        imp.report(
            "epoch",
            imp.gui["epoch"],
            _inactive("the GUI ignores epoch when max_train_steps or max_train_epochs is set"),
        )


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


def _import_bucket_steps(imp: _Import) -> None:
    """bucket_reso_steps: sd-scripts' scripts stop at start-up unless it is a multiple of the family's step
    (train_util verify_bucket_reso_steps), but only with bucketing on; with it off they ignore it."""
    key = "bucket_reso_steps"
    if key not in imp.gui or imp.family not in FAMILIES:
        return  # an unsupported family: the one-to-one step takes it
    ok, steps = imp.value(key, "int", blank=0)
    if not ok:
        return
    imp.take(key)
    if steps == 0:
        return  # unset: the GUI drops 0 and ""
    family = FAMILIES[imp.family]
    multiple = family.bucket_step_multiple
    try:
        bucketing_off = not _blank(imp.raw("enable_bucket")) and not _to_bool(imp.raw("enable_bucket"))
    except _BadValue:
        bucketing_off = False  # reported by the one-to-one step; the spec leaves enable_bucket unset
    if steps % multiple == 0 or steps < 0:
        imp.put("dataset", key, steps)  # a negative one is refused by the spec, with the reason
    elif bucketing_off:
        imp.put("dataset", key, steps)
        recommended = " (and recommends a multiple of 8)" if steps % 8 else ""
        imp.notes.append(
            f"bucket_reso_steps {steps}: kept as is. Bucketing is off (enable_bucket false), so sd-scripts ignores "
            f"it{recommended}; with bucketing on, {family.script} would stop unless it is a multiple of {multiple}."
        )
    else:
        nearest = multiple * max(1, round(steps / multiple))
        imp.put("dataset", key, nearest)
        imp.notes.append(
            f"bucket_reso_steps {steps}: with bucketing on, {family.script} stops at start-up unless it is a "
            f"multiple of {multiple} (sd-scripts' verify_bucket_reso_steps); the spec uses {nearest}, the nearest "
            "that it accepts."
        )


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
    keys = (
        "noise_offset_type",
        "noise_offset",
        "adaptive_noise_scale",
        "noise_offset_random_strength",
        "multires_noise_iterations",
        "multires_noise_discount",
    )
    if not any(k in imp.gui for k in keys):
        return
    kind = str(imp.raw("noise_offset_type") or "Original").strip()
    if kind not in ("Original", "Multires"):
        imp.report("noise_offset_type", imp.raw("noise_offset_type"), _bad("expected 'Original' or 'Multires'"))
        for key in keys[1:]:
            imp.inactive(key, "noise_offset_type not understood")
        return
    imp.take("noise_offset_type")
    fields = {
        "noise_offset": "float",
        "adaptive_noise_scale": "float",
        "noise_offset_random_strength": "bool",
        "multires_noise_iterations": "int",
        "multires_noise_discount": "float",
    }
    values = {}
    for key, kind_of in fields.items():
        if key in imp.gui:
            ok, value = imp.value(key, kind_of)
            if ok:
                values[key] = value
    active = (
        ("noise_offset", "adaptive_noise_scale", "noise_offset_random_strength")
        if kind == "Original"
        else ("multires_noise_iterations", "multires_noise_discount")
    )
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
            imp.report(
                "lora_network_weights",
                imp.gui["lora_network_weights"],
                _inactive("obsolete GUI key; network_weights is set"),
            )
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
            imp.notes.append(
                "model_type chroma: sd-scripts trains Chroma, which uses no clip_l (kohya-wrap's spec still asks for "
                "model.clip_l)."
            )
            imp.take("model_type")
        elif kind in ("flux", ""):
            imp.take("model_type")
        else:
            imp.inactive("model_type", "only used with the FLUX.1 checkbox")


def _import_caption_extension(imp: _Import) -> None:
    """An image extension (or one without its dot) is a data error, reported, never carried into the spec:
    sd-scripts would read each photo's same-stem image as its caption."""
    raw = imp.gui.get("caption_extension")
    if isinstance(raw, str) and not _blank(raw) and not imp.done("caption_extension"):
        problem = caption_extension_problem(raw.strip())
        if problem:
            imp.report("caption_extension", raw, _bad(problem))


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
    _import_bucket_steps,
    _import_attention,
    _import_noise,
    _import_sample,
    _import_mixed_precision,
    _import_legacy,
    _import_no_field,
    _import_caption_extension,
    _import_fields,
)


def spec_from_kohya_ss(
    gui: dict, *, subfolders: Callable[[str], list[str]] | None = None, gui_defaults: bool = True
) -> ImportResult:
    """Build a kohya-wrap spec dict from a kohya_ss GUI LoRA config dict.

    ``subfolders(path)`` lists the subfolder names of a GUI ``train_data_dir``
    or ``reg_data_dir``; with it, each ``<repeats>_<token> <class>`` folder
    becomes a ``[[concepts]]`` entry whose ``source`` is that folder. Without
    it, the folders are reported as unmapped.

    ``gui_defaults``: a key that a spec needs and the file lacks (GUI presets
    often have no ``max_resolution`` or ``epoch``) gets the value the GUI trains
    with, its field's default (``tables._GUI_MISSING_DEFAULTS``), with a note.
    False maps only the keys the file has.
    """
    if not isinstance(gui, dict):
        raise TypeError(f"expected the GUI config as a dict, got {type(gui).__name__}")
    imp = _Import(gui, subfolders, gui_defaults)
    for step in _IMPORT_STEPS:
        step(imp)
    for key, value in gui.items():
        if not imp.done(key):
            imp.report(key, value, R_UNKNOWN)
    spec = _ordered_spec(imp.spec)
    return ImportResult(
        spec=spec,
        unmapped=tuple(imp.unmapped),
        notes=tuple(imp.notes),
        consumed=tuple(k for k in gui if k in imp.consumed),
    )


def _ordered_spec(spec: dict) -> dict:
    out = {k: spec[k] for k in _SPEC_ORDER if k in spec}
    out.update({k: v for k, v in spec.items() if k not in out})
    return out
