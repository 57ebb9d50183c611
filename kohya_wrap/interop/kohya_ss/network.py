"""LoRA types, both ways: the ``network_module`` and ``network_args`` the GUI passes for its
``LoRA_type`` (the rules are in ``tables._NET_TYPES``), and the GUI fields that hold a spec's
network arguments."""

from __future__ import annotations

import re

from kohya_wrap.errors import shown
from kohya_wrap.interop.kohya_ss.families import _FAMILY_NET_TYPES, _TYPES_OF_FAMILY
from kohya_wrap.interop.kohya_ss.state import _Export, _Import
from kohya_wrap.interop.kohya_ss.tables import (
    _ALGO_TO_TYPE,
    _COMMA_LISTS,
    _GUI_BASE,
    _LEGACY_TYPES,
    _LORAPLUS,
    _MODULE_TO_TYPE,
    _NET_KEYS,
    _NET_TYPES,
    _UNSUPPORTED_TYPES,
    _WHEN,
    _gui_value,
    _NetType,
)
from kohya_wrap.interop.kohya_ss.values import (
    R_NO_GUI_FIELD,
    _bad,
    _BadValue,
    _blank,
    _parse_scalar,
    _to_bool,
    _to_int,
)
from kohya_wrap.sdscripts.prompts import format_number
from kohya_wrap.spec.models import NETWORK_DIM_MAX

# --------------------------------------------------------------------------
# the rules of tables._NET_TYPES
# --------------------------------------------------------------------------


def _fmt_arg(key: str, value: object) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return format_number(value)
    text = str(value).replace('"', "").strip()
    if key in _COMMA_LISTS:
        text = re.sub(r"\s+", "", text)
    if re.search(r"\s", text):
        raise _BadValue(f"{shown(text)} contains blanks, which the GUI splits into separate network args")
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
# import: LoRA_type and its fields -> network_module, network_args
# --------------------------------------------------------------------------


def _lora_type(imp: _Import) -> tuple[str, _NetType] | None:
    """The GUI's LoRA_type, repaired like "Open config" does; None (reported) if unusable."""
    raw_type = imp.raw("LoRA_type")
    type_name = "Standard" if _blank(raw_type) else str(raw_type).strip()
    if type_name in _LEGACY_TYPES:
        imp.notes.append(f"LoRA_type {shown(type_name)} is the old name of {shown(_LEGACY_TYPES[type_name])}.")
        type_name = _LEGACY_TYPES[type_name]
    nettype = _NET_TYPES.get(type_name) or _FAMILY_NET_TYPES.get(type_name)
    if nettype is None:
        if type_name in _UNSUPPORTED_TYPES:
            imp.report(
                "LoRA_type",
                raw_type,
                f"LoRA type for model family {_UNSUPPORTED_TYPES[type_name]}, which the importer does not map yet "
                "(kohya-wrap's default for the family applies: networks.lora_<family>)",
            )
        else:
            imp.report("LoRA_type", raw_type, _bad("unknown LoRA type"))
        return None
    imp.take("LoRA_type")
    if nettype.requires and nettype.requires != imp.family:
        imp.notes.append(
            f"LoRA_type {shown(type_name)} needs the {_WHEN[nettype.requires][1]} model checkbox; "
            "the GUI refuses to train this config."
        )
    if imp.family in _TYPES_OF_FAMILY and type_name not in _TYPES_OF_FAMILY[imp.family]:
        imp.notes.append(
            f"{_WHEN[imp.family][1]} needs LoRA_type {' or '.join(_TYPES_OF_FAMILY[imp.family])}; the GUI refuses "
            f"to train with {shown(type_name)}."
        )
    if imp.family == "flux" and nettype.requires != "flux" and nettype.module != "lycoris.kohya":
        imp.notes.append(
            f"FLUX.1 needs LoRA_type Flux1, Flux1 OFT or LyCORIS; the GUI refuses to train with {shown(type_name)}."
        )
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
                    imp.notes.append(f"split_mode is on: the GUI trains train_blocks=single, not {shown(values[key])}.")
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
    module = nettype.module
    if imp.family == "sd3" and type_name in ("Standard", "Kohya LoCon"):
        module = "networks.lora_sd3"  # train_model: "networks.lora_sd3" if sd3_checkbox else "networks.lora"
    imp.network_module = module
    imp.put("training", "network_module", module)
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
    _note_lycoris_dims(imp, nettype, values)
    if nettype.module in ("networks.loha", "networks.lokr"):
        imp.notes.append(
            f"{nettype.module} is a recent sd-scripts module (absent from sd-scripts v0.10.1, kohya-wrap's pin); "
            "check that the sd-scripts you run has it."
        )


def _note_lycoris_dims(imp: _Import, nettype: _NetType, values: dict[str, object]) -> None:
    """LyCORIS dims above the networks.* cap are kept (the spec takes them for lycoris.kohya): say what they mean
    (LyCORIS 3.2.0.post2, which the GUI installs: lycoris/kohya.py, lycoris/modules/*.py)."""
    if nettype.module != "lycoris.kohya":
        return
    passed = {"network_dim", *(arg for arg, _key, _rule in nettype.args)}
    big = []
    for key in ("network_dim", "conv_dim"):
        raw = values.get(key, imp.gui.get(key))
        try:
            dim = 0 if _blank(raw) else _to_int(raw)
        except _BadValue:
            continue  # reported where the key is mapped
        if key in passed and dim > NETWORK_DIM_MAX:
            big.append(f"{key} {dim}")
    if not big:
        return
    if nettype.algo == "lokr":
        meaning = (
            "LyCORIS LoKr's full-dimension convention: a dim of at least half a layer's Kronecker factor trains "
            "that factor as a full matrix (LyCORIS logs 'using full matrix mode'), and network_alpha then has no effect"
        )
    elif nettype.algo in ("ia3", "full"):
        meaning = f"LyCORIS {nettype.algo} does not use it"
    else:
        meaning = f"LyCORIS {nettype.algo} builds factors of that rank for every layer it trains"
    imp.notes.append(f"{' and '.join(big)}: kept; {meaning}.")


# --------------------------------------------------------------------------
# export: network_module, network_args -> LoRA_type and its fields
# --------------------------------------------------------------------------


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
            exp.report(
                "training.network_args", f"algo={algo}", f"{R_NO_GUI_FIELD}: the GUI has no LyCORIS type for this algo"
            )
        return _ALGO_TO_TYPE.get(algo)
    if module == "networks.lora":
        return "Kohya LoCon" if "conv_dim" in given or "conv_alpha" in given else "Standard"
    if module in _MODULE_TO_TYPE:
        return _MODULE_TO_TYPE[str(module)]
    exp.report("training.network_module", module, f"{R_NO_GUI_FIELD}: no GUI LoRA type uses this module")
    if given:
        exp.report(
            "training.network_args",
            [f"{k}={v}" for k, v in given.items()],
            f"{R_NO_GUI_FIELD}: no GUI LoRA type uses this module",
        )
    return None


def _set_network_arg(exp: _Export, key: str, rule: str, arg: str, text: str) -> bool:
    """Put one network arg into its GUI field; False when it could not be."""
    shown = f"{arg}={text}"
    value = _parse_scalar(text)
    if rule == "split_mode":
        if text == "single" and exp.get("training", "split_mode") is True:
            exp.gui["train_blocks"] = "single"
        elif text != "all":
            exp.report(
                "training.network_args",
                shown,
                f"{R_NO_GUI_FIELD}: the GUI sets train_blocks only as 'single', with split_mode",
            )
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
    filled = [
        f"{arg}={_fmt_arg(key, exp.gui[key])}"
        for arg, key, rule in nettype.args
        if rule == "always" and key not in set_keys
    ]
    if filled:
        exp.report(
            "training.network_args",
            filled,
            f"the GUI always passes these for LoRA_type {type_name}; the file has the GUI defaults",
        )
    if type_name == "Flux1" and exp.get("training", "split_mode") is True:
        exp.gui["train_blocks"] = "single"  # the GUI forces it with split_mode
