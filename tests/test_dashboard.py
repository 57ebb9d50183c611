"""What the renderers show, on recordings of real sd-scripts v0.10.1 runs: the plan and the phase before
the first step, each step once with its own loss (sd-scripts draws a step first with the previous
step's loss), and checkpoint, epoch and sample lines after the step they follow, however its stdout
and stderr interleave."""

from __future__ import annotations

import collections
import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from kohya_wrap.launch.events import EventParser
from kohya_wrap.training import dashboard as views
from kohya_wrap.training.state import RunState

FIXTURES = Path(__file__).parent / "fixtures" / "sdscripts_logs"


def chunks(name: str) -> list[dict]:
    records = [json.loads(line) for line in (FIXTURES / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
    return [r for r in records if "data" in r]


def replay(
    name: str, renderer, state: RunState, stdout_shift: float = 0.0, until: float | None = None, frames=None
) -> RunState:
    """Feed a recording as the supervisor does (a parser per stream, the state, then the renderer), with
    stdout moved `stdout_shift` seconds against stderr (the two pipes are read by separate threads), cut
    at `until` seconds as a run that ends there."""
    parsers: dict[str, EventParser] = collections.defaultdict(EventParser)
    timeline = sorted(chunks(name), key=lambda c: c["t"] + (stdout_shift if c["stream"] == "stdout" else 0.0))
    renderer.start(state)
    for chunk in timeline:
        if until is not None and chunk["t"] > until:
            break
        for event in parsers[chunk["stream"]].feed(chunk["data"]):
            state.update(event)
            renderer.handle(event, state)
            if frames is not None:
                frames.append(text_of(views.dashboard(state, "t")))
    for parser in parsers.values():
        for event in parser.close():
            state.update(event)
            renderer.handle(event, state)
    renderer.close(state)
    return state


def plain(name: str, state: RunState | None = None, **options) -> list[str]:
    out = io.StringIO()
    replay(name, views.PlainRenderer(out), state or RunState(total=6, epochs=2, steps_per_epoch=3), **options)
    return out.getvalue().splitlines()


def story(lines: list[str]) -> list[str]:
    """The step, checkpoint, epoch and sample lines, each step cut after its loss."""
    kept = []
    for line in lines:
        if line.startswith("step "):
            kept.append(" · ".join(line.split(" · ")[:2]))
        elif line.startswith(("checkpoint saved: ", "epoch ", "sample images", "model saved")):
            kept.append(line.replace("checkpoint saved: <PROJECT>/model/", "checkpoint "))
    return kept


def text_of(renderable) -> str:
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


# each step's loss is its last report in the recording (what metrics.csv keeps)
PIPE_STEPS = [
    "step 1/6 · loss 1.05",
    "step 2/6 · loss 1.06",
    "step 3/6 · loss 1.05",
    "checkpoint rec_lora-step00000003.safetensors",
    "step 4/6 · loss 1.06",
    "epoch 2/2",
    "step 5/6 · loss 1.04",
    "step 6/6 · loss 1.06",
    "checkpoint rec_lora-step00000006.safetensors",
    "checkpoint rec_lora.safetensors",
    "model saved",
]


@pytest.mark.parametrize("shift", [0.0, -0.05, 0.03, -1.0])
def test_each_step_once_with_its_own_loss_before_its_checkpoint(shift):
    """sd-scripts shows step 3 with step 2's loss (1.06), saves step 3's checkpoint, then shows step 3
    with its own (1.05): the line for step 3 waits for its own loss, and the checkpoint for the line."""
    lines = plain("pipe_steps", stdout_shift=shift)
    assert story(lines)[1:] == PIPE_STEPS  # after "epoch 1/2"
    assert sum(line.startswith("step 3/6") for line in lines) == 1


@pytest.mark.parametrize("shift", [0.0, -0.05, -1.0])
def test_epochs_samples_and_a_repeated_loss(shift):
    """Step 2's own loss reads like step 1's (1.06), so its second draw is dropped as a repeat: the
    epoch-end save, sampling and the next epoch still follow it."""
    state = RunState(total=4, epochs=2, steps_per_epoch=2, samples_after_epochs=True)
    assert story(plain("pipe_epochs_samples", state, stdout_shift=shift)) == [
        "epoch 1/2",
        "step 1/4 · loss 1.06",
        "step 2/4 · loss 1.06",
        "checkpoint rec_lora-000001.safetensors",
        "sample images at step 2",
        "epoch 2/2",
        "step 3/4 · loss 1.06",
        "step 4/4 · loss 1.1",
        "sample images at step 4",
        "checkpoint rec_lora.safetensors",
        "model saved",
    ]


def test_the_last_step_settled_by_model_saved():
    """console_log_simple: the last step's own loss equals the one before, so only "model saved" says
    it is final; the checkpoints still print after it."""
    assert story(plain("console_log_simple", RunState(total=3, epochs=1, steps_per_epoch=3), stdout_shift=-0.05))[
        1:
    ] == [
        "step 1/3 · loss 1.05",
        "step 2/3 · loss 1.06",
        "step 3/3 · loss 1.06",
        "checkpoint rec_lora-step00000003.safetensors",
        "checkpoint rec_lora.safetensors",
        "model saved",
    ]


def test_interrupted_runs():
    """Stopped while step 3's checkpoint is saved: step 3's own loss never came, so it is not made up;
    stopped after it: step 3 with its own loss. A SIGINT'd run ends with its steps, then the exception."""
    mid_step = plain("pipe_steps", until=21.2)
    assert story(mid_step)[-2:] == ["step 3/6 · loss ?", "checkpoint rec_lora-step00000003.safetensors"]
    after = plain("pipe_steps", until=21.3)
    assert story(after)[-2:] == ["step 3/6 · loss 1.05", "checkpoint rec_lora-step00000003.safetensors"]
    interrupted = plain("interrupt", RunState(total=20, epochs=3, steps_per_epoch=8))
    assert story(interrupted) == ["epoch 1/3", "step 1/20 · loss 1.13", "step 2/20 · loss 1.04"]
    assert interrupted[-1] == "exception: KeyboardInterrupt"


def test_the_plan_and_the_phases_come_before_the_first_step():
    lines = plain("pipe_steps")
    assert lines[0] == "planned: 6 steps, 2 epoch(s) of 3 step(s) · starting sd-scripts…"
    first_step = next(i for i, line in enumerate(lines) if line.startswith("step "))
    before = lines[:first_step]
    for phase in ("loading the model…", "caching latents…", "preparing training…", "training…"):
        assert phase in before
    assert before.index("loading the model…") < before.index("caching latents…") < before.index("training…")


def test_the_live_dashboard_shows_the_plan_from_launch_and_each_step_with_its_own_loss():
    state = RunState(total=6, epochs=2, steps_per_epoch=3)
    first = text_of(views.dashboard(state, "t"))
    assert "0/6" in first and "/?" not in first and "starting sd-scripts…" in first and "2 planned" in first
    frames: list[str] = []
    replay("pipe_steps", views.PlainRenderer(io.StringIO()), state, frames=frames)
    assert any("loading the model…" in f and "0/6" in f for f in frames)
    assert all("/?" not in f for f in frames)
    shown = {match.groups()[::-1] for frame in frames for match in re.finditer(r"loss +(\S+) at step (\d+)", frame)}
    assert sorted(shown) == [
        ("1", "1.0500"),
        ("2", "1.0600"),
        ("3", "1.0500"),
        ("4", "1.0600"),
        ("5", "1.0400"),
        ("6", "1.0600"),
    ]


def test_json_starts_with_the_plan_and_the_phases():
    out = io.StringIO()
    replay("pipe_steps", views.JsonRenderer(out), RunState(total=6, epochs=2, steps_per_epoch=3))
    objects = [json.loads(line) for line in out.getvalue().splitlines()]
    assert objects[0] == {"event": "Plan", "total_steps": 6, "epochs": 2, "steps_per_epoch": 3}
    assert objects[1] == {"event": "Phase", "phase": "starting sd-scripts"}
    phases = [o["phase"] for o in objects if o["event"] == "Phase"]
    assert phases == ["starting sd-scripts", "loading the model", "caching latents", "preparing training", "training"]
    first_progress = next(i for i, o in enumerate(objects) if o["event"] == "Progress")
    assert all(o["event"] != "Phase" for o in objects[first_progress + 2 :])
