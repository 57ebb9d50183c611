"""Issue 14, step math: run lengths no run can have are refused (exit 2, the field and the fix), and the
step math is arithmetic — `plan` answers at once whatever the step count, never building a list of every
step or checkpoint.

The CLI cases run `kohya-wrap` in a child process with a memory cap and a generous timeout, so a
regression fails (MemoryError, or the timeout) instead of hanging the suite or swapping the machine.
Timings are in the report of issue 14, not asserted here.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import make_images
from kohya_wrap.sdscripts.naming import MAX_EPOCHS, MAX_STEPS, SAMPLE_FILE, renumbered
from kohya_wrap.sdscripts.stepmath import CheckpointSchedule, SubsetImages, balanced_reg_repeats, checkpoint_names

TIMEOUT_S = 20  # a plan takes well under a second; this only turns a hang into a failure
MEMORY_CAP = 2 * 1024**3  # the old code needed 5–24 GB here; kohya-wrap itself needs a fraction of this


@dataclass
class Ran:
    code: int
    out: str
    err: str


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def kohya_wrap(*args: str | os.PathLike) -> Ran:
    """`python -m kohya_wrap ARGS` in its own process group, killed (with anything it started) at TIMEOUT_S."""
    child = subprocess.Popen(
        [sys.executable, "-m", "kohya_wrap", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_cap_memory,
    )
    try:
        out, err = child.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        pytest.fail(f"kohya-wrap {' '.join(map(str, args))} did not answer within {TIMEOUT_S} s")
    return Ran(child.returncode, out, err)


@contextmanager
def bounded(seconds: int = TIMEOUT_S, memory: int = 1024**3) -> Iterator[None]:
    """In this process: at most `memory` more bytes of address space (MemoryError past it) and `seconds`
    (then the test fails), so an O(steps) regression of an in-process call fails instead of hanging."""

    def timed_out(signum, frame):
        raise TimeoutError(f"did not return within {seconds} s")

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    in_use = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    cap = in_use + memory if hard == resource.RLIM_INFINITY else min(hard, in_use + memory)
    previous = signal.signal(signal.SIGALRM, timed_out)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def sets(*pairs: str) -> list[str]:
    return [a for pair in pairs for a in ("--set", pair)]


# ------------------------------------------------------------------ run lengths no run can have: refused


@pytest.mark.parametrize(
    "overrides, field, most",
    [
        (("training.max_train_steps=1000000000000", "training.save_every_n_steps=1"), "max_train_steps", "99,999,999"),
        ((f"training.max_train_epochs={2**62}",), "max_train_epochs", "999,999"),
        (("training.max_train_epochs=50000000",), "max_train_epochs", "999,999"),
        ((f"training.max_train_steps={10**30}",), "max_train_steps", "99,999,999"),
        (("training.save_every_n_steps=100000000",), "save_every_n_steps", "99,999,999"),
        (("training.save_every_n_epochs=1000000",), "save_every_n_epochs", "999,999"),
    ],
    ids=[
        "steps-1e12-save-every-step",
        "epochs-2**62",
        "epochs-50M",
        "steps-1e30",
        "save-every-1e8-steps",
        "epochs-1e6",
    ],
)
def test_plan_refuses_run_lengths_no_run_can_have(project, overrides, field, most):
    root = project()
    result = kohya_wrap("plan", root, *sets(*overrides))
    assert result.code == 2, result.err
    line = result.err.strip().splitlines()[-1]
    assert line.startswith(f"  training.{field}: ") and f"at most {most}" in line, result.err
    assert "Traceback" not in result.err
    assert not (root / "config" / "train.toml").exists()  # refused before anything is rendered


def test_the_largest_lengths_are_accepted():
    from kohya_wrap.spec.models import TrainingSpec

    for field, most in [
        ("max_train_steps", MAX_STEPS),
        ("save_every_n_steps", MAX_STEPS),
        ("max_train_epochs", MAX_EPOCHS),
        ("save_every_n_epochs", MAX_EPOCHS),
    ]:
        assert getattr(TrainingSpec.model_validate({field: most}), field) == most
        with pytest.raises(ValueError, match=f"at most {most:,}"):
            TrainingSpec.model_validate({field: most + 1})


def test_steps_worked_out_from_epochs_are_bounded_too(project):
    root = project(sizes=[(512, 512)] * 20)  # 200 images × repeats, batch 1: 200 steps per epoch
    result = kohya_wrap("plan", root, *sets(f"training.max_train_epochs={MAX_EPOCHS}", "dataset.batch_size=1"))
    assert result.code == 2, result.err
    assert "training.max_train_epochs = 999999 is 199,999,800 steps with this data (200 per epoch)" in result.err
    assert "use at most max_train_epochs = 499,999 for this data" in result.err
    allowed = kohya_wrap("plan", root, *sets("training.max_train_epochs=499999", "dataset.batch_size=1"))
    assert allowed.code == 0, allowed.err
    assert "499999 epoch(s) → 99999800 total optimization steps" in allowed.out


def test_epochs_worked_out_from_steps_are_bounded_too(project):
    root = project()  # 50 steps per epoch
    result = kohya_wrap(
        "plan", root, "--unset", "training.max_train_epochs", *sets(f"training.max_train_steps={MAX_STEPS}")
    )
    assert result.code == 2, result.err
    assert "training.max_train_steps = 99999999 is 2,000,000 epochs with this data (50 step(s) per epoch)" in result.err
    assert "use at most max_train_steps = 49,999,950 for this data" in result.err


def test_run_refuses_them_before_launching(tmp_path, on_standin):
    root = tmp_path / "proj"  # no preset: the stand-in sd-scripts has only the options a run needs
    (root / "m.safetensors").parent.mkdir(parents=True)
    (root / "m.safetensors").write_bytes(b"x")
    (root / "kohya-wrap.toml").write_text(
        'name = "rec_lora"\n[model]\nbase = "m.safetensors"\n[[concepts]]\ntoken = "mytoken"\nclass = "woman"\n'
        "repeats = 10\n[dataset]\nresolution = 64\nbatch_size = 1\n[training]\nmax_train_steps = 6\n",
        encoding="utf-8",
    )
    make_images(root / "image" / "10_mytoken woman", [(64, 64)] * 20)  # 200 steps per epoch
    for overrides in [
        ("training.max_train_steps=1000000000000", "training.save_every_n_steps=1"),
        (f"training.max_train_epochs={MAX_EPOCHS}",),
    ]:
        result = kohya_wrap("run", root, "--plain", *sets(*overrides))
        assert result.code == 2, result.err
        assert "training.max_train_" in result.err and "at most" in result.err, result.err
        runs = root / "runs"
        assert not (runs.is_dir() and [p for p in runs.iterdir() if p.is_dir()])  # nothing launched, no record


@pytest.mark.parametrize("command", ["check", "lint"])
def test_every_command_reading_the_spec_refuses_them(project, cli, command):
    root = project()
    result = cli(command, root, *sets(f"training.max_train_epochs={2**62}"))
    assert result.code == 2, result.out + result.err
    assert f"training.max_train_epochs: {2**62} is more than 999,999 epochs" in result.err
    assert "at most 999,999" in result.err and "Traceback" not in result.err


# ------------------------------------------------------------------ the longest legal runs: planned at once


def test_plan_of_the_longest_run_saving_every_step_answers(project):
    root = project()  # 50 steps per epoch: 999,999 epochs = 49,999,950 steps, a save at each
    args = (
        "--unset",
        "training.max_train_epochs",
        *sets("training.max_train_steps=49999950", "training.save_every_n_steps=1"),
    )
    result = kohya_wrap("plan", root, *args)
    assert result.code == 0, result.err
    # 49,999,950 step saves + an epoch save every 2 epochs below the last (499,999) + the final file
    assert (
        "  checkpoints (50499950): mytoken_v1-step00000001.safetensors, mytoken_v1-step00000002.safetensors, "
        "mytoken_v1-step00000003.safetensors, …, mytoken_v1-step49999950.safetensors, mytoken_v1.safetensors\n"
    ) in result.out
    planned = json.loads(kohya_wrap("plan", root, "--json", *args).out)
    assert planned["total_steps"] == 49_999_950 and planned["epochs"] == 999_999
    assert planned["checkpoint_count"] == 50_499_950
    names = planned["checkpoints"]
    assert len(names) == 1000 and names[-1] == "mytoken_v1.safetensors"
    assert names[:3] == [f"mytoken_v1-step{s:08d}.safetensors" for s in (1, 2, 3)]
    assert names[100] == "mytoken_v1-000002.safetensors"  # saved after step 100, after that step's save
    assert names[-2] == "mytoken_v1-step49999950.safetensors"


def test_plan_of_the_most_epochs_answers(project):
    root = project()
    result = kohya_wrap("plan", root, "--json", *sets(f"training.max_train_epochs={MAX_EPOCHS}"))
    assert result.code == 0, result.err
    planned = json.loads(result.out)
    assert planned["epochs"] == MAX_EPOCHS and planned["checkpoint_count"] == 500_000  # every 2nd epoch + final
    assert planned["checkpoints"][499] == "mytoken_v1-001000.safetensors"
    assert planned["checkpoints"][500:502] == ["mytoken_v1-999002.safetensors", "mytoken_v1-999004.safetensors"]
    assert planned["checkpoints"][-2:] == ["mytoken_v1-999998.safetensors", "mytoken_v1.safetensors"]


def test_normal_plans_list_checkpoints_as_before(project, cli):
    root = project()
    out = cli("plan", root).out
    assert (
        "  checkpoints (5): mytoken_v1-000002.safetensors, mytoken_v1-000004.safetensors, "
        "mytoken_v1-000006.safetensors, mytoken_v1-000008.safetensors, mytoken_v1.safetensors\n"
    ) in out
    out = cli("plan", root, *sets("training.save_every_n_epochs=1")).out
    assert (
        "  checkpoints (10): mytoken_v1-000001.safetensors, mytoken_v1-000002.safetensors, "
        "mytoken_v1-000003.safetensors, …, mytoken_v1-000009.safetensors, mytoken_v1.safetensors\n"
    ) in out
    planned = json.loads(cli("plan", root, "--json").out)
    assert planned["checkpoint_count"] == 5
    assert planned["checkpoints"] == [f"mytoken_v1-{e:06d}.safetensors" for e in (2, 4, 6, 8)] + [
        "mytoken_v1.safetensors"
    ]


# ------------------------------------------------------------------ the arithmetic equals sd-scripts' loops


def every_checkpoint(name, ext, total_steps, epochs, steps_per_epoch, every_epochs, every_steps) -> list[str]:
    """The list the old code built (and train_network.py's save conditions): the reference."""
    saves: list[tuple[int, str]] = []
    if every_steps:
        saves += [(s, f"{name}-step{s:08d}{ext}") for s in range(every_steps, total_steps + 1, every_steps)]
    if every_epochs:
        saves += [
            (min(e * steps_per_epoch, total_steps), f"{name}-{e:06d}{ext}")
            for e in range(1, epochs)
            if e % every_epochs == 0
        ]
    saves.sort(key=lambda item: item[0])
    return [n for _, n in saves] + [f"{name}{ext}"]


def test_checkpoint_schedule_equals_the_list_of_every_save():
    for steps_per_epoch in (1, 3, 7):
        for epochs in (1, 2, 5, 9):
            for total in {epochs * steps_per_epoch, max(1, epochs * steps_per_epoch - 1)}:
                real_epochs = -(-total // steps_per_epoch)
                for every_epochs in (None, 1, 2, 3):
                    for every_steps in (None, 1, 2, 3, 7, 50):
                        args = ("lora", ".safetensors", total, real_epochs, steps_per_epoch, every_epochs, every_steps)
                        expected = every_checkpoint(*args)
                        schedule = checkpoint_names(*args)
                        assert list(schedule) == expected, args
                        assert len(schedule) == len(expected) and schedule == expected
                        assert [schedule[i] for i in range(len(expected))] == expected, args
                        assert [schedule[-i] for i in range(1, len(expected) + 1)] == expected[::-1], args
                        assert schedule[1:-1] == expected[1:-1]
                        head, tail = schedule.shown(3, 2)
                        assert head + tail == (expected if len(expected) <= 6 else expected[:3] + expected[-2:])
    with pytest.raises(IndexError):
        checkpoint_names("lora", ".safetensors", 10, 1, 10, None, None)[1]


def test_checkpoint_schedule_of_the_longest_run_is_arithmetic():
    with bounded():  # a step and an epoch save at every step: no list of them would fit
        schedule = checkpoint_names("lora", ".safetensors", MAX_STEPS, MAX_STEPS, 1, 1, 1)
        assert isinstance(schedule, CheckpointSchedule)
        assert len(schedule) == MAX_STEPS + (MAX_STEPS - 1) + 1
        assert schedule[:4] == [
            "lora-step00000001.safetensors",
            "lora-000001.safetensors",
            "lora-step00000002.safetensors",
            "lora-000002.safetensors",
        ]
        assert schedule[-3:] == ["lora-99999998.safetensors", "lora-step99999999.safetensors", "lora.safetensors"]
        assert schedule[2 * 12_345_678 - 1] == "lora-12345678.safetensors"  # the epoch save after step 12,345,678
        assert schedule.shown(3, 2)[1] == ["lora-step99999999.safetensors", "lora.safetensors"]


def test_reg_balancing_is_arithmetic_and_equals_sd_scripts_loop():
    def reference(train_x, reg_subsets):  # the loop of sd-scripts' DreamBoothDataset, one repeat at a time
        used = [[0] * len(s.sizes) for s in reg_subsets]
        if not any(s.sizes for s in reg_subsets):
            return used
        n, first_loop = 0, True
        while n < train_x:
            for s_index, subset in enumerate(reg_subsets):
                stop = False
                for i_index in range(len(subset.sizes)):
                    if first_loop:
                        used[s_index][i_index] = subset.repeats
                        n += subset.repeats
                    else:
                        used[s_index][i_index] += 1
                        n += 1
                    if n >= train_x:
                        stop = True
                        break
                if stop:
                    break
            first_loop = False
        return used

    def subset(count, repeats):
        return SubsetImages(((64, 64),) * count, repeats, True)

    shapes = [[], [subset(0, 3)], [subset(1, 1)], [subset(3, 2)], [subset(2, 5), subset(0, 1), subset(4, 1)]]
    for reg in shapes:
        for train_x in (0, 1, 2, 5, 9, 10, 11, 23, 100, 1001):
            assert balanced_reg_repeats(train_x, reg) == reference(train_x, reg), (train_x, reg)
    # 10,000 training images × 10,000 repeats against one reg image: the loop took 10⁸ turns
    with bounded():
        assert balanced_reg_repeats(10**8, [subset(1, 1)]) == [[10**8]]


def test_lr_schedule_of_the_longest_run_is_a_formula():
    from kohya_wrap.sdscripts.lrsched import schedule

    lr_at = schedule(
        {"learning_rate": 1e-4, "lr_scheduler": "cosine", "lr_warmup_steps": 0.1}, MAX_STEPS, 1, lambda k: None
    )
    assert lr_at is not None
    assert lr_at(MAX_STEPS // 20) == pytest.approx(0.5e-4, rel=1e-6)  # halfway through the warm-up
    assert lr_at(MAX_STEPS) == pytest.approx(0.0, abs=1e-12)


def test_sample_names_past_step_999999_are_still_read():
    """sd-scripts names a sample at step N `<name>_%06d_…`: 7 or 8 digits in a run this long. A resume still
    renumbers them and the report still groups them by step."""
    stamp = "20261125120000"
    assert renumbered(f"lora_999998_00_{stamp}_7.png", 8, sample=True) == f"lora_1000006_00_{stamp}_7.png"
    assert renumbered(f"lora_1000006_01_{stamp}_7.png", 10**6, sample=True) == f"lora_2000006_01_{stamp}_7.png"
    assert renumbered(f"lora_e000002_00_{stamp}_7.png", 8, sample=True) == f"lora_e000002_00_{stamp}_7.png"
    match = SAMPLE_FILE.match(f"my_lora_99999999_03_{stamp}_42.png")
    assert match is not None
    assert (match["head"], match["tag"], match["index"], match["seed"]) == ("my_lora", "99999999", "03", "42")
    match = SAMPLE_FILE.match(f"my_lora_000012_00_{stamp}.png")
    assert match is not None and (match["head"], match["tag"], match["seed"]) == ("my_lora", "000012", None)
