"""A failed run's cause and fix, from what sd-scripts printed: its exception and its error lines are
matched against known failures, so the user reads what happened and what to do instead of the last raw
exception line."""

from __future__ import annotations

DIAGNOSES: list[tuple[str, str, str]] = [
    # (text to look for in the exception or error lines, what happened, what to do)
    (
        "out of memory",
        "the GPU ran out of memory",
        "lighter settings: gradient_checkpointing = true, cache_latents = true, train_batch_size = 1, optimizer_type "
        '= "AdamW8bit", or the sdxl-low-vram preset',
    ),
    (
        "no data found",
        "sd-scripts found no training images",
        "check the concept folders and caption_extension (`kohya-wrap check`)",
    ),
    ("image file is truncated", "an image is truncated or corrupt", "re-export or remove the image named in the log"),
    ("cannot identify image file", "a file is not a readable image", "re-export or remove the image named in the log"),
    (
        "neither a valid local path nor a valid repo id",
        "the base model was not found",
        "fix model.base, or download it while online",
    ),
    (
        "modulenotfounderror",
        "a Python module is missing from sd-scripts' venv",
        "reinstall it: `kohya-wrap vendor install` (or pip install the named module into its venv)",
    ),
    ("no space left on device", "the disk is full", "free space where the project (model/, log/) lives"),
    ("loss is nan", "the loss became NaN", 'lower learning_rate, or use mixed_precision = "bf16" instead of fp16'),
]


def diagnose(exception: str | None, errors: list[str], verdict: str) -> list[str]:
    text = " ".join([exception or "", *errors]).lower()
    for needle, what, fix in DIAGNOSES:
        if needle in text:
            return [f"{what}: {exception or errors[0]}", f"fix: {fix}"]
    if exception:
        return [f"sd-scripts failed: {exception}", "see train.log in the run folder for the whole traceback"]
    return [verdict]
