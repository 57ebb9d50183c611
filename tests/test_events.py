"""The log parser on sd-scripts' real output lines (quoted from a CPU run of v0.10.1) and edge cases."""

from __future__ import annotations

import random

import pytest

from kohya_wrap.launch.events import (
    CheckpointSaved,
    Epoch,
    EventParser,
    Line,
    LogMessage,
    ModelSaved,
    OtherProgress,
    PlanLine,
    Progress,
    SamplesStarted,
    TracebackLine,
    event_dict,
    parse_line,
)

PAD = " " * 150
REAL = (
    "2026-11-25 09:43:47 INFO     Loading settings from /tmp/acc/my-lora/config/train.toml..."
    + PAD
    + "train_util.py:4744\n"
    "                    WARNING  no regularization images / 正則化画像が見つかりませんでした"
    + PAD
    + "train_util.py:2167\n"
    "  0%|          | 0/10 [00:00<?, ?it/s]\r 10%|█         | 1/10 [00:00<00:02,  3.05it/s]\r100%|██████████| 10/10 "
    "[00:02<00:00,  3.64it/s]\n"
    "override steps. steps for 2 epochs is / 指定エポックまでのステップ数: 52\n"
    "running training / 学習開始\n"
    "  num train images * repeats / 学習画像の数×繰り返し回数: 100\n"
    "  num reg images / 正則化画像の数: 0\n"
    "  num batches per epoch / 1epochのバッチ数: 26\n"
    "  num epochs / epoch数: 2\n"
    "  gradient accumulation steps / 勾配を合計するステップ数 = 1\n"
    "  total optimization steps / 学習ステップ数: 52\n"
    "steps:   0%|          | 0/52 [00:00<?, ?it/s]"
    "\repoch 1/2\n"
    "2026-11-25 09:44:13 INFO     epoch is incremented. current_epoch: 0, epoch: 1" + PAD + "train_util.py:715\n"
    "\rsteps:   2%|▏         | 1/52 [00:02<02:06,  2.48s/it]"
    "\rsteps:   2%|▏         | 1/52 [00:02<02:06,  2.48s/it, avr_loss=1.03]"
    "\rsteps:   2%|▏         | 1/52 [00:02<02:06,  2.48s/it, avr_loss=1.03]"
    "\rsteps:   4%|▍         | 2/52 [00:04<01:40,  2.02s/it, avr_loss=1.03]\n"
    "saving checkpoint: /tmp/acc/my lora 项目/model/mytoken_v1-000001.safetensors\n"
    "2026-11-25 09:44:59 INFO     " + PAD + "train_util.py:6393\n"
    "                    INFO     generating sample images at step / サンプル画像生成 ステップ: 26"
    + PAD
    + "train_util.py:6394\n"
    "2026-11-25 09:45:56 INFO     model saved." + PAD + "train_network.py:1729\n"
)


def parse_all(text: str, chunk: int | None = None) -> list:
    parser = EventParser()
    if chunk is None:
        return parser.feed(text) + parser.close()
    events = []
    for start in range(0, len(text), chunk):
        events += parser.feed(text[start : start + chunk])
    return events + parser.close()


def test_real_lines_become_typed_events():
    events = parse_all(REAL)
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "LogMessage",
        "LogMessage",
        "OtherProgress",
        "OtherProgress",
        "OtherProgress",
        "Line",
        "Line",
        "PlanLine",
        "PlanLine",
        "PlanLine",
        "PlanLine",
        "PlanLine",
        "PlanLine",
        "Progress",
        "Epoch",
        "LogMessage",
        "Progress",
        "Progress",
        "Progress",
        "CheckpointSaved",
        "SamplesStarted",
        "ModelSaved",
    ]
    assert events[0] == LogMessage("INFO", "Loading settings from /tmp/acc/my-lora/config/train.toml...")
    assert events[1] == LogMessage("WARNING", "no regularization images / 正則化画像が見つかりませんでした")
    assert events[4] == OtherProgress("", 10, 10)
    plan = {e.key: e.value for e in events if isinstance(e, PlanLine)}
    assert plan == {
        "train_images_x_repeats": 100,
        "reg_images": 0,
        "batches_per_epoch": 26,
        "epochs": 2,
        "gradient_accumulation_steps": 1,
        "total_steps": 52,
    }
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[1] == Progress(1, 52, 2.0, 126.0, 2.48, None)
    assert progress[2].loss == 1.03 and progress[3] == Progress(2, 52, 4.0, 100.0, 2.02, 1.03)  # the repeat is dropped
    assert Epoch(1, 2) in events and SamplesStarted(26) in events and ModelSaved() in events
    assert CheckpointSaved("/tmp/acc/my lora 项目/model/mytoken_v1-000001.safetensors") in events


def test_chunk_boundaries_do_not_matter():
    whole = parse_all(REAL)
    rng = random.Random(7)
    for _ in range(20):
        assert parse_all(REAL, chunk=rng.randint(1, 300)) == whole


def test_rates_unknowns_and_odd_losses():
    per_second = parse_line("steps:  42%|████▏     | 5/12 [00:08<00:11,  1.63it/s, avr_loss=0.5]")
    assert per_second == Progress(5, 12, 8.0, 11.0, 1 / 1.63, 0.5)
    fast = parse_line("steps:  42%|████▏     | 5/12 [01:02:08<?, ?it/s]")
    assert fast == Progress(5, 12, 3728.0, None, None, None)
    nan_loss = parse_line("steps:  42%|████▏     | 5/12 [00:08<00:11,  1.63s/it, avr_loss=nan]")
    assert nan_loss.loss != nan_loss.loss  # NaN is kept: the diagnosis needs it


def test_terminal_control_sequences_are_removed():
    osc8 = "\x1b]8;id=1;file:///x/train_util.py\x1b\\train_util.py\x1b]8;;\x1b\\"
    text = (
        "\x1b[2;36m2026-11-25 09:43:47\x1b[0m\x1b[2;36m \x1b[0m\x1b[34mINFO    \x1b[0m Using v1 tokenizer      "
        f"{osc8}\x1b[2m:\x1b[0m\x1b[2m26\x1b[0m\r\n"
    )
    assert parse_all(text) == [LogMessage("INFO", "Using v1 tokenizer")]


def test_tracebacks_are_followed_to_the_exception():
    text = (
        "Traceback (most recent call last):\n"
        '  File "/sd/train_network.py", line 1, in <module>\n'
        "    main()\n"
        "OSError: image file is truncated (5 bytes not processed)\n"
        "after the traceback\n"
    )
    events = parse_all(text)
    assert all(isinstance(e, TracebackLine) for e in events[:4])
    assert events[3].exception == "OSError: image file is truncated (5 bytes not processed)"
    assert events[0].exception is None and events[4] == Line("after the traceback")


def test_simple_console_log_and_events_as_dicts():
    assert parse_line("WARNING no regularization images") == LogMessage("WARNING", "no regularization images")
    assert event_dict(Epoch(1, 2)) == {"event": "Epoch", "epoch": 1, "total": 2}


@pytest.mark.parametrize("padding", ["", " ", "   "])
@pytest.mark.parametrize("stamp", ["2026-11-29 22:30:00", " " * 19])
def test_a_record_after_a_padded_bar_is_still_a_record(padding, stamp):
    """tqdm pads a bar that got shorter with spaces, and the next log record starts on the same line: the
    record after the padding (with or without its time) is still parsed as one — "model saved" was lost."""
    bar = "steps: 100%|██████████| 4/4 [00:05<00:00,  1.33s/it, avr_loss=1.1]" + padding
    record = f"{stamp} INFO     model saved.                                  train_network.py:1234\n"
    events = EventParser().feed(bar + record)
    assert [type(event).__name__ for event in events] == ["Progress", "ModelSaved"]


def test_a_bar_is_read_when_it_is_drawn_not_at_the_next_draw():
    """tqdm starts each draw with `\\r` and ends it with nothing: the step a bar shows is read as soon as the
    bar is complete, once, not a whole step later when the next draw begins."""
    parser = EventParser()
    draw = "\rsteps:  50%|█████     | 2/4 [00:02<00:02,  1.00s/it, avr_loss=1.2]"
    assert parser.feed(draw[:30]) == []  # an unfinished bar is not read
    (progress,) = parser.feed(draw[30:])
    assert (progress.step, progress.loss) == (2, 1.2)
    assert parser.feed(draw + "\r") == []  # drawn again unchanged: not again
    (after,) = parser.feed("steps:  75%|███████▌  | 3/4 [00:03<00:01,  1.00s/it, avr_loss=1.1]")
    assert (after.step, after.loss) == (3, 1.1)
