"""Values no project can use, and why (each a "what — fix" text the spec's validators raise): a caption
extension that names images, step or epoch counts no run can have, and model files a family needs or
does not take."""

from __future__ import annotations

import re
from pathlib import Path

from kohya_wrap.dataset.scan import IMAGE_LIKE_SUFFIXES
from kohya_wrap.errors import shorten
from kohya_wrap.sdscripts.families import FAMILIES, Family
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


def model_parts_problem(family: Family, given: dict[str, str | None]) -> str | None:
    """What is wrong with the [model] files `given` (clip_l, t5xxl, ae, vae) for `family`: one it needs
    and lacks (FLUX: clip_l, t5xxl, ae), or one it does not take (sd15/sd2/sdxl: clip_l, t5xxl, ae); a
    family the table does not know may take any (sdscripts/families.py)."""
    missing = [name for name, _ in family.required if name in given and given[name] is None]
    if missing:
        return f"{missing[0]}: {family.title} needs {', '.join(missing)} — set model.{missing[0]} to the file's path"
    extra = [name for name in ("clip_l", "t5xxl", "ae") if given.get(name) is not None and name not in family.parts]
    if not extra:
        return None
    takers = [name for name, other in FAMILIES.items() if extra[0] in other.parts]
    return (
        f"{extra[0]}: {', '.join(extra)} only apply to family = "
        + " or ".join(f'"{name}"' for name in takers)
        + f' — remove them or set family = "{takers[0]}"'
    )


def family_files_problem(family: Family, training: dict[str, object]) -> str | None:
    """A model file `family`'s script needs as a [training] key of its own (Lumina's gemma2) and lacks."""
    for name, what in family.required:
        if name not in ("clip_l", "t5xxl", "ae", "vae") and not training.get(name):
            return (
                f"training.{name}: {family.title} needs {what} ({family.script} --{name}) — set training.{name} to "
                "the file's path"
            )
    return None
