"""The model families kohya-wrap trains, and what sd-scripts does differently for each: the training
script, the default network module, the bucket step its scripts insist on, and the resolution a spec
should start from. One table, so a family is described in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Family:
    name: str
    script: str  # the network-training script of sd-scripts
    network_module: str  # the LoRA module sd-scripts uses for it by default
    bucket_step_multiple: int  # sd-scripts asserts bucket_reso_steps % N == 0 at start-up (verify_bucket_reso_steps)
    resolution: int  # the native training resolution: what `check` suggests when none is set


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family("sd15", "train_network.py", "networks.lora", 64, 512),
        Family("sd2", "train_network.py", "networks.lora", 64, 512),
        Family("sdxl", "sdxl_train_network.py", "networks.lora", 32, 1024),
        Family("flux", "flux_train_network.py", "networks.lora_flux", 32, 1024),
    )
}


def scripts_without_family(scripts: Iterable[str]) -> list[str]:
    """The network-training scripts an sd-scripts checkout has (its option schema's scripts) that no
    family here trains with: a family sd-scripts added that `model.family` cannot name yet."""
    known = {family.script for family in FAMILIES.values()}
    return sorted(script for script in scripts if script not in known)
