"""`kohya-wrap demo`: the whole path offline, on a tiny random-weight model and a synthetic dataset.

sd-scripts hard-codes SD1.5's UNet shape, so the demo model has a full-size UNet (random, fp16, 1.7 GB)
with a tiny text encoder, VAE and byte-level tokenizer; it is built once into the user cache by
`sdscripts/tinymodel.py` running in sd-scripts' own venv, and reused. `--family sdxl` does the same
with SDXL's UNet (2.6 B parameters, 5.1 GB in fp16) for sdxl_train_network.py, trained in bf16 with
cached latents and text-encoder outputs (U-Net only), so it fits a CPU machine's memory."""

from __future__ import annotations

from pathlib import Path

from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.fsutil import write_text_atomic
from kohya_wrap.launch.process import run
from kohya_wrap.paths import SPEC_FILENAME, ProjectLayout, user_cache_dir
from kohya_wrap.sdscripts.locate import SdScripts
from kohya_wrap.sdscripts.tinymodel import MARKERS, TOKENIZER_CACHE_NAMES

TINYMODEL = Path(__file__).resolve().parent / "sdscripts" / "tinymodel.py"
MARKER = ".kohya-wrap-demo"
FAMILIES = tuple(MARKERS)  # the families the demo builds a model for: sd15, sdxl
# what the model takes to build once on a 2-core CPU (docs/BENCHMARKS.md)
BUILD_COST = {"sd15": "~30 s, 1.7 GB", "sdxl": "~40 s, 5.3 GB"}

SPEC = """\
# The kohya-wrap demo: a tiny random-weight {title} model and 8 synthetic images, trained on the CPU.
# Made by `kohya-wrap demo`; the same project works with `kohya-wrap check / plan / run`.
name = "kwdemo"

[model]
base = "{model}"
family = "{family}"

[[concepts]]
token = "kwdemo"
class = "shape"
repeats = 1

[dataset]
resolution = 64
enable_bucket = false
caption_extension = ".txt"

[training]
{precision}
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

# SD1.5 trains in fp32; SDXL's 2.6 B-parameter UNet is loaded straight into bfloat16 (full_bf16: 6 GiB
# peak RSS instead of 11 in fp32, and ~10x faster a step on a CPU with bf16 instructions) and trains the
# UNet only, on cached text-encoder outputs. No gradient checkpointing: at 64 px it saves no memory and
# made each step 4x slower.
PRECISION = {
    "sd15": 'mixed_precision = "no"',
    "sdxl": 'mixed_precision = "bf16"\nfull_bf16 = true\nnetwork_train_unet_only = true\n'
    "cache_text_encoder_outputs = true",
}
TITLES = {"sd15": "SD1.5", "sdxl": "SDXL"}

SHAPES = [("red", (220, 40, 40)), ("green", (40, 180, 60)), ("blue", (40, 80, 220)), ("yellow", (230, 200, 40))]


def demo_model_dirs(family: str = "sd15") -> tuple[Path, Path]:
    base = user_cache_dir() / "demo"
    return base / f"tiny-{family}", base / "tokenizers"


def ensure_demo_model(sd: SdScripts, report, family: str = "sd15") -> tuple[Path, Path]:
    model, tokenizers = demo_model_dirs(family)
    if (model / MARKERS[family]).is_file() and all((tokenizers / n).is_dir() for n in TOKENIZER_CACHE_NAMES[family]):
        report(f"demo model: {model} (cached)")
        return model, tokenizers
    report(f"building the {TITLES[family]} demo model once ({BUILD_COST[family]}) into {model} …")
    command = [str(sd.python), str(TINYMODEL), str(model), "--tokenizer-cache", str(tokenizers), "--family", family]
    result = run(command)
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        raise KohyaWrapError(
            f"building the demo model with {sd.python} failed: {tail}",
            "check sd-scripts' venv (`kohya-wrap vendor status`)",
        )
    report(f"demo model: {model}")
    return model, tokenizers


def write_demo_project(root: Path, model: Path, tokenizers: Path, steps: int, family: str = "sd15") -> None:
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
        title=TITLES[family],
        model=model.as_posix(),
        family=family,
        precision=PRECISION[family],
        tokenizers=tokenizers.as_posix(),
        steps=steps,
        save_every=max(1, steps // 2),
    )
    write_text_atomic(root / SPEC_FILENAME, spec)
