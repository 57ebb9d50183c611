"""How a run looks: a Rich Live dashboard on a terminal, one plain line per event when piped (or
--plain), one JSON object per event with --json. All three take the same events; none ever reads input.
The live view redraws at most a few times a second, whatever the child's output rate."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import IO

from kohya_wrap.console import out
from kohya_wrap.launch.events import (
    CheckpointSaved,
    Epoch,
    Event,
    LogMessage,
    ModelSaved,
    OtherProgress,
    PlanLine,
    Progress,
    SampleSaved,
    SamplesStarted,
    TracebackLine,
    event_dict,
)
from kohya_wrap.sdscripts.naming import STEP_NAME
from kohya_wrap.training.state import TRAINING, RunState

SPARK = "▁▂▃▄▅▆▇█"
EPOCH_FILE = re.compile(r"-(\d{6})(?:\.[^.]+)?$")  # <name>-000002.safetensors, an epoch's save


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def sparkline(values: list[float], width: int = 40) -> str:
    values = values[-width:]
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int((v - low) / span * (len(SPARK) - 1) + 0.5))] for v in values)


def size_text(path: Path) -> str:
    try:
        size = path.stat().st_size
    except OSError:
        return "?"
    return f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.1f} kB"


def plan_text(state: RunState) -> str:
    """The plan, known before launch: "6 steps, 2 epoch(s) of 3 step(s)"."""
    epochs = f", {state.epochs} epoch(s)" if state.epochs else ""
    per_epoch = f" of {state.steps_per_epoch} step(s)" if state.epochs and state.steps_per_epoch else ""
    return f"{state.total or '?'} steps{epochs}{per_epoch}"


def step_line(report: Progress, state: RunState, loss: float | None) -> str:
    rate = f"{report.seconds_per_step:.2f} s/step" if report.seconds_per_step else "? s/step"
    lr = state.lr_at(report.step) if state.lr_at is not None else None
    return (
        f"step {report.step}/{report.total} · {f'loss {loss:.4g}' if loss is not None else 'loss ?'}"
        f"{f' · lr {lr:.3g}' if lr is not None else ''} · {rate} · elapsed {clock(report.elapsed_s)} · ETA "
        f"{clock(report.remaining_s)}"
    )


def anchor_step(event: Event, state: RunState) -> int:
    """The step after whose line an event's line belongs. sd-scripts prints checkpoints and epochs on
    stdout and its step bar on stderr, so they can arrive a moment before the step they follow."""
    per_epoch = state.steps_per_epoch
    if isinstance(event, CheckpointSaved):
        name = Path(event.path).name
        if match := STEP_NAME.match(name):
            return int(match["step"])
        if (match := EPOCH_FILE.search(name)) and per_epoch:
            return min(int(match[1]) * per_epoch, state.total or int(match[1]) * per_epoch)
        return state.total  # the final file, written after the last step
    if isinstance(event, Epoch):
        return (event.epoch - 1) * per_epoch
    if isinstance(event, SamplesStarted):
        return event.step
    if isinstance(event, SampleSaved):
        return state.samples_at[-1] if state.samples_at else 0
    if isinstance(event, ModelSaved):
        return state.total
    return 0


class PlainRenderer:
    """One readable line per event that matters; no control codes. Before the first step: the plan and
    each phase sd-scripts enters; then one line per step with that step's own loss (training/state.py),
    each checkpoint, epoch and sample line after the step it follows."""

    HOLD_S = 30.0  # the longest a line waits for its step's loss (a long sampling between the two draws)

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self._printed_step = 0
        self._phase: str | None = None
        self._held: list[tuple[int, float, str]] = []  # (the step it follows, held since, line)

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def start(self, state: RunState) -> None:
        """Before launch: the plan and the first phase."""
        self._printed_step, self._phase = state.settled_step, state.phase
        self._write(f"planned: {plan_text(state)} · {state.phase}…")

    def handle(self, event: Event, state: RunState) -> None:
        self._steps(state)
        if self._phase is not None and state.phase != self._phase:
            self._phase = state.phase
            self._write(f"{state.phase}…")
        text = None
        if isinstance(event, PlanLine) and event.key == "total_steps":
            plan = state.plan
            self._write(
                f"plan: {plan.get('train_images_x_repeats', '?')} images × repeats, "
                f"{plan.get('batches_per_epoch', '?')} batches/epoch, "
                f"{plan.get('epochs', '?')} epoch(s), {event.value} steps"
            )
        elif isinstance(event, Epoch):
            text = f"epoch {event.epoch}/{event.total}"
        elif isinstance(event, CheckpointSaved):  # logged before the file is written: no size yet
            text = f"checkpoint saved: {event.path}"
        elif isinstance(event, SamplesStarted):
            text = f"sample images at step {event.step}"
        elif isinstance(event, SampleSaved):
            text = f"sample image: {event.path}"
        elif isinstance(event, ModelSaved):
            text = "model saved"
        elif isinstance(event, LogMessage) and event.level != "INFO":
            self._write(f"{event.level.lower()}: {event.message}")
        elif isinstance(event, TracebackLine) and event.exception:
            self._write(f"exception: {event.exception}")
        if text is not None:
            self._held.append((anchor_step(event, state), time.monotonic(), text))
            self._release(state.complete_step)

    def _steps(self, state: RunState) -> None:
        """Each newly settled step, with the lines that waited for it."""
        for report in state.reported:
            if report.step > self._printed_step:
                self._printed_step = report.step
                self._write(step_line(report, state, report.loss))
                self._release(report.step)
        self._release(state.complete_step)

    def _release(self, step: int | None, older_than: float | None = None) -> None:
        """Print the held lines that follow `step` or an earlier one (all with None, or those held
        since before `older_than`), in the order they came."""
        keep = []
        for held in self._held:
            if step is None or held[0] <= step or (older_than is not None and held[1] < older_than):
                self._write(held[2])
            else:
                keep.append(held)
        self._held = keep

    def tick(self, state: RunState) -> None:
        self._steps(state)
        if self._held:
            self._release(state.complete_step, older_than=time.monotonic() - self.HOLD_S)

    def note(self, text: str) -> None:
        self._write(text)

    def close(self, state: RunState) -> None:
        """The stream ended: the last step, and whatever still waited. The last step's report carries its
        own loss once the model is saved; a run stopped while it saved or sampled for that step never
        showed it."""
        self._steps(state)
        pending = state.pending
        if pending is not None and pending.step > self._printed_step:
            cut_short = not state.model_saved and any(step == pending.step for step, _, _ in self._held)
            self._write(step_line(pending, state, None if cut_short else pending.loss))
        elif state.step > self._printed_step:
            self._write(
                step_line(
                    Progress(state.step, state.total, state.elapsed_s, state.remaining_s, state.seconds_per_step, None),
                    state,
                    None,
                )
            )
        self._printed_step = max(self._printed_step, state.step)
        self._release(None)


class JsonRenderer(PlainRenderer):
    """NDJSON: one object per event, for scripts and CI; before them the plan ({"event": "Plan", …})
    and each phase before the first step ({"event": "Phase", "phase": …}) as it begins."""

    def start(self, state: RunState) -> None:
        self._phase = state.phase
        plan = {"total_steps": state.total, "epochs": state.epochs, "steps_per_epoch": state.steps_per_epoch}
        self._write(json.dumps({"event": "Plan", **plan}))
        self._write(json.dumps({"event": "Phase", "phase": state.phase}))

    def handle(self, event: Event, state: RunState) -> None:
        if not isinstance(event, OtherProgress):
            self._write(json.dumps(event_dict(event), ensure_ascii=False))
        if self._phase is not None and state.phase != self._phase:
            self._phase = state.phase
            self._write(json.dumps({"event": "Phase", "phase": state.phase}))

    def tick(self, state: RunState) -> None:
        pass

    def note(self, text: str) -> None:
        self._write(json.dumps({"event": "Note", "text": text}, ensure_ascii=False))

    def close(self, state: RunState) -> None:
        pass


class Resilient:
    """A renderer whose output may go away (the terminal hung up, a pipe closed): the first OSError
    silences it, and supervising and recording go on."""

    def __init__(self, inner) -> None:
        self.inner, self.silenced = inner, False

    def _call(self, name: str, *args) -> None:
        if self.silenced:
            return
        try:
            getattr(self.inner, name)(*args)
        except OSError:
            self.silenced = True

    def start(self, state: RunState) -> None:
        self._call("start", state)

    def handle(self, event: Event, state: RunState) -> None:
        self._call("handle", event, state)

    def tick(self, state: RunState) -> None:
        self._call("tick", state)

    def note(self, text: str) -> None:
        self._call("note", text)

    def close(self, state: RunState) -> None:
        self._call("close", state)


class LiveRenderer:
    """The terminal dashboard (Rich Live), redrawn at most `fps` times a second."""

    def __init__(self, title: str, fps: float = 4.0) -> None:
        from rich.live import Live

        self.title = title
        self.interval = 1.0 / fps
        self._last = 0.0
        self.live = Live(
            console=out(), auto_refresh=False, transient=False, redirect_stdout=False, redirect_stderr=False
        )
        self.live.start()

    def start(self, state: RunState) -> None:
        self.tick(state, force=True)

    def handle(self, event: Event, state: RunState) -> None:
        self.tick(state)

    def tick(self, state: RunState, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            self._last = now
            self.live.update(self.render(state), refresh=True)

    def note(self, text: str) -> None:
        self.live.console.print(text, markup=False, highlight=False)

    def render(self, state: RunState):
        return dashboard(state, self.title)

    def close(self, state: RunState) -> None:
        self.tick(state, force=True)
        self.live.stop()


def dashboard(state: RunState, title: str):
    """The live view of `state`: the plan and the phase from launch on, then steps, each with its own loss."""
    from rich.panel import Panel
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    total = state.total or state.plan.get("total_steps", 0)
    step = max(state.step, state.settled_step)  # a resumed run starts at its resumed step
    if state.last_report is None:  # before the first step's loss: what is happening, and for how long
        since = time.monotonic() - state.phase_started
        phase = f"step {step + 1} under way" if state.phase == TRAINING else state.phase
        grid.add_row("phase", f"{phase}… {clock(since)}   ({clock(time.monotonic() - state.started)} since launch)")
    grid.add_row("steps", Text(f"{step}/{total or '?'}"))
    grid.add_row("", ProgressBar(total=max(total, 1), completed=step, width=50))
    if state.epochs:
        grid.add_row("epoch", f"{state.epoch}/{state.epochs}" if state.epoch else f"{state.epochs} planned")
    speed = f"{state.seconds_per_step:.2f} s/step" if state.seconds_per_step else "?"
    grid.add_row("speed", f"{speed}   elapsed {clock(state.elapsed_s)}   ETA {clock(state.remaining_s)}")
    report = state.last_report
    if report is not None and report.loss is not None:
        smooth = f"   smoothed {state.smoothed:.4f}" if state.smoothed is not None else ""
        grid.add_row("loss", f"{report.loss:.4f} at step {report.step}{smooth}   {sparkline(state.losses)}")
    if state.lr is not None:
        grid.add_row("lr", f"{state.lr:.3g}")
    if state.checkpoints:
        grid.add_row("checkpoints", "\n".join(f"{Path(p).name} ({size_text(Path(p))})" for p in state.checkpoints[-3:]))
    if state.samples_at or state.sample_images:
        steps = f"at step {', '.join(map(str, state.samples_at[-5:]))}" if state.samples_at else ""
        grid.add_row("samples", "\n".join([steps, *state.sample_images[-3:]]).strip())
    if state.warnings or state.errors:
        grid.add_row("warnings", f"{state.warnings} warning(s), {len(state.errors)} error(s)")
    if state.recent:
        grid.add_row("log", Text("\n".join(line[:160] for line in state.recent), style="dim"))
    return Panel(grid, title=title, border_style="cyan")
