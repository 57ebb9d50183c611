"""`grid`: the saved LoRA checkpoints × LoRA weights (× prompts, seeds, cfg, steps, samplers) rendered by
the vendored sd-scripts' own generation script, and laid out as labelled grid images.

All the cells that share a sampler render in one `gen_img.py` process, so the base model loads once:
every checkpoint is loaded as a network of its own and each prompt line switches them with `--am`
(the chosen checkpoint at the cell's weight, the others at 0), sets its seed (`--d`), cfg (`--l`),
steps (`--s`), size and negative prompt, and names its output file (`--f`). A cell is cached under
`.kohya-wrap/grid-cache/` by a key over everything that decides its pixels (the checkpoint's SHA-256,
the base model's path, size and time, the sd-scripts commit, the cell's settings), so a grid with one
more column renders only that column, and weight 0 (the base model) renders once for all checkpoints.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.fsutil import sha256_file

AXES = ("checkpoint", "weight", "prompt", "seed", "cfg", "steps", "sampler")
MAX_SIDE = 6144  # a grid image larger than this is scaled down
MIN_CELL = 160  # cells smaller than this (tiny test renders) are shown enlarged
STEP_NAME = re.compile(r"-step(\d+)$")
EPOCH_NAME = re.compile(r"-(\d{6})$")


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    label: str  # "step 12", "epoch 2", "final"
    sha256: str

    @property
    def name(self) -> str:
        return self.path.name


def checkpoint_label(stem: str, name: str) -> str:
    if stem == name:
        return "final"
    if match := STEP_NAME.search(stem):
        return f"step {int(match.group(1))}"
    if match := EPOCH_NAME.search(stem):
        return f"epoch {int(match.group(1))}"
    return stem


def list_checkpoints(model_dir: Path, name: str, ordered_outputs: list[str] | None = None) -> list[Path]:
    """The LoRA files of this project's name in model/, in training order: the order a run recorded
    them in, else steps/epochs by number with the final file last."""
    found = [p for p in model_dir.glob(f"{name}*.safetensors") if p.stem == name or p.stem.startswith(f"{name}-")]
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
            match = [p for p in paths if wanted in (p.name, p.stem, checkpoint_label(p.stem, name))
                     or checkpoint_label(p.stem, name).split()[-1] == wanted]
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
            if "\n" in value or " --" in value:
                raise KohyaWrapError(f"prompt '{value[:40]}' contains a newline or ' --'", "sd-scripts' prompt file reads those as options: remove them")


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
        data = {"base": base_id, "lora": self.checkpoint.sha256 if self.checkpoint else None, "weight": self.weight,
                "prompt": self.prompt.text, "negative": self.prompt.negative, "seed": self.seed, "cfg": self.cfg,
                "steps": self.steps, "sampler": self.sampler, "size": [self.width, self.height]}
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
        return {"checkpoint": [c.label for c in self.checkpoints], "weight": self.weights, "prompt": [p.text for p in self.prompts],
                "seed": self.seeds, "cfg": self.cfgs, "steps": self.steps, "sampler": self.samplers}

    def cells(self) -> list[Cell]:
        """One cell per combination (checkpoint × weight × …); weight 0 cells of every checkpoint are the
        same base-model image, so they share one Cell."""
        cells = []
        for checkpoint, weight, prompt, seed, cfg, steps, sampler in itertools.product(
                self.checkpoints, self.weights, self.prompts, self.seeds, self.cfgs, self.steps, self.samplers):
            cells.append(Cell(checkpoint if weight != 0 else None, weight, prompt, seed, cfg, steps, sampler, self.width, self.height))
        return cells


def layout(request: GridRequest, x: str | None, y: str | None) -> tuple[str, str, list[str]]:
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


# ---------------------------------------------------------------------------------------------- rendering


@dataclass
class Generator:
    """How to run sd-scripts' gen_img.py for this project."""

    python: Path
    sd_root: Path
    base: str
    family: str
    extra: list[str] = field(default_factory=list)  # --vae, --tokenizer_cache_dir, --clip_skip, …

    def command(self, networks: list[Path], sampler: str, prompt_file: Path, outdir: Path, batch_size: int) -> list[str]:
        command = [str(self.python), str(self.sd_root / "gen_img.py"), "--ckpt", self.base, "--outdir", str(outdir),
                   "--from_file", str(prompt_file), "--sampler", sampler, "--batch_size", str(batch_size),
                   "--images_per_prompt", "1", "--sdpa"]
        if self.family == "sdxl":
            command.append("--sdxl")
        elif self.family == "sd2":
            command.append("--v2")
        if networks:
            command += ["--network_module", *["networks.lora"] * len(networks),
                        "--network_weights", *[str(p) for p in networks], "--network_mul", *["1"] * len(networks)]
        return command + self.extra


def prompt_line(cell: Cell, networks: list[Checkpoint], filename: str) -> str:
    parts = [cell.prompt.text]
    if cell.prompt.negative:
        parts.append(f"--n {cell.prompt.negative}")
    parts += [f"--w {cell.width}", f"--h {cell.height}", f"--d {cell.seed}", f"--l {cell.cfg:g}", f"--s {cell.steps}"]
    if networks:
        muls = [cell.weight if cell.checkpoint is not None and n.sha256 == cell.checkpoint.sha256 and n.path == cell.checkpoint.path else 0.0
                for n in networks]
        parts.append("--am " + ",".join(f"{m:g}" for m in muls))
    parts.append(f"--f {filename}")
    return " ".join(parts)


@dataclass
class RenderOutcome:
    rendered: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # cell key → why
    interrupted: bool = False


def render_cells(generator: Generator, todo: dict[str, Cell], networks: list[Checkpoint], cache: Path, work: Path,
                 batch_size: int, log_path: Path, on_progress: Callable[[int], None] | None = None,
                 env: dict[str, str] | None = None) -> RenderOutcome:
    """Render the missing cells, one gen_img.py process per sampler; every finished image moves into
    the cache as it appears, so Ctrl-C or a crash keeps what was done. When the process dies, the first
    cell it did not finish is marked failed and the cells after it get a new process."""
    outcome = RenderOutcome()
    cache.mkdir(parents=True, exist_ok=True)
    by_sampler: dict[str, list[tuple[str, Cell]]] = {}
    for key, cell in todo.items():
        by_sampler.setdefault(cell.sampler, []).append((key, cell))
    with open(log_path, "ab") as log:
        for sampler, items in by_sampler.items():
            attempt, stalls = 0, 0
            while items:
                attempt += 1
                code = _run_batch(generator, items, networks, sampler, cache, work / f"{slug(sampler)}-{attempt}", batch_size,
                                  log, outcome, on_progress, env)
                if outcome.interrupted:
                    return outcome
                missing = [(key, cell) for key, cell in items if not (cache / f"{key}.png").is_file()]
                if not missing:
                    break
                why = (f"gen_img.py exited with {code}" if code else "gen_img.py wrote no image for it")
                tail = _log_tail(log_path)
                why += f": {tail}" if tail else ""
                outcome.failed[missing[0][0]] = why
                stalls = stalls + 1 if len(missing) == len(items) else 0
                if code == 0 or stalls >= 2:  # a clean exit, or twice nothing at all: the rest would fail alike
                    for key, _ in missing[1:]:
                        outcome.failed[key] = why
                    break
                items = missing[1:]
    return outcome


def _run_batch(generator: Generator, items: list[tuple[str, Cell]], networks: list[Checkpoint], sampler: str, cache: Path,
               work: Path, batch_size: int, log, outcome: RenderOutcome, on_progress, env) -> int:
    outdir = work / "out"
    outdir.mkdir(parents=True, exist_ok=True)
    prompt_file = work / "prompts.txt"
    prompt_file.write_text("\n".join(prompt_line(cell, networks, f"{key}.png") for key, cell in items) + "\n", encoding="utf-8")
    wanted = {f"{key}.png" for key, _ in items}
    log.write(f"\n### {time.strftime('%Y-%m-%d %H:%M:%S')} sampler {sampler}: {len(items)} cell(s)\n".encode())
    log.flush()
    child = subprocess.Popen(generator.command([n.path for n in networks], sampler, prompt_file, outdir, batch_size),
                             cwd=generator.sd_root, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

    def collect() -> None:
        for path in list(outdir.glob("*.png")):
            if path.name not in wanted or _size_unstable(path):
                continue
            os.replace(path, cache / path.name)
            outcome.rendered += 1
            if on_progress:
                on_progress(1)

    try:
        while child.poll() is None:
            time.sleep(0.3)
            collect()
        collect()
    except KeyboardInterrupt:
        outcome.interrupted = True
        _stop(child)
        collect()
    return child.returncode if child.returncode is not None else 1


def _size_unstable(path: Path) -> bool:
    """gen_img writes PNGs in place: wait until one is complete (its size settles and it decodes)."""
    try:
        before = path.stat().st_size
        time.sleep(0.05)
        if path.stat().st_size != before or before == 0:
            return True
        from PIL import Image

        with Image.open(path) as image:
            image.load()
        return False
    except (OSError, SyntaxError, ValueError):
        return True


def _stop(child: subprocess.Popen) -> None:
    import signal

    if child.poll() is None:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _log_tail(log_path: Path) -> str:
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line.strip() for line in lines if re.search(r"Error|ERROR|error:", line)]
    return (errors[-1] if errors else "")[:300]


# ---------------------------------------------------------------------------------------------- pictures


def _font(size: int):
    from PIL import ImageFont

    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "Arial.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size)  # Pillow ≥ 10.1 with FreeType: scalable
    except TypeError:
        return ImageFont.load_default()


def axis_label(axis: str, value: Any) -> str:
    if axis == "weight":
        return f"weight {value:g}" + (" (base)" if value == 0 else "")
    if axis == "checkpoint":
        return str(value) if value is not None else "base model"
    if axis == "seed":
        return f"seed {value}"
    if axis == "cfg":
        return f"cfg {value:g}"
    if axis == "steps":
        return f"{value} steps"
    if axis == "prompt":
        text = str(value)
        return text if len(text) <= 60 else text[:57] + "…"
    return str(value)


def _wrap(draw, text: str, font, width: int) -> list[str]:
    """Words onto as many lines as the width needs (the title says every fixed setting)."""
    lines, line = [], ""
    for word in text.split(" "):
        candidate = f"{line} {word}".strip()
        if line and draw.textlength(candidate, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return (lines + [line])[:6]


def _fit(draw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def compose_page(title: str, x_axis: str, x_values: list, y_axis: str, y_values: list,
                 image_for: Callable[[Any, Any], Path | None], cell_size: tuple[int, int]):
    """A labelled grid: a title, column labels on top, row labels on the left, missing cells grey with
    a note. Cells are scaled down so the whole image stays within MAX_SIDE pixels."""
    from PIL import Image, ImageDraw

    columns, rows = len(x_values), len(y_values)
    scale = min(1.0, (MAX_SIDE - 240) / (columns * cell_size[0]), (MAX_SIDE - 160) / (rows * cell_size[1]))
    scale = max(scale, MIN_CELL / min(cell_size))  # small test renders are shown at a readable size
    cw, ch = max(32, int(cell_size[0] * scale)), max(32, int(cell_size[1] * scale))
    font_size = max(13, min(28, cw // 12))
    font, title_font = _font(font_size), _font(font_size + 3)
    label_w = max(120, min(360, cw))
    width = label_w + columns * cw
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    title_lines = _wrap(probe, title, title_font, width - 16)
    title_h, header_h = (font_size + 8) * len(title_lines) + 12, font_size * 2 + 8
    canvas = Image.new("RGB", (width, title_h + header_h + rows * ch), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for index, line in enumerate(title_lines):
        draw.text((8, 6 + index * (font_size + 8)), line, fill=(0, 0, 0), font=title_font)
    for c, xv in enumerate(x_values):
        text = _fit(draw, axis_label(x_axis, xv), font, cw - 8)
        draw.text((label_w + c * cw + (cw - draw.textlength(text, font=font)) / 2, title_h + 4), text, fill=(0, 0, 0), font=font)
    for r, yv in enumerate(y_values):
        top = title_h + header_h + r * ch
        text = _fit(draw, axis_label(y_axis, yv), font, label_w - 12)
        draw.text((6, top + ch / 2 - font_size / 2), text, fill=(0, 0, 0), font=font)
        for c, xv in enumerate(x_values):
            left = label_w + c * cw
            path = image_for(xv, yv)
            if path is not None and path.is_file():
                with Image.open(path) as cell:
                    canvas.paste(cell.convert("RGB").resize((cw, ch), Image.Resampling.LANCZOS), (left, top))
            else:
                draw.rectangle((left + 1, top + 1, left + cw - 2, top + ch - 2), fill=(200, 200, 200))
                draw.text((left + 8, top + ch / 2 - font_size / 2), "not rendered", fill=(90, 0, 0), font=font)
    canvas.info["geometry"] = {"origin": [label_w, title_h + header_h], "cell": [cw, ch]}
    return canvas


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "page"


def write_grid(folder: Path, request: GridRequest, keys: dict[Cell, str], cache: Path, x: str, y: str, pages: list[str],
               title: str, failed: dict[str, str], meta: dict[str, Any]) -> dict[str, Any]:
    """Grid page images, the cell images, and grid.json describing every cell."""
    from kohya_wrap.fsutil import copy_file_atomic, write_bytes_atomic, write_text_atomic

    values = request.axis_values()
    cells_dir = folder / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    by_values: dict[tuple, Cell] = {}
    for checkpoint, weight, prompt, seed, cfg, steps, sampler in itertools.product(
            request.checkpoints, request.weights, request.prompts, request.seeds, request.cfgs, request.steps, request.samplers):
        cell = Cell(checkpoint if weight != 0 else None, weight, prompt, seed, cfg, steps, sampler, request.width, request.height)
        coords = {"checkpoint": checkpoint.label, "weight": weight, "prompt": prompt.text, "seed": seed, "cfg": cfg, "steps": steps, "sampler": sampler}
        by_values[tuple(coords[a] for a in AXES)] = cell
    fixed = {a: values[a][0] for a in AXES if len(values[a]) == 1 and a not in (x, y)}
    page_entries, cell_entries, seen = [], [], set()
    for page_values in itertools.product(*[values[a] for a in pages]) if pages else [()]:
        chosen = dict(zip(pages, page_values))
        label = ", ".join(axis_label(a, v) for a, v in chosen.items()) or "grid"

        def image_for(xv, yv, chosen=chosen):
            coords = {**{a: values[a][0] for a in AXES}, **chosen, x: xv, y: yv}
            cell = by_values[tuple(coords[a] for a in AXES)]
            return cache / f"{keys[cell]}.png"

        fixed_text = ", ".join(axis_label(a, v) for a, v in fixed.items())
        page_title = " · ".join(t for t in (title, label if pages else "", fixed_text) if t)
        image = compose_page(page_title, x, values[x], y, values[y], image_for, (request.width, request.height))
        import io

        buffer = io.BytesIO()
        image.save(buffer, "PNG", compress_level=3)
        name = f"grid-{slug(label)}.png" if pages else "grid.png"
        write_bytes_atomic(folder / name, buffer.getvalue())
        page_entries.append({"label": label, "image": name, "values": chosen, **image.info["geometry"]})
    for cell, key in keys.items():
        if key in seen:
            continue
        seen.add(key)
        source = cache / f"{key}.png"
        entry = {"key": key, "checkpoint": cell.checkpoint.name if cell.checkpoint else None,
                 "checkpoint_label": cell.checkpoint.label if cell.checkpoint else "base model",
                 "checkpoint_sha256": cell.checkpoint.sha256 if cell.checkpoint else None, "weight": cell.weight,
                 "prompt": cell.prompt.text, "negative": cell.prompt.negative, "seed": cell.seed, "cfg": cell.cfg,
                 "steps": cell.steps, "sampler": cell.sampler, "width": cell.width, "height": cell.height}
        if source.is_file():
            copy_file_atomic(source, cells_dir / f"{key}.png")
            entry.update(status="ok", image=f"cells/{key}.png")
        else:
            entry.update(status="failed", error=failed.get(key, "not rendered"))
        cell_entries.append(entry)
    data = {"title": title, **meta, "axes": {"x": x, "y": y, "pages": pages}, "values": values, "fixed": fixed,
            "pages": page_entries, "cells": cell_entries}
    write_text_atomic(folder / "grid.json", json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return data


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


def clear_work(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
