"""Pure: the learning rate sd-scripts' scheduler gives at a step, for the dashboard and metrics.csv.

sd-scripts never prints the learning rate (its step bar shows only the loss), but for the schedulers it
builds from transformers' `get_scheduler` the rate is a closed formula of the step: those formulas are
here (checked against transformers itself in tests/test_lrsched.py). Anything else — a custom
`lr_scheduler_type`, adafactor, piecewise, warmup-stable-decay — is "not known" rather than guessed.
"""

from __future__ import annotations

import math
from typing import Callable


def lr_factor(
    name: str, step: int, warmup: int, total: int, num_cycles: float | None, power: float | None, base_lr: float
) -> float | None:
    """The multiplier of `base_lr` after `step` scheduler steps; None for schedulers not covered."""
    if name == "constant":
        return 1.0
    if step < warmup:
        return step / max(1, warmup)
    if name == "constant_with_warmup":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if name == "linear":
        return max(0.0, (total - step) / max(1, total - warmup))
    if name == "cosine":
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))
    if name == "cosine_with_restarts":
        if progress >= 1.0:
            return 0.0
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((float(num_cycles or 1) * progress) % 1.0))))
    if name == "polynomial":
        lr_end = 1e-7
        if step > total:
            return lr_end / base_lr
        remaining = 1 - (step - warmup) / max(1, total - warmup)
        return ((base_lr - lr_end) * remaining ** float(power or 1.0) + lr_end) / base_lr
    return None


def schedule(
    args: dict, total_steps: int, num_processes: int, default: Callable[[str], object]
) -> Callable[[int], float | None] | None:
    """step → learning rate of the U-Net (or the only) parameter group, from rendered sd-scripts args;
    None when the rate is not known."""
    get = lambda key: args[key] if args.get(key) is not None else default(key)  # noqa: E731
    if args.get("lr_scheduler_type") or args.get("lr_scheduler_args"):
        return None
    optimizer = str(get("optimizer_type") or "").lower()
    if "schedulefree" in optimizer or optimizer.startswith(("prodigy", "dadapt")) or optimizer == "adafactor":
        return None  # adaptive rates: the scheduled number is not the step size
    base = get("unet_lr") or get("learning_rate")
    name = str(get("lr_scheduler") or "constant")
    if not base or name not in (
        "constant",
        "constant_with_warmup",
        "linear",
        "cosine",
        "cosine_with_restarts",
        "polynomial",
    ):
        return None
    base = float(base)
    total = total_steps * num_processes
    warmup = get("lr_warmup_steps") or 0
    warmup = int(warmup * total) if isinstance(warmup, float) else int(warmup)
    if name == "constant" and warmup:
        return None  # sd-scripts refuses this combination at start-up
    cycles, power = get("lr_scheduler_num_cycles"), get("lr_scheduler_power")

    def at(step: int) -> float | None:  # as sd-scripts logs lr/unet at a step: after that step's scheduler
        factor = lr_factor(
            name, step * num_processes, warmup, total, cycles, power, base
        )  # accelerate steps it once per process
        return None if factor is None else base * factor

    return at
