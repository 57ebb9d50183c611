"""Rendering cells with a family's own `<family>_minimal_inference.py` (FLUX, SD3, Lumina, HunyuanImage, and a
family sd-scripts added whose script takes HunyuanImage's arguments, such as Anima). These scripts take one
prompt per process, each in argument names of its own, and have no sampler choice: every cell is one process
(the models load for every cell) writing into a fresh folder, whose single PNG moves into the cache as
`<key>.png`. Supervised like gen_img.py (launch/process.py), logged into the same gen.log; a cell whose
process fails is marked failed and the next cell goes on."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.grid.cells import Cell
from kohya_wrap.grid.render import STOP_GRACE_S, RenderOutcome, error_line, size_unstable
from kohya_wrap.launch.process import Child, Exited, child_env
from kohya_wrap.sdscripts.families import Family

# musubi style (hunyuan_image_minimal_inference.py, anima_minimal_inference.py): the flags a script kohya-wrap
# has no table entry for must have before it is called this way
MUSUBI_FLAGS = ("dit", "text_encoder", "prompt", "seed", "infer_steps", "image_size", "save_path", "lora_weight")
# the [training] keys that name a musubi script's --text_encoder: its own name, else Anima's (anima_train_network.py)
TEXT_ENCODER_KEYS = ("text_encoder", "qwen3")


@dataclass(frozen=True)
class MinimalGenerator:
    """How to run one cell through a <family>_minimal_inference.py."""

    python: Path
    sd_root: Path
    script: str
    style: str  # flux, sd3, lumina, musubi (families.Inference)
    files: tuple[tuple[str, str], ...]  # the model files every cell loads: (flag, path), the base first
    extra: tuple[str, ...] = ()  # precision, --lycoris: the same for every cell

    @property
    def shared(self) -> str:
        """What renders every cell differently from another generator: part of each cell's cache key."""
        return " ".join([self.script, *(f"--{flag} {path}" for flag, path in self.files), *self.extra])

    def command(self, cell: Cell, lora: Path | None, outdir: Path) -> list[str]:
        """The argv for one cell: its prompt, seed, steps, cfg and size; the LoRA at the cell's weight (no
        LoRA argument at all for weight 0, the base model); its image written into `outdir`."""
        text = [f"--prompt={cell.prompt.text}"]  # `=`: a prompt that starts with "-" is not read as an option
        if cell.prompt.negative:
            text.append(f"--negative_prompt={cell.prompt.negative}")
        seed, steps, cfg = str(cell.seed), str(cell.steps), f"{cell.cfg:g}"
        files = [arg for flag, path in self.files for arg in (f"--{flag}", path)]
        if self.style == "musubi":
            per_cell = [*text, "--seed", seed, "--infer_steps", steps, "--guidance_scale", cfg]
            per_cell += ["--image_size", str(cell.height), str(cell.width), "--save_path", str(outdir)]
            if lora is not None:
                per_cell += ["--lora_weight", str(lora), "--lora_multiplier", f"{cell.weight:g}"]
        else:
            # what sd-scripts' own training samples do with a prompt line's scale (--l): flux and sd3 --cfg_scale,
            # lumina --guidance_scale
            guidance = "--guidance_scale" if self.style == "lumina" else "--cfg_scale"
            width, height = ("--image_width", "--image_height") if self.style == "lumina" else ("--width", "--height")
            per_cell = [*text, "--seed", seed, "--steps", steps, guidance, cfg, width, str(cell.width)]
            per_cell += [height, str(cell.height), "--output_dir", str(outdir)]
            if lora is not None:  # "path;multiplier": the script splits on ";"
                per_cell += ["--lora_weights", f"{lora};{cell.weight:g}"]
        return [str(self.python), str(self.sd_root / self.script), *files, *per_cell, *self.extra]


def script_flags(path: Path) -> set[str]:
    """The options a script's argparse parser declares, read from its source (importing it would load torch)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    return set(re.findall(r"add_argument\(\s*[\"']--([A-Za-z0-9_]+)[\"']", text))


def minimal_generator(
    python: Path, sd_root: Path, family: Family, style: str, base: str, args: dict, mixed_precision: str
) -> MinimalGenerator:
    """The generator for `family` from the base model and the train args kohya-wrap renders for it (the model
    files by sd-scripts' own names, absolute); a file the script needs and the spec does not give, or a LoRA
    module the script cannot load, is refused before anything runs."""
    assert family.inference is not None
    script = family.inference.script
    flags = script_flags(sd_root / script)
    if style == "inferred":
        if "dit" not in flags:
            raise KohyaWrapError(
                f"grid: {script} does not take the arguments kohya-wrap knows for a family it has no entry for "
                "(HunyuanImage's --dit, --save_path, --lora_weight)",
                f"render {family.name} images with {script} directly",
            )
        missing = [f"--{flag}" for flag in MUSUBI_FLAGS if flag not in flags]
        if missing:
            raise KohyaWrapError(
                f"grid: {script} lacks {', '.join(missing)}, which kohya-wrap calls it with",
                f"render {family.name} images with {script} directly",
            )
        style = "musubi"

    def given(*keys: str) -> str | None:
        return next((str(args[key]) for key in keys if args.get(key)), None)

    def need(flag: str, value: str | None, where: str) -> tuple[str, str]:
        if value is None:
            raise KohyaWrapError(f"grid: {script} needs --{flag}", f"set {where} to the file's path")
        return flag, value

    module = str(args.get("network_module") or family.network_module)
    extra: list[str] = []
    if style == "flux":
        files = [("ckpt_path", base), need("clip_l", given("clip_l"), "model.clip_l")]
        files += [need("t5xxl", given("t5xxl"), "model.t5xxl"), need("ae", given("ae"), "model.ae")]
        modules: tuple[str, ...] = ("networks.lora_flux", "networks.oft_flux")  # it tells them apart by their keys
        extra += {"bf16": ["--dtype", "bfloat16"], "fp16": ["--dtype", "float16"]}.get(mixed_precision, [])
    elif style == "sd3":  # the text encoders may be inside a single-file base
        files = [("ckpt_path", base)] + [(key, given(key)) for key in ("clip_g", "clip_l", "t5xxl") if given(key)]
        modules = ("networks.lora_sd3",)
        extra += {"bf16": ["--bf16"], "fp16": ["--fp16"]}.get(mixed_precision, [])
    elif style == "lumina":
        files = [
            ("pretrained_model_name_or_path", base),
            need("gemma2_path", given("gemma2"), "training.gemma2"),
            need("ae_path", given("ae"), "model.ae"),
        ]
        modules = ("networks.lora_lumina",)
        extra += {"bf16": ["--dtype", "bf16"], "fp16": ["--dtype", "fp16"]}.get(mixed_precision, [])
    elif style == "musubi":  # bf16 is the precision these scripts render in, whatever the training's
        files = [("dit", base), need("text_encoder", given(*TEXT_ENCODER_KEYS), "training.text_encoder")]
        if given("vae"):
            files.append(("vae", given("vae")))
        if given("byt5") and (not flags or "byt5" in flags):
            files.append(("byt5", given("byt5")))
        modules = (family.network_module,)
        if module.startswith("lycoris."):
            modules, extra = (module,), ["--lycoris"]
    else:
        raise KohyaWrapError(f"grid: no renderer for the '{style}' arguments of {script}")
    if module not in modules:
        raise KohyaWrapError(
            f"grid: {script} loads {' or '.join(modules)} LoRAs, but this project trains with {module}",
            f'render these LoRAs with another tool, or train with network_module = "{modules[0]}"',
        )
    return MinimalGenerator(python, sd_root, script, style, tuple((f, str(p)) for f, p in files), tuple(extra))


def render_minimal_cells(
    generator: MinimalGenerator,
    todo: dict[str, Cell],
    cache: Path,
    work: Path,
    log_path: Path,
    on_progress: Callable[[int], None] | None = None,
    env: dict[str, str] | None = None,
) -> RenderOutcome:
    """Render the missing cells one process each, in order; each finished image moves into the cache at once,
    so Ctrl-C keeps what was done. A cell whose process fails is marked failed and the next goes on — unless
    the first two fail and nothing has rendered: then the rest would fail alike (a model file that does not
    load) and are marked failed with the same reason, without loading the models for each."""
    outcome = RenderOutcome()
    cache.mkdir(parents=True, exist_ok=True)
    items = list(todo.items())
    with open(log_path, "ab") as log:
        try:
            for index, (key, cell) in enumerate(items):
                why = _render_one(generator, key, cell, cache, work / f"cell-{index + 1}", log, log_path, outcome, env)
                if why is None:
                    if on_progress:
                        on_progress(1)
                    continue
                outcome.failed[key] = why
                if index == 1 and outcome.rendered == 0:
                    for other, _ in items[2:]:
                        outcome.failed[other] = why
                    break
        except KeyboardInterrupt:  # the cell's process is stopped (_render_one); the cells done are in the cache
            outcome.interrupted = True
    return outcome


def _render_one(
    generator: MinimalGenerator,
    key: str,
    cell: Cell,
    cache: Path,
    work: Path,
    log,
    log_path: Path,
    outcome: RenderOutcome,
    env: dict[str, str] | None,
) -> str | None:
    """One cell, one process: None when its image is in the cache, else why not."""
    outdir = work / "out"
    outdir.mkdir(parents=True, exist_ok=True)
    links = Path(tempfile.mkdtemp(prefix="kohya-wrap-grid-"))
    try:
        return _run_cell(generator, key, cell, cache, outdir, _lora_path(cell, links), log, log_path, outcome, env)
    finally:
        shutil.rmtree(links, ignore_errors=True)


def _run_cell(
    generator: MinimalGenerator,
    key: str,
    cell: Cell,
    cache: Path,
    outdir: Path,
    lora: Path | None,
    log,
    log_path: Path,
    outcome: RenderOutcome,
    env: dict[str, str] | None,
) -> str | None:
    label = cell.checkpoint.label if cell.checkpoint else "base model"
    log.write(
        f"\n### {time.strftime('%Y-%m-%d %H:%M:%S')} cell {key}: {label}, weight {cell.weight:g}, "
        f"seed {cell.seed}\n".encode()
    )
    log.flush()
    start = log.tell()
    child = Child(
        generator.command(cell, lora, outdir), env if env is not None else child_env({}), generator.sd_root, log
    )
    try:
        exited = None
        while not isinstance(exited, Exited):
            exited = child.poll(0.3)
    except KeyboardInterrupt:
        child.stop(STOP_GRACE_S)
        raise
    images = [path for path in outdir.glob("*.png") if not size_unstable(path)]
    script = generator.script
    if exited.returncode != 0 or len(images) != 1:
        if exited.returncode:
            why = f"{script} exited with {exited.returncode}"
        else:
            why = f"{script} wrote {len(images)} images, not one" if images else f"{script} wrote no image"
        tail = error_line(_text_since(log_path, start))
        return why + (f": {tail}" if tail else "")
    os.replace(images[0], cache / f"{key}.png")
    outcome.rendered += 1
    return None


def _lora_path(cell: Cell, links: Path) -> Path | None:
    """The cell's LoRA file, or None at weight 0. flux/sd3/lumina split "path;multiplier" on ";", so a path
    with one is linked (or, where links are not allowed, copied) into `links`, a temporary folder outside the
    project, under a plain name."""
    if cell.checkpoint is None or cell.weight == 0:
        return None
    path = cell.checkpoint.path
    if ";" not in str(path):
        return path
    link = links / "lora.safetensors"
    if ";" in str(link):
        raise KohyaWrapError(
            "grid: the LoRA's path has a ';', which the minimal inference scripts read as where its weight starts",
            "set TMPDIR to a folder without ';' (a link to the LoRA goes there), or rename the project folder",
        )
    try:
        link.symlink_to(path.resolve())
    except OSError:
        shutil.copyfile(path, link)
    return link


def _text_since(log_path: Path, offset: int) -> str:
    try:
        with open(log_path, "rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
