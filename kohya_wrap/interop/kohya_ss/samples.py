"""Sample prompts, both ways: the GUI's ``sample_prompts`` text (sd-scripts prompt lines, read and
written by kohya_wrap.sdscripts.prompts) and the spec's [sample] section."""

from __future__ import annotations

from typing import Any, Callable

from kohya_wrap.errors import shown
from kohya_wrap.interop.kohya_ss.state import _Export, _Import
from kohya_wrap.interop.kohya_ss.tables import _NOTHING, _gui_value
from kohya_wrap.interop.kohya_ss.values import (
    R_NO_GUI_FIELD,
    _bad,
    _BadValue,
    _inactive,
    _to_float,
    _to_int,
    _to_str,
)
from kohya_wrap.sdscripts.prompts import FLAGS, PromptLine, breaks_the_line, split_line

# The prompt-line options (kohya_wrap.sdscripts.prompts) that have a place in the spec, a [sample]
# key and a per-prompt table key, with the type the spec holds; the others (--am, --f, and options
# sd-scripts does not know) are left out of the spec.
_SAMPLE_TYPES: dict[str, Callable[[object], Any]] = {
    "negative": _to_str,
    "width": _to_int,
    "height": _to_int,
    "seed": _to_int,
    "cfg": _to_float,
    "steps": _to_int,
    "sampler": _to_str,
}
# Options the [sample] section holds for all prompts (a per-prompt --ss stays per prompt).
_SECTION_OPTIONS = ("negative", "width", "height", "seed", "cfg", "steps")
# kohya-wrap's own [sample] defaults (kohya_wrap/spec/models.py SampleSpec); the exporter
# writes them out because a GUI prompt without --s/--l/--d gets sd-scripts' defaults instead.
_SPEC_SAMPLE_DEFAULTS: dict[str, object] = {"steps": 20, "cfg": 7.0, "seed": 1, "sampler": "euler_a"}


# --------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------

_Option = tuple["str | None", str, object]  # (spec name or None, raw text, value)


def _parse_prompt_line(line: str) -> tuple[str, list[_Option]]:
    text, options = split_line(line)
    return text, [
        (name, raw, _SAMPLE_TYPES[name](written)) if name in _SAMPLE_TYPES else (None, raw, None)
        for name, raw, written in options
    ]


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


def _import_sample(imp: _Import) -> None:
    keys = ("sample_prompts", "sample_sampler", "sample_every_n_epochs", "sample_every_n_steps")
    if not any(k in imp.gui for k in keys):
        return
    schedule: dict[str, object] = {}
    for key, dest, kind in (
        ("sample_every_n_epochs", "every_n_epochs", "int"),
        ("sample_every_n_steps", "every_n_steps", "int"),
        ("sample_sampler", "sampler", "str"),
    ):
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
                imp.notes.append(f"Sample prompt option {shown(option)} has no place in the spec; left out.")
    if ok:
        imp.take("sample_prompts")
    has_schedule = bool(schedule.get("every_n_epochs") or schedule.get("every_n_steps"))
    if parsed.get("prompts") and not has_schedule:
        del imp.consumed["sample_prompts"]
        imp.report(
            "sample_prompts",
            text,
            _inactive("sample_every_n_epochs and sample_every_n_steps are 0, so sd-scripts makes no samples"),
        )
        parsed = {}
    for dest, key in (
        ("every_n_epochs", "sample_every_n_epochs"),
        ("every_n_steps", "sample_every_n_steps"),
        ("sampler", "sample_sampler"),
    ):
        if dest not in schedule:
            continue
        if parsed.get("prompts"):
            imp.take(key)
        else:
            del schedule[dest]
            imp.inactive(key, "no sample_prompts")
    if parsed.get("prompts"):
        missing = [
            f"--{flag}" for name, flag in FLAGS.items() if name in ("steps", "cfg", "seed") and name not in parsed
        ]
        if missing:
            imp.notes.append(
                f"Sample prompts without {', '.join(missing)} got sd-scripts' defaults in the GUI; the spec's "
                "[sample] defaults apply now."
            )
        imp.spec["sample"] = {**parsed, **schedule}


# --------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------


def _prompt_line(exp: _Export, index: int, prompt: object, section: dict[str, object]) -> str | None:
    """One GUI prompt line: the text, then the section's options overridden by the prompt's own."""
    own = dict(prompt) if isinstance(prompt, dict) else {"text": prompt}
    text = own.pop("text", None)
    if not isinstance(text, str) or breaks_the_line(text):
        exp.report(f"sample.prompts[{index}]", prompt, _bad("expected one line of text without ' --'"))
        return None
    options: dict[str, Any] = {}
    for name in _SAMPLE_TYPES:
        value = own.pop(name, section.get(name))
        if value is None or (name == "sampler" and value == section.get("sampler")):
            continue
        if breaks_the_line(str(value)):
            exp.report(f"sample.prompts[{index}].{name}", value, _bad("contains ' --' or a line break"))
            continue
        options[name] = value
    for key, value in own.items():
        exp.report(f"sample.prompts[{index}].{key}", value, R_NO_GUI_FIELD)
    return PromptLine(text, **options).format()


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
    lines = [
        _prompt_line(exp, i, p, section) for i, p in enumerate(prompts if isinstance(prompts, list) else [prompts])
    ]
    exp.gui["sample_prompts"] = "\n".join(line for line in lines if line is not None)
    for name, key in (
        ("every_n_epochs", "sample_every_n_epochs"),
        ("every_n_steps", "sample_every_n_steps"),
        ("sampler", "sample_sampler"),
    ):
        if section.get(name) is not None:
            try:
                exp.gui[key] = _gui_value(key, section[name])
            except _BadValue as exc:
                exp.report(f"sample.{name}", section[name], _bad(str(exc)))
    handled = {"prompts", "every_n_epochs", "every_n_steps", *_SAMPLE_TYPES}
    for key, value in sample.items():
        if key not in handled and not (key == "at_first" and value is False):
            exp.report(f"sample.{key}", value, R_NO_GUI_FIELD)
