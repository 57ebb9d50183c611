"""sd-scripts' file names, in one place: the LoRA files, training states and sample images that
train_network.py saves (library/train_util.py: get_step_ckpt_name, get_epoch_ckpt_name,
get_last_ckpt_name, the `-state` folders of save_state, and sample_images' file names), and what
counts as a safe output name.

    <name>-step00000012.safetensors   a step save            <name>-step00000012-state   its state
    <name>-000002.safetensors         an epoch save          <name>-000002-state         its state
    <name>.safetensors                the final file
    <name>_000012_00_20250101120000_42.png   a sample at step 12 (prompt 0, time, seed)
    <name>_e000002_00_20250101120000_42.png  a sample at epoch 2
"""

from __future__ import annotations

import re

STATE_SUFFIX = "-state"

# The most steps and epochs a run may have: sd-scripts numbers step saves with 8 digits (-step%08d) and
# epoch saves with 6 (-%06d). Past these its names grow a digit, stop sorting in training order and
# stop matching STEP_NAME (so a resume could not renumber them) — and no real run comes near: 99,999,999
# steps are over 115 days at 10 steps a second, where a LoRA trains in thousands of steps.
MAX_STEPS = 99_999_999
MAX_EPOCHS = 999_999
NAME_PATTERN = re.compile(r"^[A-Za-z0-9._-]+$")  # what `name` may hold: it ends up in file names and metadata
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

# renumbering after a resume: the step in a step-named checkpoint or state, and in a sample image (sd-scripts
# writes its step with 6 digits, 7 or 8 past step 999,999: MAX_STEPS)
STEP_NAME = re.compile(r"^(?P<head>.*-step)(?P<step>\d{8})(?P<tail>(?:-state)?(?:\.[^.]+)?)$")
SAMPLE_NAME = re.compile(r"^(?P<head>.*_)(?P<step>\d{6,})(?P<tail>_\d{2}_.*)$")
# a sample image's parts: step (or e + epoch), prompt index, time stamp, seed
SAMPLE_FILE = re.compile(
    r"^(?P<head>.*?)_(?P<tag>e\d{6}|\d{6,})_(?P<index>\d{2})_(?P<stamp>\d{14})(?:_(?P<seed>\d+))?\.[A-Za-z]+$"
)
_STEP_STEM = re.compile(r"-step(\d+)$")
_EPOCH_STEM = re.compile(r"-(\d{6})$")


def step_checkpoint(name: str, step: int, extension: str) -> str:
    return f"{name}-step{step:08d}{extension}"


def epoch_checkpoint(name: str, epoch: int, extension: str) -> str:
    return f"{name}-{epoch:06d}{extension}"


def final_checkpoint(name: str, extension: str) -> str:
    return f"{name}{extension}"


def checkpoint_label(stem: str, name: str) -> str:
    """How a checkpoint of output `name` is called to users: "final", "step 12", "epoch 2"; a file of
    another shape keeps its stem."""
    if stem == name:
        return "final"
    if match := _STEP_STEM.search(stem):
        return f"step {int(match.group(1))}"
    if match := _EPOCH_STEM.search(stem):
        return f"epoch {int(match.group(1))}"
    return stem


def renumbered(name: str, offset: int, sample: bool = False) -> str:
    """A step-named file (or sample image) with `offset` added to its step; other names unchanged."""
    if offset:
        match = (SAMPLE_NAME if sample else STEP_NAME).match(name)
        if match:
            width = len(match["step"])
            return f"{match['head']}{int(match['step']) + offset:0{width}d}{match['tail']}"
    return name


def safe_name(text: str, fill: str = "_") -> str:
    """`text` with every run of characters outside ASCII letters, digits, - _ . replaced by `fill`,
    trimmed of separators at both ends ("" when nothing is left)."""
    return _UNSAFE.sub(fill, text).strip("._-")


def glob_escape(text: str) -> str:
    """`text` as a literal in a glob pattern."""
    return re.sub(r"([*?\[])", r"[\1]", text)
