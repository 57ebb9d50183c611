"""Rendering cells with sd-scripts' own gen_img.py: one process per sampler for all its cells (every
checkpoint loaded as a network, switched per prompt line with --am), each finished image moved into the
cache as it appears, a crash isolated to the cell it happened on. The process runs supervised
(launch/process.py): its own group, its output drained into gen.log, Ctrl-C stopping the whole group."""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from kohya_wrap.grid.cells import Cell, Checkpoint
from kohya_wrap.launch.process import Child, Exited, child_env
from kohya_wrap.sdscripts.families import FAMILIES
from kohya_wrap.sdscripts.naming import safe_name
from kohya_wrap.sdscripts.prompts import PromptLine

STOP_GRACE_S = 10.0  # Ctrl-C: gen_img.py's own SIGINT handling gets this long before SIGTERM and SIGKILL


@dataclass
class Generator:
    """How to run sd-scripts' gen_img.py for this project."""

    python: Path
    sd_root: Path
    base: str
    family: str
    network_module: str = "networks.lora"  # the one the LoRA was trained with (settings.network_module)
    extra: list[str] = field(default_factory=list)  # --vae, --tokenizer_cache_dir, --clip_skip, …

    def command(
        self, networks: list[Path], sampler: str, prompt_file: Path, outdir: Path, batch_size: int
    ) -> list[str]:
        inference = FAMILIES[self.family].inference
        script, flags = (inference.script, inference.flags) if inference else ("gen_img.py", ())
        command = [
            str(self.python),
            str(self.sd_root / script),
            *flags,
            "--ckpt",
            self.base,
            "--outdir",
            str(outdir),
            "--from_file",
            str(prompt_file),
            "--sampler",
            sampler,
            "--batch_size",
            str(batch_size),
            "--images_per_prompt",
            "1",
            "--sdpa",
        ]
        if networks:
            command += [
                "--network_module",
                *[self.network_module] * len(networks),
                "--network_weights",
                *[str(p) for p in networks],
                "--network_mul",
                *["1"] * len(networks),
            ]
        return command + self.extra


def prompt_line(cell: Cell, networks: list[Checkpoint], filename: str) -> str:
    """The cell as a gen_img.py prompt line: the cell's checkpoint at its weight, the others at 0."""
    muls = None
    if networks:
        muls = tuple(
            cell.weight
            if cell.checkpoint is not None and n.sha256 == cell.checkpoint.sha256 and n.path == cell.checkpoint.path
            else 0.0
            for n in networks
        )
    return PromptLine(
        text=cell.prompt.text,
        negative=cell.prompt.negative or None,
        width=cell.width,
        height=cell.height,
        seed=cell.seed,
        cfg=cell.cfg,
        steps=cell.steps,
        network_mul=muls,
        filename=filename,
    ).format()


@dataclass
class RenderOutcome:
    rendered: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # cell key → why
    interrupted: bool = False


def render_cells(
    generator: Generator,
    todo: dict[str, Cell],
    networks: list[Checkpoint],
    cache: Path,
    work: Path,
    batch_size: int,
    log_path: Path,
    on_progress: Callable[[int], None] | None = None,
    env: dict[str, str] | None = None,
) -> RenderOutcome:
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
                code = _run_batch(
                    generator,
                    items,
                    networks,
                    sampler,
                    cache,
                    work / f"{safe_name(sampler, '-') or 'sampler'}-{attempt}",
                    batch_size,
                    log,
                    outcome,
                    on_progress,
                    env,
                )
                if outcome.interrupted:
                    return outcome
                missing = [(key, cell) for key, cell in items if not (cache / f"{key}.png").is_file()]
                if not missing:
                    break
                why = f"gen_img.py exited with {code}" if code else "gen_img.py wrote no image for it"
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


def _run_batch(
    generator: Generator,
    items: list[tuple[str, Cell]],
    networks: list[Checkpoint],
    sampler: str,
    cache: Path,
    work: Path,
    batch_size: int,
    log,
    outcome: RenderOutcome,
    on_progress,
    env,
) -> int:
    outdir = work / "out"
    outdir.mkdir(parents=True, exist_ok=True)
    prompt_file = work / "prompts.txt"
    prompt_file.write_text(
        "\n".join(prompt_line(cell, networks, f"{key}.png") for key, cell in items) + "\n", encoding="utf-8"
    )
    wanted = {f"{key}.png" for key, _ in items}
    log.write(f"\n### {time.strftime('%Y-%m-%d %H:%M:%S')} sampler {sampler}: {len(items)} cell(s)\n".encode())
    log.flush()
    child = Child(
        generator.command([n.path for n in networks], sampler, prompt_file, outdir, batch_size),
        env if env is not None else child_env({}),
        generator.sd_root,
        log,
    )

    def collect() -> None:
        for path in list(outdir.glob("*.png")):
            if path.name not in wanted or size_unstable(path):
                continue
            os.replace(path, cache / path.name)
            outcome.rendered += 1
            if on_progress:
                on_progress(1)

    exited = None
    try:
        while exited is None:
            item = child.poll(0.3)  # output goes straight to the log; this loop looks for finished images
            if isinstance(item, Exited):
                exited = item
            collect()
    except KeyboardInterrupt:
        outcome.interrupted = True
        child.stop(STOP_GRACE_S)
        collect()
        return 1
    return exited.returncode


def size_unstable(path: Path) -> bool:
    """gen_img writes PNGs in place: wait until one is complete (its size settles and it decodes)."""
    try:
        before = path.stat().st_size
        time.sleep(0.05)
        if path.stat().st_size != before or before == 0:
            return True
        from PIL import Image  # Pillow stays out of start-up

        with Image.open(path) as image:
            image.load()
        return False
    except (OSError, SyntaxError, ValueError):
        return True


def _log_tail(log_path: Path) -> str:
    try:
        return error_line(log_path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return ""


def error_line(text: str) -> str:
    """The last line of a script's output that names an error: what a failed cell says it failed of."""
    errors = [line.strip() for line in text.splitlines() if re.search(r"Error|ERROR|error:", line)]
    return (errors[-1] if errors else "")[:300]


def clear_work(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
