"""The log parser on complete recordings of real sd-scripts v0.10.1 runs on the CPU
(tests/fixtures/sdscripts_logs/, made by scripts/record_sdscripts_logs.py)."""

from __future__ import annotations

import collections
import json
import random
from pathlib import Path

import pytest

from kohya_wrap.launch.events import (
    CheckpointSaved,
    Epoch,
    EventParser,
    LogMessage,
    ModelSaved,
    PlanLine,
    Progress,
    SamplesStarted,
    TracebackLine,
)

FIXTURES = Path(__file__).parent / "fixtures" / "sdscripts_logs"


def load(name: str) -> tuple[list[dict], int]:
    records = [json.loads(line) for line in (FIXTURES / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
    return [r for r in records if "data" in r], records[-1]["exit"]


def parse(chunks: list[dict], rechunk: random.Random | None = None) -> list:
    """One parser per stream, as the supervisor feeds them."""
    parsers: dict[str, EventParser] = collections.defaultdict(EventParser)
    events = []
    for chunk in chunks:
        data = chunk["data"]
        pieces = [data]
        if rechunk is not None and len(data) > 2:
            cut = rechunk.randint(1, len(data) - 1)
            pieces = [data[:cut], data[cut:]]
        for piece in pieces:
            events += parsers[chunk["stream"]].feed(piece)
    for parser in parsers.values():
        events += parser.close()
    return events


def of(events: list, kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def plan(events: list) -> dict[str, int]:
    return {e.key: e.value for e in of(events, PlanLine)}


def names(events: list) -> list[str]:
    return [Path(e.path).name for e in of(events, CheckpointSaved)]


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.jsonl")))
def test_chunking_does_not_change_the_events(name):
    chunks, _ = load(name)
    assert parse(chunks, random.Random(1)) == parse(chunks) == parse(chunks, random.Random(2))


def test_step_checkpoints_piped():
    chunks, code = load("pipe_steps")
    events = parse(chunks)
    assert code == 0 and plan(events)["total_steps"] == 6
    last = of(events, Progress)[-1]
    assert (last.step, last.total) == (6, 6) and last.loss is not None and last.seconds_per_step
    assert names(events) == [
        "rec_lora-step00000003.safetensors",
        "rec_lora-step00000006.safetensors",
        "rec_lora.safetensors",
    ]
    assert of(events, ModelSaved) and not of(events, TracebackLine)
    steps = [e.step for e in of(events, Progress)]
    assert steps == sorted(steps)  # never goes backwards


def test_epochs_and_samples_piped():
    chunks, code = load("pipe_epochs_samples")
    events = parse(chunks)
    assert code == 0 and plan(events)["epochs"] == 2
    assert of(events, Epoch) == [Epoch(1, 2), Epoch(2, 2)]
    assert len(of(events, SamplesStarted)) == 2
    assert names(events) == ["rec_lora-000001.safetensors", "rec_lora.safetensors"]
    assert of(events, ModelSaved)


@pytest.mark.parametrize("name", ["pty", "console_log_simple"])
def test_terminal_and_simple_console_output(name):
    chunks, code = load(name)
    events = parse(chunks)
    assert code == 0 and plan(events)["total_steps"] == 3
    assert names(events) == ["rec_lora-step00000003.safetensors", "rec_lora.safetensors"]
    assert of(events, ModelSaved)
    assert not any("\x1b" in repr(e) for e in events)  # colours and OSC-8 links are gone


@pytest.mark.parametrize(
    "name, exception",
    [
        ("fail_missing_model", "ValueError: The provided pretrained_model_name_or_path"),
        ("fail_truncated_image", "OSError: image file is truncated"),
        ("interrupt", "KeyboardInterrupt"),
    ],
)
def test_failures_end_in_their_exception(name, exception):
    chunks, code = load(name)
    events = parse(chunks)
    assert code != 0
    raised = [e.exception for e in of(events, TracebackLine) if e.exception]
    assert raised[0].startswith(exception)
    assert not of(events, ModelSaved)


def test_interrupted_run_progress_and_no_data():
    events = parse(load("interrupt")[0])
    assert of(events, Progress)[-1].step == 2 and not names(events)
    chunks, code = load("no_data")
    events = parse(chunks)
    assert code == 0  # sd-scripts "succeeds" having trained nothing: the wrapper must not believe it
    assert any("No data found" in e.message for e in of(events, LogMessage) if e.level in ("WARNING", "ERROR"))
    assert not of(events, Progress) and not of(events, ModelSaved)
