"""kohya-wrap spec -> kohya_ss GUI config: ``kohya_ss_from_spec`` and its steps (the network and
sample steps are in network.py and samples.py)."""

from __future__ import annotations

from typing import Callable

from kohya_wrap.interop.kohya_ss.network import _export_network
from kohya_wrap.interop.kohya_ss.samples import _export_sample
from kohya_wrap.interop.kohya_ss.state import _Export
from kohya_wrap.interop.kohya_ss.tables import (
    _FIELDS,
    _GUI_BASE,
    _SPEC_ORDER,
    _WHEN,
    _Field,
    _gui_value,
)
from kohya_wrap.interop.kohya_ss.values import (
    R_NO_GUI_FIELD,
    Unmapped,
    _bad,
    _BadValue,
    _inactive,
    _join,
    _to_float,
    _to_int,
)
from kohya_wrap.sdscripts.naming import NAME_PATTERN

_SPEC_OWNED = frozenset(
    {
        "pretrained_model_name_or_path",
        "output_name",
        "output_dir",
        "logging_dir",
        "train_data_dir",
        "reg_data_dir",
        "resolution",
        "sample_prompts",
        "config_file",
        "dataset_config",
    }
)
_CONCEPT_KEYS = frozenset({"token", "class", "repeats", "source", "is_reg"})
_FAMILY_FLAGS = {"sd15": (), "sd2": ("v2",), "sdxl": ("sdxl",), "flux": ("flux1_checkbox",)}


def _export_top(exp: _Export) -> None:
    for key in exp.spec:
        if key not in _SPEC_ORDER:
            exp.report(key, exp.spec[key], R_NO_GUI_FIELD)
    if "extends" in exp.spec:
        exp.report(
            "extends",
            exp.spec["extends"],
            "presets are not exported: resolve the preset into the spec first, or the GUI file lacks its settings",
        )
    name = exp.spec.get("name")
    if name is not None:
        if isinstance(name, str) and NAME_PATTERN.fullmatch(name):
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
        repo = base[len("hf://") :].strip("/")
        if repo.count("/") == 1:
            exp.gui["pretrained_model_name_or_path"] = repo
        else:
            exp.report(
                "model.base",
                base,
                f"{R_NO_GUI_FIELD}: the GUI cannot load a single file from the Hub; download it and use its path",
            )
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
                exp.report(
                    f"model.{key}",
                    model[key],
                    f"{R_NO_GUI_FIELD} for {exp.family or 'this'} models (the GUI passes it only for "
                    f"{_WHEN[field.when][1]})",
                )
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
                exp.report(
                    f"concepts[{index}].{key}", value, f"{R_NO_GUI_FIELD}: the GUI has only dataset-wide settings"
                )


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


def _export_learning_rates(exp: _Export) -> None:
    training = exp.section("training")
    exp.use(
        "training",
        "learning_rate",
        "text_encoder_lr",
        "unet_lr",
        "network_train_unet_only",
        "network_train_text_encoder_only",
    )
    try:
        lr = _to_float(training["learning_rate"]) if "learning_rate" in training else None
        unet = _to_float(training["unet_lr"]) if training.get("unet_lr") is not None else 0.0
        te_raw = training.get("text_encoder_lr")
        te_list = (
            []
            if te_raw is None
            else [_to_float(v) for v in (te_raw if isinstance(te_raw, (list, tuple)) else [te_raw])]
        )
    except _BadValue as exc:
        exp.report("training.learning_rate", None, _bad(str(exc)))
        return
    if lr is not None:
        exp.gui["learning_rate"] = lr
    fallback = lr if lr else float(_GUI_BASE["learning_rate"])  # type: ignore[arg-type]
    if len(te_list) > 2:
        exp.report(
            "training.text_encoder_lr", te_raw, f"{R_NO_GUI_FIELD}: the GUI holds at most two text encoder rates"
        )
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
            exp.report(
                "training.sdpa",
                True,
                f"{R_NO_GUI_FIELD}: the GUI's attention choice is one of xformers/sdpa/none; exported xformers",
            )
    elif training.get("sdpa") is True:
        exp.gui["xformers"] = "sdpa"
    launch_mp, train_mp = exp.get("launch", "mixed_precision"), training.get("mixed_precision")
    exp.use("launch", "mixed_precision")
    if launch_mp is not None or train_mp is not None:
        exp.gui["mixed_precision"] = str(launch_mp if launch_mp is not None else train_mp)
        if launch_mp is not None and train_mp is not None and launch_mp != train_mp:
            exp.report(
                "training.mixed_precision",
                train_mp,
                f"{R_NO_GUI_FIELD}: the GUI has one mixed_precision for accelerate and sd-scripts; exported "
                "launch.mixed_precision",
            )
    model_type = training.get("model_type")
    if model_type is not None:
        if exp.family == "flux" and model_type in ("flux", "chroma"):
            exp.gui["model_type"] = model_type
        else:
            exp.report("training.model_type", model_type, R_NO_GUI_FIELD)
    # noise offset: the GUI holds one kind at a time
    noise = {
        k: training[k]
        for k in (
            "noise_offset",
            "adaptive_noise_scale",
            "noise_offset_random_strength",
            "multires_noise_iterations",
            "multires_noise_discount",
        )
        if k in training
    }
    exp.use("training", *noise)
    multires = bool(noise.get("multires_noise_iterations"))
    original = any(noise.get(k) for k in ("noise_offset", "adaptive_noise_scale", "noise_offset_random_strength"))
    if multires and original:
        for key in ("multires_noise_iterations", "multires_noise_discount"):
            if key in noise:
                exp.report(
                    f"training.{key}",
                    noise[key],
                    f"{R_NO_GUI_FIELD}: the GUI uses either noise_offset or multires noise; exported noise_offset",
                )
        multires = False
    exp.gui["noise_offset_type"] = "Multires" if multires else "Original"
    wanted = (
        ("multires_noise_iterations", "multires_noise_discount")
        if multires
        else ("noise_offset", "adaptive_noise_scale", "noise_offset_random_strength")
    )
    for key, value in noise.items():
        if key not in wanted:
            continue  # reported above, or a value without effect (0, or a discount without iterations)
        try:
            exp.gui[key] = _gui_value(key, value)
        except _BadValue as exc:
            exp.report(f"training.{key}", value, _bad(str(exc)))


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
                exp.report(
                    f"{section}.{key}",
                    value,
                    "kohya-wrap owns this setting (see model/name/dataset/sample); not exported from [training]",
                )
                continue
            candidates = reverse.get((section, key), [])
            active = [(k, f) for k, f in candidates if not f.when or _WHEN[f.when][0](exp.family)]
            if not active:
                why = R_NO_GUI_FIELD
                if candidates:
                    whens = sorted({_WHEN[f.when][1] for _k, f in candidates if f.when})
                    why = (
                        f"{R_NO_GUI_FIELD} for {exp.family or 'this'} models "
                        f"(the GUI passes it only for {', '.join(whens)})"
                    )
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
