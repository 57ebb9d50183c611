"""Values no project can use, and why (each a "what — fix" text the spec's validators raise): a caption
extension that names images, and step or epoch counts no run can have."""

from __future__ import annotations

import re
from pathlib import Path

from kohya_wrap.dataset.scan import IMAGE_LIKE_SUFFIXES
from kohya_wrap.errors import shorten
from kohya_wrap.sdscripts.naming import MAX_EPOCHS, MAX_STEPS


def caption_extension_problem(value: object) -> str | None:
    """Why `value` cannot be a caption extension ("what — fix"), or None. An image extension would make
    sd-scripts read a photo's same-stem twin as its caption, and `tags --create` write text into `*.jpg`."""
    if not isinstance(value, str) or not re.fullmatch(r"\.[A-Za-z0-9_.-]+", value):
        return f"'{shorten(value)}' is not a file extension — write it with the dot, e.g. \".txt\""
    suffix = Path("x" + value).suffix.lower()
    if suffix in IMAGE_LIKE_SUFFIXES:
        return (
            f"'{shorten(value)}' is an image extension, but captions are text files beside the images (img1.png → "
            f'img1.txt): sd-scripts would read img1{shorten(value)} as a caption — use ".txt" (or ".caption")'
        )
    if suffix == ".npz":
        return (
            f"'{shorten(value)}' is the extension of sd-scripts' latent cache files (img1.npz), not of captions — use "
            '".txt" (or ".caption")'
        )
    return None


def run_length_problem(field: str, value: int | None) -> str | None:
    """Why `value` cannot be `field` (max_train_steps, save_every_n_steps, max_train_epochs,
    save_every_n_epochs), or None: more than sd-scripts' 8-digit step or 6-digit epoch file names hold
    (sdscripts/naming.py: MAX_STEPS, MAX_EPOCHS), refused here so nothing downstream meets it."""
    if value is None:
        return None
    steps = "steps" in field
    most, unit = (MAX_STEPS, "steps") if steps else (MAX_EPOCHS, "epochs")
    if value <= most:
        return None
    names = "8-digit step file names (<name>-step99999999)" if steps else "6-digit epoch file names (<name>-999999)"
    if field.startswith("save_every"):
        return (
            f"{value} is more than {most:,} {unit}, the most a run can have, so it would never save — use at most "
            f"{most:,}, or remove it"
        )
    return (
        f"{value} is more than {most:,} {unit}, the most sd-scripts' {names} hold"
        + (" (over 115 days at 10 steps a second)" if steps else "")
        + f" — use at most {most:,}; a LoRA trains in "
        + ("thousands of steps" if steps else "tens of epochs")
    )
