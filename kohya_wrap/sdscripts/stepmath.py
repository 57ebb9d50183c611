"""sd-scripts' own arithmetic, reproduced: buckets, batches per epoch, steps, epochs, checkpoints.

Pure functions over image sizes and numbers; each mirrors a named piece of sd-scripts v0.10.1
(library/model_util.make_bucket_resolutions, library/train_util.BucketManager.select_bucket,
DreamBoothDataset's reg-image balancing, train_network.py's step and epoch formulas) so `plan`
reports exactly the "total optimization steps" sd-scripts will print.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from kohya_wrap.sdscripts import naming


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
    Images never reached get 0. Worked out arithmetically (sd-scripts loops once per added repeat), so it
    costs one pass over the reg images whatever the counts."""
    used = [[0] * len(s.sizes) for s in reg_subsets]
    images = [(s_index, i_index) for s_index, s in enumerate(reg_subsets) for i_index in range(len(s.sizes))]
    if not images or train_images_x_repeats <= 0:
        return used
    n = 0
    for s_index, i_index in images:  # the first loop: each image with its subset's repeats, in order
        used[s_index][i_index] = reg_subsets[s_index].repeats
        n += reg_subsets[s_index].repeats
        if n >= train_images_x_repeats:
            return used
    rounds, rest = divmod(train_images_x_repeats - n, len(images))  # then one repeat each, round-robin
    for index, (s_index, i_index) in enumerate(images):
        used[s_index][i_index] += rounds + (1 if index < rest else 0)
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
    epochs = -(-max_train_steps // steps_per_epoch) if steps_per_epoch else 0  # math.ceil(a / b), exact for any size
    return EpochMath(train_x, reg_x, buckets, batches_per_process, steps_per_epoch, max_train_steps, epochs)


@dataclass(frozen=True, eq=False)
class CheckpointSchedule(Sequence[str]):
    """The files sd-scripts writes to output_dir, in order — step saves and epoch saves (not the last
    epoch) by the step they are written at, a step save first where both fall on one step, then the
    final `<name><ext>` — held as two arithmetic progressions and a count, never as a list: a name, its
    length and its first and last names cost the same for 10 checkpoints as for 100 million.

    train_network.py saves `-step%08d` when global_step % save_every_n_steps == 0 (the last step too),
    and `-%06d` after each epoch e with e % save_every_n_epochs == 0 and e < the number of epochs."""

    name: str
    extension: str
    step_every: int  # steps between step saves (0: none)
    step_saves: int
    epoch_every: int  # epochs between epoch saves (0: none)
    epoch_saves: int
    steps_per_epoch: int

    def __len__(self) -> int:
        return self.step_saves + self.epoch_saves + 1

    def _saved_by(self, step: int) -> int:
        """How many saves (step and epoch ones) are written at or before `step`."""
        count = min(step // self.step_every, self.step_saves) if self.step_every else 0
        epoch_stride = self.epoch_every * self.steps_per_epoch
        return count + (min(step // epoch_stride, self.epoch_saves) if epoch_stride else 0)

    def _step_name(self, k: int) -> str:  # the k-th step save, from 1
        return naming.step_checkpoint(self.name, k * self.step_every, self.extension)

    def _epoch_name(self, k: int) -> str:  # the k-th epoch save, from 1
        return naming.epoch_checkpoint(self.name, k * self.epoch_every, self.extension)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        size = len(self)
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError("checkpoint index out of range")
        if index == size - 1:
            return naming.final_checkpoint(self.name, self.extension)
        if not self.epoch_saves:
            return self._step_name(index + 1)
        if not self.step_saves:
            return self._epoch_name(index + 1)
        # the first step at which more than `index` saves are written: a binary search, O(log steps)
        low, high = (
            1,
            max(self.step_saves * self.step_every, self.epoch_saves * self.epoch_every * self.steps_per_epoch),
        )
        while low < high:
            middle = (low + high) // 2
            if self._saved_by(middle) > index:
                high = middle
            else:
                low = middle + 1
        step, rank = low, index - self._saved_by(low - 1)
        if rank == 0 and step % self.step_every == 0 and step // self.step_every <= self.step_saves:
            return self._step_name(step // self.step_every)
        return self._epoch_name(step // (self.epoch_every * self.steps_per_epoch))

    def __iter__(self) -> Iterator[str]:
        steps = iter(range(1, self.step_saves + 1))
        epochs = iter(range(1, self.epoch_saves + 1))
        next_step, next_epoch = next(steps, None), next(epochs, None)
        while next_step is not None or next_epoch is not None:
            if next_epoch is None or (
                next_step is not None
                and next_step * self.step_every <= next_epoch * self.epoch_every * self.steps_per_epoch
            ):
                yield self._step_name(next_step)  # type: ignore[arg-type]
                next_step = next(steps, None)
            else:
                yield self._epoch_name(next_epoch)
                next_epoch = next(epochs, None)
        yield naming.final_checkpoint(self.name, self.extension)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def shown(self, head: int, tail: int) -> tuple[list[str], list[str]]:
        """Every name when there are at most head + tail + 1, as ([all], []); else the first `head` and
        the last `tail` (what is left out lies between them)."""
        if len(self) <= head + tail + 1:
            return list(self), []
        return self[:head], self[len(self) - tail :]


def checkpoint_names(
    output_name: str,
    extension: str,
    total_steps: int,
    epochs: int,
    steps_per_epoch: int,
    save_every_n_epochs: int | None,
    save_every_n_steps: int | None,
) -> CheckpointSchedule:
    """Files sd-scripts writes to output_dir, in order: step saves, epoch saves (not the last epoch),
    then the final `<name><ext>` — as a CheckpointSchedule, whose size costs nothing."""
    step_every = save_every_n_steps or 0
    epoch_every = (save_every_n_epochs or 0) if steps_per_epoch else 0
    return CheckpointSchedule(
        name=output_name,
        extension=extension,
        step_every=step_every,
        step_saves=max(0, total_steps) // step_every if step_every else 0,
        epoch_every=epoch_every,
        epoch_saves=max(0, epochs - 1) // epoch_every if epoch_every else 0,
        steps_per_epoch=steps_per_epoch,
    )
