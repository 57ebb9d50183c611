"""sd-scripts' bucket and step arithmetic, reproduced (cross-checked against the real thing in
test_sdscripts_plan.py)."""

from kohya_wrap.sdscripts.stepmath import (
    BucketSelector,
    BucketSettings,
    SubsetImages,
    balanced_reg_repeats,
    checkpoint_names,
    epoch_math,
    make_bucket_resolutions,
)

SD15 = BucketSettings((512, 512), enable_bucket=True, min_reso=256, max_reso=1024, reso_steps=64, no_upscale=False)


def test_bucket_resolutions_for_512():
    resos = make_bucket_resolutions((512, 512), 256, 1024, 64)
    assert (512, 512) in resos and (256, 1024) in resos and (1024, 256) in resos
    assert resos == sorted(resos)
    assert all(w * h <= 512 * 512 and w % 64 == 0 and h % 64 == 0 for w, h in resos)


def test_select_nearest_aspect_ratio_with_upscale():
    selector = BucketSelector(SD15)
    assert selector.select(512, 512) == (512, 512)
    assert selector.select(100, 100) == (512, 512)  # small images are scaled up into the bucket
    assert selector.select(1600, 900) == (640, 384)
    assert selector.select(900, 1600) == (384, 640)


def test_select_without_upscale_keeps_small_images_small():
    selector = BucketSelector(BucketSettings((512, 512), True, 256, 1024, 64, no_upscale=True))
    assert selector.select(300, 200) == (256, 192)  # cropped down to multiples of 64
    assert selector.select(640, 480) == (512, 384)  # larger than 512²: scaled to the area, then rounded


def test_no_bucketing_is_one_bucket():
    selector = BucketSelector(BucketSettings((512, 768), False, 256, 1024, 64, False))
    assert {selector.select(*s) for s in [(10, 10), (4000, 3000), (512, 768)]} == {(512, 768)}


def test_reg_images_are_balanced_to_the_training_count():
    reg = [SubsetImages(((64, 64),) * 4, 1, True)]
    assert balanced_reg_repeats(10, reg) == [[3, 3, 2, 2]]
    assert balanced_reg_repeats(2, reg) == [[1, 1, 0, 0]]  # images never reached are unused
    assert balanced_reg_repeats(5, [SubsetImages(((64, 64),) * 2, 2, True), SubsetImages(((64, 64),), 1, True)]) == [
        [2, 2],
        [1],
    ]


def test_epoch_math_with_accumulation_and_processes():
    subsets = [SubsetImages(((512, 512),) * 10, 10, False)]
    fixed = BucketSettings((512, 512), False, 256, 1024, 64, False)
    math = epoch_math(
        subsets,
        fixed,
        batch_size=2,
        gradient_accumulation_steps=2,
        num_processes=2,
        max_train_epochs=3,
        max_train_steps=1600,
    )
    assert (
        math.train_images_x_repeats,
        math.batches_per_epoch,
        math.steps_per_epoch,
        math.total_steps,
        math.epochs,
    ) == (100, 25, 13, 39, 3)
    by_steps = epoch_math(subsets, fixed, 2, 1, 1, None, 120)
    assert (by_steps.steps_per_epoch, by_steps.total_steps, by_steps.epochs) == (50, 120, 3)


def test_batches_are_counted_per_bucket():
    subsets = [SubsetImages(((512, 512), (512, 512), (1600, 900)), 1, False)]
    math = epoch_math(
        subsets,
        SD15,
        batch_size=2,
        gradient_accumulation_steps=1,
        num_processes=1,
        max_train_epochs=1,
        max_train_steps=0,
    )
    assert [(b.resolution, b.samples) for b in math.buckets] == [((512, 512), 2), ((640, 384), 1)]
    assert math.batches_per_epoch == 2  # a partial batch per bucket


def test_checkpoint_names_follow_sd_scripts():
    names = checkpoint_names(
        "lora",
        ".safetensors",
        total_steps=100,
        epochs=10,
        steps_per_epoch=10,
        save_every_n_epochs=4,
        save_every_n_steps=None,
    )
    assert names == ["lora-000004.safetensors", "lora-000008.safetensors", "lora.safetensors"]
    steps = checkpoint_names("lora", ".safetensors", 10, 1, 10, None, 5)
    assert steps == ["lora-step00000005.safetensors", "lora-step00000010.safetensors", "lora.safetensors"]


def test_images_sd_scripts_cannot_bucket_raise():
    import pytest

    from kohya_wrap.sdscripts.stepmath import BucketError

    selector = BucketSelector(BucketSettings((64, 64), True, 64, 128, 64, no_upscale=True))
    assert selector.select(64, 64) == (64, 64)
    with pytest.raises(BucketError):
        selector.select(64, 96)  # scaled to 52×78, rounded down to a 0-pixel width: sd-scripts divides by zero
