"""sd-scripts' own arithmetic, reproduced: buckets, batches per epoch, steps, epochs, checkpoints.

Pure functions over image sizes and numbers; each mirrors a named piece of sd-scripts v0.10.1
(library/model_util.make_bucket_resolutions, library/train_util.BucketManager.select_bucket,
DreamBoothDataset's reg-image balancing, train_network.py's step and epoch formulas) so `plan`
reports exactly the "total optimization steps" sd-scripts will print.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class BucketSettings:
    resolution: tuple[int, int]
    enable_bucket: bool
    min_reso: int
    max_reso: int
    reso_steps: int
    no_upscale: bool


def make_bucket_resolutions(
    max_reso: tuple[int, int], min_size: int, max_size: int, divisible: int
) -> list[tuple[int, int]]:
    max_width, max_height = max_reso
    max_area = max_width * max_height
    resos = set()
    width = int(math.sqrt(max_area) // divisible) * divisible
    resos.add((width, width))
    width = min_size
    while width <= max_size:
        height = min(max_size, int((max_area // width) // divisible) * divisible)
        if height >= min_size:
            resos.add((width, height))
            resos.add((height, width))
        width += divisible
    return sorted(resos)


class BucketError(ValueError):
    def __init__(self, width: int, height: int) -> None:
        super().__init__(f"no bucket for {width}×{height}")
        self.size = (width, height)


class BucketSelector:
    """Assigns an image size to its bucket resolution exactly as sd-scripts' BucketManager does."""

    def __init__(self, settings: BucketSettings) -> None:
        self.settings = settings
        width, height = settings.resolution
        self.max_area = width * height
        if not settings.enable_bucket:
            self.predefined = [settings.resolution]
        elif not settings.no_upscale:
            self.predefined = make_bucket_resolutions(
                settings.resolution, settings.min_reso, settings.max_reso, settings.reso_steps
            )
        else:
            self.predefined = []
        self.predefined_set = set(self.predefined)
        self.aspect_ratios = [w / h for w, h in self.predefined]

    def _round_to_steps(self, x: float) -> int:
        value = int(x + 0.5)
        return value - value % self.settings.reso_steps

    def select(self, width: int, height: int) -> tuple[int, int]:
        """The bucket of an image; raises BucketError where sd-scripts would divide by zero or make a
        zero-pixel bucket (an image far from square at a resolution close to bucket_reso_steps)."""
        try:
            bucket = self._select(width, height)
        except ZeroDivisionError:
            raise BucketError(width, height) from None
        if 0 in bucket:
            raise BucketError(width, height)
        return bucket

    def _select(self, width: int, height: int) -> tuple[int, int]:
        aspect_ratio = width / height
        if not (self.settings.enable_bucket and self.settings.no_upscale):
            if (width, height) in self.predefined_set:
                return (width, height)
            errors = [abs(ar - aspect_ratio) for ar in self.aspect_ratios]
            return self.predefined[errors.index(min(errors))]  # first minimum, like numpy's argmin
        if width * height > self.max_area:
            resized_width = math.sqrt(self.max_area * aspect_ratio)
            resized_height = self.max_area / resized_width
            b_width_rounded = self._round_to_steps(resized_width)
            b_height_in_wr = self._round_to_steps(b_width_rounded / aspect_ratio)
            ar_width_rounded = b_width_rounded / b_height_in_wr
            b_height_rounded = self._round_to_steps(resized_height)
            b_width_in_hr = self._round_to_steps(b_height_rounded * aspect_ratio)
            ar_height_rounded = b_width_in_hr / b_height_rounded
            if abs(ar_width_rounded - aspect_ratio) < abs(ar_height_rounded - aspect_ratio):
                resized = (b_width_rounded, int(b_width_rounded / aspect_ratio + 0.5))
            else:
                resized = (int(b_height_rounded * aspect_ratio + 0.5), b_height_rounded)
        else:
            resized = (width, height)
        steps = self.settings.reso_steps
        return (resized[0] - resized[0] % steps, resized[1] - resized[1] % steps)


@dataclass(frozen=True)
class SubsetImages:
    """One concept folder as sd-scripts registers it: image sizes (sorted by path) and repeats."""

    sizes: tuple[tuple[int, int], ...]
    repeats: int
    is_reg: bool


def balanced_reg_repeats(train_images_x_repeats: int, reg_subsets: Sequence[SubsetImages]) -> list[list[int]]:
    """Per reg image, how often it is used per epoch: sd-scripts registers reg images in order with their
    repeats until they match the training images × repeats, then adds one repeat at a time round-robin.
    Images never reached get 0."""
    used = [[0] * len(s.sizes) for s in reg_subsets]
    if not any(s.sizes for s in reg_subsets):
        return used
    n, first_loop = 0, True
    while n < train_images_x_repeats:
        for s_index, subset in enumerate(reg_subsets):
            stop = False
            for i_index in range(len(subset.sizes)):
                if first_loop:
                    used[s_index][i_index] = subset.repeats
                    n += subset.repeats
                else:
                    used[s_index][i_index] += 1
                    n += 1
                if n >= train_images_x_repeats:
                    stop = True
                    break
            if stop:
                break
        first_loop = False
    return used


@dataclass(frozen=True)
class BucketCount:
    resolution: tuple[int, int]
    images: int  # distinct images
    samples: int  # images × repeats


@dataclass(frozen=True)
class EpochMath:
    train_images_x_repeats: int
    reg_images_x_repeats: int  # as sd-scripts prints "num reg images" (before balancing)
    buckets: tuple[BucketCount, ...]
    batches_per_epoch: int  # as sd-scripts prints it (per process)
    steps_per_epoch: int
    total_steps: int
    epochs: int


def epoch_math(
    subsets: Sequence[SubsetImages],
    bucket: BucketSettings,
    batch_size: int,
    gradient_accumulation_steps: int,
    num_processes: int,
    max_train_epochs: int | None,
    max_train_steps: int,
) -> EpochMath:
    train_x = sum(len(s.sizes) * s.repeats for s in subsets if not s.is_reg)
    reg_subsets = [s for s in subsets if s.is_reg]
    reg_x = sum(len(s.sizes) * s.repeats for s in reg_subsets)
    selector = BucketSelector(bucket)
    per_bucket: dict[tuple[int, int], list[int]] = {}

    def add(size: tuple[int, int], times: int) -> None:
        if times > 0:
            entry = per_bucket.setdefault(selector.select(*size), [0, 0])
            entry[0] += 1
            entry[1] += times

    for subset in subsets:
        if not subset.is_reg:
            for size in subset.sizes:
                add(size, subset.repeats)
    if reg_x:
        for subset, times in zip(reg_subsets, balanced_reg_repeats(train_x, reg_subsets), strict=True):
            for size, count in zip(subset.sizes, times, strict=True):
                add(size, count)

    buckets = tuple(BucketCount(reso, images, samples) for reso, (images, samples) in sorted(per_bucket.items()))
    dataset_batches = sum(math.ceil(b.samples / batch_size) for b in buckets)
    if max_train_epochs is not None:
        max_train_steps = max_train_epochs * math.ceil(dataset_batches / num_processes / gradient_accumulation_steps)
    batches_per_process = math.ceil(dataset_batches / num_processes)
    steps_per_epoch = math.ceil(batches_per_process / gradient_accumulation_steps)
    epochs = math.ceil(max_train_steps / steps_per_epoch) if steps_per_epoch else 0
    return EpochMath(train_x, reg_x, buckets, batches_per_process, steps_per_epoch, max_train_steps, epochs)


def checkpoint_names(
    output_name: str,
    extension: str,
    total_steps: int,
    epochs: int,
    steps_per_epoch: int,
    save_every_n_epochs: int | None,
    save_every_n_steps: int | None,
) -> list[str]:
    """Files sd-scripts writes to output_dir, in order: step saves, epoch saves (not the last epoch),
    then the final `<name><ext>`."""
    saves: list[tuple[int, str]] = []
    if save_every_n_steps:
        saves += [
            (step, f"{output_name}-step{step:08d}{extension}")
            for step in range(save_every_n_steps, total_steps + 1, save_every_n_steps)
        ]
    if save_every_n_epochs:
        for epoch in range(1, epochs):
            if epoch % save_every_n_epochs == 0:
                saves.append((min(epoch * steps_per_epoch, total_steps), f"{output_name}-{epoch:06d}{extension}"))
    saves.sort(key=lambda item: item[0])
    return [name for _, name in saves] + [f"{output_name}{extension}"]
