"""The model families kohya-wrap trains, and what sd-scripts does differently for each: the training
script, the default network module, the bucket step its scripts insist on, the resolution a spec
should start from, and the script that renders its images for `grid`. One table, so a family is
described in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Family:
    name: str
    script: str  # the network-training script of sd-scripts
    network_module: str  # the LoRA module sd-scripts uses for it by default
    bucket_step_multiple: int  # sd-scripts asserts bucket_reso_steps % N == 0 at start-up (verify_bucket_reso_steps)
    resolution: int  # the native training resolution: what `check` suggests when none is set
    # how sd-scripts renders images of it with a LoRA (samples aside, which the training script makes):
    # the script and its family flag; None where sd-scripts has no script that takes gen_img.py's
    # prompt lines (FLUX: flux_minimal_inference.py renders one prompt, without per-prompt LoRA weights)
    inference: tuple[str, ...] | None
    known: bool = True  # False: not in the table, inferred from its name (`family_named`)


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family("sd15", "train_network.py", "networks.lora", 64, 512, ("gen_img.py",)),
        Family("sd2", "train_network.py", "networks.lora", 64, 512, ("gen_img.py", "--v2")),
        Family("sdxl", "sdxl_train_network.py", "networks.lora", 32, 1024, ("gen_img.py", "--sdxl")),
        Family("flux", "flux_train_network.py", "networks.lora_flux", 32, 1024, None),
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
    with the strictest bucket step (64, which every script's multiple divides) and no grid renderer.
    Whether the installed sd-scripts has that script is checked against its option schema (spec/load.py).
    None for a name that cannot be one."""
    if name in FAMILIES:
        return FAMILIES[name]
    if not FAMILY_NAME.fullmatch(name):
        return None
    return Family(name, f"{name}_train_network.py", f"networks.lora_{name}", 64, 1024, None, known=False)


def family_of_script(script: str) -> str:
    """The family name a network-training script's file name gives (sd3_train_network.py → sd3)."""
    return script.removesuffix("train_network.py").rstrip("_") or "sd15"
