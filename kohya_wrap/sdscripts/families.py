"""The model families kohya-wrap trains, and what sd-scripts does differently for each: the training
script, the default network module, the bucket step its scripts insist on, the resolution a spec
should start from, and the script that renders its images for `grid` and the arguments it takes. One
table, so a family is described in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Inference:
    """The script that renders a family's images with a LoRA, and the arguments it takes: "gen_img" —
    gen_img.py's prompt lines, many cells per process, with the family's `flags` (--v2, --sdxl); else one
    prompt per process in that <family>_minimal_inference.py's own argument names (grid/minimal.py):
    "flux", "sd3", "lumina", "musubi" (--dit, --save_path, --lora_weight: HunyuanImage, Anima), or
    "inferred" for a family not in the table: musubi's if the script's parser has --dit."""

    script: str
    style: str
    flags: tuple[str, ...] = ()


def _gen_img(*flags: str) -> Inference:
    return Inference("gen_img.py", "gen_img", flags)


def _minimal(family: str, style: str) -> Inference:
    return Inference(f"{family}_minimal_inference.py", style)


@dataclass(frozen=True)
class Family:
    name: str
    script: str  # the network-training script of sd-scripts
    network_module: str  # the LoRA module sd-scripts uses for it by default
    bucket_step_multiple: int  # sd-scripts asserts bucket_reso_steps % N == 0 at start-up (verify_bucket_reso_steps)
    resolution: int  # the native training resolution: what `check` suggests when none is set
    # how sd-scripts renders images of it with a LoRA for `grid` (samples aside, which the training script makes)
    inference: Inference | None
    title: str = ""  # how messages name it
    # the model files it needs besides the base, as the spec names them (model.clip_l / t5xxl / ae / vae,
    # else a [training] key of its script), with what each is; from sd-scripts' docs/<script>.md
    required: tuple[tuple[str, str], ...] = ()
    # the [model] file fields beyond base and vae it takes (clip_l, t5xxl, ae); an inferred family: all
    parts: tuple[str, ...] = ()
    known: bool = True  # False: not in the table, inferred from its name (`family_named`)


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family("sd15", "train_network.py", "networks.lora", 64, 512, _gen_img(), "SD 1.x"),
        Family("sd2", "train_network.py", "networks.lora", 64, 512, _gen_img("--v2"), "SD 2.x"),
        Family("sdxl", "sdxl_train_network.py", "networks.lora", 32, 1024, _gen_img("--sdxl"), "SDXL"),
        Family(
            "flux",
            "flux_train_network.py",
            "networks.lora_flux",
            32,
            1024,
            _minimal("flux", "flux"),
            "FLUX",
            (("clip_l", "the CLIP-L text encoder"), ("t5xxl", "the T5-XXL text encoder"), ("ae", "the autoencoder")),
            ("clip_l", "t5xxl", "ae"),
        ),
        # docs/sd3_train_network.md: the text encoders may be in a single-file base, so none is required
        Family(
            "sd3",
            "sd3_train_network.py",
            "networks.lora_sd3",
            32,
            1024,
            _minimal("sd3", "sd3"),
            "SD3",
            (),
            ("clip_l", "t5xxl"),
        ),
        Family(  # docs/lumina_train_network.md: --gemma2 and --ae **required**
            "lumina",
            "lumina_train_network.py",
            "networks.lora_lumina",
            32,
            1024,
            _minimal("lumina", "lumina"),
            "Lumina",
            (("gemma2", "the Gemma2 text encoder"), ("ae", "the autoencoder")),
            ("ae",),
        ),
        Family(  # docs/hunyuan_image_train_network.md: --text_encoder, --byt5, --vae [Required]
            "hunyuan_image",
            "hunyuan_image_train_network.py",
            "networks.lora_hunyuan_image",
            32,
            1024,
            _minimal("hunyuan_image", "musubi"),
            "HunyuanImage",
            (("text_encoder", "the Qwen2.5-VL text encoder"), ("byt5", "the byT5 text encoder"), ("vae", "the VAE")),
        ),
    )
}


def scripts_without_family(scripts: Iterable[str]) -> list[str]:
    """The network-training scripts an sd-scripts checkout has (its option schema's scripts) that no
    family here trains with: a family sd-scripts added that `model.family` cannot name yet."""
    known = {family.script for family in FAMILIES.values()}
    return sorted(script for script in scripts if script not in known)


FAMILY_NAME = re.compile(r"[a-z][a-z0-9_]{0,40}")  # sd-scripts' own prefixes: sd3, lumina, hunyuan_image, anima


def family_named(name: str) -> Family | None:
    """The family `name`: the table's, or — for a family sd-scripts added that the table does not have
    yet — one inferred from sd-scripts' naming (`<name>_train_network.py`, `networks/lora_<name>.py`),
    with the strictest bucket step (64, which every script's multiple divides), rendered for `grid` by its
    `<name>_minimal_inference.py` where that takes the HunyuanImage/Anima-style arguments.
    Whether the installed sd-scripts has that script is checked against its option schema (spec/load.py).
    None for a name that cannot be one."""
    if name in FAMILIES:
        return FAMILIES[name]
    if not FAMILY_NAME.fullmatch(name):
        return None
    return Family(
        name,
        f"{name}_train_network.py",
        f"networks.lora_{name}",
        64,
        1024,
        _minimal(name, "inferred"),
        name,
        parts=("clip_l", "t5xxl", "ae"),
        known=False,
    )


def family_of_script(script: str) -> str:
    """The family name a network-training script's file name gives (sd3_train_network.py → sd3)."""
    return script.removesuffix("train_network.py").rstrip("_") or "sd15"
