"""The commented `kohya-wrap.toml` that `init` writes: the user's own choices, with a line of help per
section, and the preset's settings left in the preset (so upgrading a preset upgrades the project)."""

from __future__ import annotations

from typing import Any

import tomli_w

HEADER = """\
# kohya-wrap project spec: the single source of truth for this LoRA.
#   kohya-wrap check .   validates it and the images;  kohya-wrap plan .   renders sd-scripts' configs
#   and shows the step math. Settings here override the preset named in `extends`
#   (`kohya-wrap presets show NAME` lists them). Relative paths are relative to this folder.
"""

SECTION_HELP = {
    "model": "# The base model: a .safetensors file, a diffusers folder, or hf://owner/repo[/file].",
    "concepts": "# Each concept is a folder image/<repeats>_<token> <class>/ (regularization: reg/<repeats>_<class>/).",
    "dataset": "# sd-scripts dataset_config options (resolution, enable_bucket, caption_extension, ...).",
    "training": "# sd-scripts training options, by their own names (learning_rate, network_dim, ...).",
    "sample": "# Sample images during training: prompts, every_n_epochs / every_n_steps, sampler.",
    "launch": "# accelerate launch: num_processes (GPUs), num_machines, gpu_ids, ...",
}

EXAMPLES = {
    "training": "# [training]\n# learning_rate = 1e-4\n# network_dim = 32\n# max_train_epochs = 10\n",
    "sample": '# [sample]\n# prompts = ["{words}, portrait, looking at viewer"]\n# every_n_epochs = 2\n',
}

ORDER = ("model", "concepts", "dataset", "training", "sample", "launch")


def _value_line(key: str, value: Any) -> str:
    return tomli_w.dumps({key: value}).rstrip("\n")


def _is_table(value: Any) -> bool:
    """A table, or an array of tables (written as [[key]] blocks); anything else is a plain value."""
    return isinstance(value, dict) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
    )


def render_spec_toml(data: dict[str, Any]) -> str:
    lines = [HEADER]
    top = [(k, v) for k, v in data.items() if not _is_table(v) and v is not None]
    for key, value in top:
        comment = {
            "extends": "  # preset this spec builds on",
            "name": "  # LoRA file name: ASCII letters, digits, - _ .",
            "unset": "  # keys the preset sets that this spec removes",
        }.get(key, "")
        lines.append(_value_line(key, value) + comment)
    words = ""
    concepts = data.get("concepts") or []
    if concepts:
        words = " ".join(w for w in (concepts[0].get("token"), concepts[0].get("class")) if w)
    sections = [k for k in ORDER if k in data and _is_table(data[k])] + [
        k for k in data if k not in ORDER and _is_table(data[k])
    ]
    for key in sections:
        value = data[key]
        lines.append("")
        lines.append(SECTION_HELP.get(key, f"# {key}"))
        if isinstance(value, list):  # arrays of tables as [[key]] blocks, however short
            lines.append("\n\n".join(f"[[{key}]]\n" + tomli_w.dumps(item).rstrip("\n") for item in value))
        else:
            lines.append(tomli_w.dumps({key: value}).rstrip("\n"))
    for key, example in EXAMPLES.items():
        if key not in data:
            lines.append("")
            lines.append(SECTION_HELP[key])
            lines.append(example.format(words=words or "mytoken").rstrip("\n"))
    return "\n".join(lines) + "\n"
