"""What a grid is made of: the checkpoints chosen, the prompts, each cell (one image: a checkpoint at a
weight with one prompt, seed, cfg, steps and sampler) and its cache key, and which axes go across, down
and onto pages."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.fsutil import sha256_file
from kohya_wrap.sdscripts.naming import checkpoint_label, glob_escape
from kohya_wrap.sdscripts.prompts import breaks_the_line

AXES = ("checkpoint", "weight", "prompt", "seed", "cfg", "steps", "sampler")
# the sampler of a cell rendered by a script without a sampler choice (the *_minimal_inference.py: each samples
# with its model's own flow-matching schedule)
SCRIPT_SAMPLER = "default"


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    label: str  # "step 12", "epoch 2", "final"
    sha256: str

    @property
    def name(self) -> str:
        return self.path.name


def list_checkpoints(model_dir: Path, name: str, ordered_outputs: list[str] | None = None) -> list[Path]:
    """The LoRA files of this project's name in model/, in training order: the order a run recorded
    them in, else steps/epochs by number with the final file last."""
    found = [
        p
        for p in model_dir.glob(f"{glob_escape(name)}*.safetensors")
        if p.stem == name or p.stem.startswith(f"{name}-")
    ]
    found = [p for p in found if p.is_file() and checkpoint_label(p.stem, name) != p.stem]
    if ordered_outputs:
        position = {Path(p).name: i for i, p in enumerate(ordered_outputs)}
    else:
        position = {}

    def key(path: Path):
        label = checkpoint_label(path.stem, name)
        number = int(label.split()[-1]) if label != "final" else 1 << 62
        return (position.get(path.name, 1 << 62), label.split()[0] != "step", number)

    return sorted(found, key=key)


def select_checkpoints(paths: list[Path], name: str, selection: str) -> list[Checkpoint]:
    """all | last | a comma list of file names, labels ("step 12", "epoch 2", "final") or numbers."""
    if not paths:
        return []
    if selection == "all":
        chosen = paths
    elif selection == "last":
        chosen = paths[-1:]
    else:
        chosen = []
        for wanted in (w.strip() for w in selection.split(",") if w.strip()):
            match = [
                p
                for p in paths
                if wanted in (p.name, p.stem, checkpoint_label(p.stem, name))
                or checkpoint_label(p.stem, name).split()[-1] == wanted
            ]
            if not match:
                labels = ", ".join(checkpoint_label(p.stem, name) for p in paths)
                raise KohyaWrapError(f"--checkpoints: no checkpoint '{wanted}'", f"choose from: all, last, {labels}")
            chosen += [p for p in match if p not in chosen]
    return [Checkpoint(p, checkpoint_label(p.stem, name), sha256_file(p)) for p in chosen]


@dataclass(frozen=True)
class Prompt:
    text: str
    negative: str = ""

    def __post_init__(self) -> None:
        for value in (self.text, self.negative):
            if breaks_the_line(value):
                raise KohyaWrapError(
                    f"prompt '{value[:40]}' contains a newline or ' --'",
                    "sd-scripts' prompt file reads those as options: remove them",
                )


@dataclass(frozen=True)
class Cell:
    checkpoint: Checkpoint | None  # None: weight 0, the base model without any LoRA
    weight: float
    prompt: Prompt
    seed: int
    cfg: float
    steps: int
    sampler: str
    width: int
    height: int

    def key(self, base_id: str) -> str:
        data = {
            "base": base_id,
            "lora": self.checkpoint.sha256 if self.checkpoint else None,
            "weight": self.weight,
            "prompt": self.prompt.text,
            "negative": self.prompt.negative,
            "seed": self.seed,
            "cfg": self.cfg,
            "steps": self.steps,
            "sampler": self.sampler,
            "size": [self.width, self.height],
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class GridRequest:
    checkpoints: list[Checkpoint]
    weights: list[float]
    prompts: list[Prompt]
    seeds: list[int]
    cfgs: list[float]
    steps: list[int]
    samplers: list[str]
    width: int
    height: int

    def axis_values(self) -> dict[str, list]:
        return {
            "checkpoint": [c.label for c in self.checkpoints],
            "weight": self.weights,
            "prompt": [p.text for p in self.prompts],
            "seed": self.seeds,
            "cfg": self.cfgs,
            "steps": self.steps,
            "sampler": self.samplers,
        }

    def combinations(self) -> list[tuple[tuple, Cell]]:
        """Each combination (checkpoint × weight × …) as its values in AXES order, with its cell; the
        weight 0 cells of every checkpoint are the same base-model image, so they are one Cell."""
        found = []
        for checkpoint, weight, prompt, seed, cfg, steps, sampler in itertools.product(
            self.checkpoints, self.weights, self.prompts, self.seeds, self.cfgs, self.steps, self.samplers
        ):
            cell = Cell(
                checkpoint if weight != 0 else None, weight, prompt, seed, cfg, steps, sampler, self.width, self.height
            )
            found.append(((checkpoint.label, weight, prompt.text, seed, cfg, steps, sampler), cell))
        return found

    def cells(self) -> list[Cell]:
        return [cell for _, cell in self.combinations()]


def axes_layout(request: GridRequest, x: str | None, y: str | None) -> tuple[str, str, list[str]]:
    """Columns, rows and the page axes: x = weight and y = checkpoint unless chosen, else the first
    varying axes; every other varying axis makes a page per value."""
    values = request.axis_values()
    varying = [a for a in AXES if len(values[a]) > 1]
    for axis, name in ((x, "--x"), (y, "--y")):
        if axis is not None and axis not in AXES:
            raise KohyaWrapError(f"{name} {axis}: not an axis", f"use one of: {', '.join(AXES)}")
    if x is not None and x == y:
        raise KohyaWrapError(f"--x and --y are both {x}", "choose two different axes")
    preferred = [a for a in ("weight", "checkpoint", "seed", "prompt", "cfg", "steps", "sampler") if a in varying]
    if x is None:
        x = next((a for a in preferred if a != y), "weight")
    if y is None:
        y = next((a for a in preferred if a != x), "checkpoint" if x != "checkpoint" else "weight")
    pages = [a for a in varying if a not in (x, y)]
    return x, y, pages


def cells_by_key(request: GridRequest, base_id: str) -> dict[Cell, str]:
    return {cell: cell.key(base_id) for cell in request.cells()}


def base_identity(base: str, commit: str | None) -> str:
    """The base model by path, size and time (hashing gigabytes each time would cost more than a cell),
    and the sd-scripts commit that renders."""
    path = Path(base)
    stat = path.stat() if path.is_file() else None
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        stat_text = ";".join(f"{p.relative_to(path)}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    else:
        stat_text = f"{stat.st_size}:{stat.st_mtime_ns}" if stat else ""
    return f"{path.resolve()}|{stat_text}|{commit or ''}"
