"""`kohya-wrap demo`: the whole path offline, on a tiny random-weight model and a synthetic dataset.

sd-scripts hard-codes SD1.5's UNet shape, so the demo model has a full-size UNet (random, fp16, 1.7 GB)
with a tiny text encoder, VAE and byte-level tokenizer; it is built once into the user cache by
`sdscripts/tinymodel.py` running in sd-scripts' own venv, and reused."""

from __future__ import annotations

from pathlib import Path

from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.fsutil import write_text_atomic
from kohya_wrap.launch.process import run
from kohya_wrap.paths import SPEC_FILENAME, ProjectLayout, user_cache_dir
from kohya_wrap.sdscripts.locate import SdScripts

TINYMODEL = Path(__file__).resolve().parent / "sdscripts" / "tinymodel.py"
MARKER = ".kohya-wrap-demo"
MODEL_MARKER = ".tiny-sd15-complete"  # written last by tinymodel.py

SPEC = """\
# The kohya-wrap demo: a tiny random-weight SD1.5 model and 8 synthetic images, trained on the CPU.
# Made by `kohya-wrap demo`; the same project works with `kohya-wrap check / plan / run`.
name = "kwdemo"

[model]
base = "{model}"

[[concepts]]
token = "kwdemo"
class = "shape"
repeats = 1

[dataset]
resolution = 64
enable_bucket = false
caption_extension = ".txt"

[training]
mixed_precision = "no"
network_dim = 4
network_alpha = 1
learning_rate = 1e-4
max_train_steps = {steps}
save_every_n_steps = {save_every}
train_batch_size = 1
sdpa = true
cache_latents = true
max_data_loader_n_workers = 0
seed = 1
tokenizer_cache_dir = "{tokenizers}"
"""

SHAPES = [("red", (220, 40, 40)), ("green", (40, 180, 60)), ("blue", (40, 80, 220)), ("yellow", (230, 200, 40))]


def demo_model_dirs() -> tuple[Path, Path]:
    base = user_cache_dir() / "demo"
    return base / "tiny-sd15", base / "tokenizers"


def ensure_demo_model(sd: SdScripts, report) -> tuple[Path, Path]:
    model, tokenizers = demo_model_dirs()
    if (model / MODEL_MARKER).is_file() and (tokenizers / "openai_clip-vit-large-patch14").is_dir():
        report(f"demo model: {model} (cached)")
        return model, tokenizers
    report(f"building the demo model once (~30 s, 1.7 GB) into {model} …")
    result = run([str(sd.python), str(TINYMODEL), str(model), "--tokenizer-cache", str(tokenizers)])
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        raise KohyaWrapError(
            f"building the demo model with {sd.python} failed: {tail}",
            "check sd-scripts' venv (`kohya-wrap vendor status`)",
        )
    report(f"demo model: {model}")
    return model, tokenizers


def write_demo_project(root: Path, model: Path, tokenizers: Path, steps: int) -> None:
    """The project folder, owned by the demo (marked), with 8 captioned 64×64 images of shapes."""
    from PIL import Image, ImageDraw

    if root.exists() and any(root.iterdir()) and not (root / MARKER).exists():
        raise KohyaWrapError(f"{root}: exists and is not a demo project", "choose an empty or new folder for the demo")
    folder = root / "image" / "1_kwdemo shape"
    folder.mkdir(parents=True, exist_ok=True)
    for part in ProjectLayout.at(root).tree():
        part.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("made by kohya-wrap demo\n", encoding="utf-8")
    for index in range(8):
        name, color = SHAPES[index % len(SHAPES)]
        kind = "circle" if index % 2 == 0 else "square"
        image = Image.new("RGB", (64, 64), (245, 245, 240))
        draw = ImageDraw.Draw(image)
        box = (12 + index, 12 + index // 2, 50 - index // 2, 50)
        (draw.ellipse if kind == "circle" else draw.rectangle)(box, fill=color)
        image.save(folder / f"shape{index}.png")
        (folder / f"shape{index}.txt").write_text(f"kwdemo shape, {name} {kind}, plain background", encoding="utf-8")
    spec = SPEC.format(
        model=model.as_posix(), tokenizers=tokenizers.as_posix(), steps=steps, save_every=max(1, steps // 2)
    )
    write_text_atomic(root / SPEC_FILENAME, spec)
