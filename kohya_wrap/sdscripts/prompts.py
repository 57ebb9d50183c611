"""sd-scripts' prompt line: one image per line, its settings after " --" (library/train_util.py
line_to_prompt_dict for samples during training; gen_img.py reads the same options and adds --am,
the network multipliers, and --f, the output file name):

    a photo of mytoken woman --n blurry --w 512 --h 768 --d 42 --l 7 --s 20 --ss euler_a --am 1,0 --f a.png

Writing (`PromptLine.format`) and reading (`split_line`) both live here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# field → the flag sd-scripts reads, in the order kohya-wrap writes them
FLAGS: dict[str, str] = {
    "negative": "n",
    "width": "w",
    "height": "h",
    "seed": "d",
    "cfg": "l",
    "steps": "s",
    "sampler": "ss",
    "network_mul": "am",
    "filename": "f",
}
_VALUE = {
    "negative": r"(.+)",
    "width": r"(\d+)",
    "height": r"(\d+)",
    "seed": r"(\d+)",
    "cfg": r"([\d.]+)",
    "steps": r"(\d+)",
    "sampler": r"(\S+)",
    "network_mul": r"([\d.,\s-]+)",
    "filename": r"(.+)",
}
_PATTERNS = {name: re.compile(f"{flag} {_VALUE[name]}", re.IGNORECASE | re.DOTALL) for name, flag in FLAGS.items()}


def format_number(value: int | float) -> str:
    """7 for 7.0, 0.5, 1e-05: the shortest text that reads back as the same number."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def breaks_the_line(text: str) -> bool:
    """A newline ends the prompt, and " --" starts an option: neither may be inside a value."""
    return "\n" in text or " --" in text


@dataclass(frozen=True)
class PromptLine:
    text: str
    negative: str | None = None
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    cfg: float | None = None
    steps: int | None = None
    sampler: str | None = None
    network_mul: tuple[float, ...] | None = None
    filename: str | None = None

    def format(self) -> str:
        parts = [self.text.strip()]
        for name, flag in FLAGS.items():
            value = getattr(self, name)
            if value is None or value == "":
                continue
            if name == "network_mul":
                shown = ",".join(format_number(float(v)) for v in value)
            elif isinstance(value, (int, float)):
                shown = format_number(value)
            else:
                shown = str(value).strip()
            parts.append(f"--{flag} {shown}")
        return " ".join(parts)


def split_line(line: str) -> tuple[str, list[tuple[str | None, str, str | None]]]:
    """A prompt line → its text and its options in order, each (field, or None for an option kohya-wrap
    does not know; the raw option text; the value as written: callers convert it by their own rules)."""
    parts = line.split(" --")
    options: list[tuple[str | None, str, str | None]] = []
    for part in parts[1:]:
        raw = part.strip()
        for name, pattern in _PATTERNS.items():
            match = pattern.fullmatch(raw)
            if match:
                options.append((name, raw, match.group(1)))
                break
        else:
            options.append((None, raw, None))
    return parts[0].strip(), options
