"""How a run looks: a Rich Live dashboard on a terminal, one plain line per event when piped (or
--plain), one JSON object per event with --json. All three take the same events; none ever reads input.
The live view redraws at most a few times a second, whatever the child's output rate."""

from __future__ import annotations

import json
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
from kohya_wrap.training.state import RunState

SPARK = "▁▂▃▄▅▆▇█"


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


class PlainRenderer:
    """One readable line per event that matters; no control codes."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self._printed_step = -1

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def handle(self, event: Event, state: RunState) -> None:
        if isinstance(event, Progress):
            if event.step != self._printed_step and (event.loss is not None or event.step == event.total):
                self._printed_step = event.step
                rate = f"{event.seconds_per_step:.2f} s/step" if event.seconds_per_step else "? s/step"
                loss = f"loss {event.loss:.4g}" if event.loss is not None else "loss ?"
                lr = f" · lr {state.lr:.3g}" if state.lr is not None else ""
                self._write(
                    f"step {event.step}/{event.total} · {loss}{lr} · {rate} · elapsed {clock(event.elapsed_s)} · ETA "
                    f"{clock(event.remaining_s)}"
                )
        elif isinstance(event, PlanLine) and event.key == "total_steps":
            plan = state.plan
            self._write(
                f"plan: {plan.get('train_images_x_repeats', '?')} images × repeats, "
                f"{plan.get('batches_per_epoch', '?')} batches/epoch, "
                f"{plan.get('epochs', '?')} epoch(s), {event.value} steps"
            )
        elif isinstance(event, Epoch):
            self._write(f"epoch {event.epoch}/{event.total}")
        elif isinstance(event, CheckpointSaved):  # logged before the file is written: no size yet
            self._write(f"checkpoint saved: {event.path}")
        elif isinstance(event, SamplesStarted):
            self._write(f"sample images at step {event.step}")
        elif isinstance(event, SampleSaved):
            self._write(f"sample image: {event.path}")
        elif isinstance(event, ModelSaved):
            self._write("model saved")
        elif isinstance(event, LogMessage) and event.level != "INFO":
            self._write(f"{event.level.lower()}: {event.message}")
        elif isinstance(event, TracebackLine) and event.exception:
            self._write(f"exception: {event.exception}")

    def tick(self, state: RunState) -> None:
        pass

    def note(self, text: str) -> None:
        self._write(text)

    def close(self, state: RunState) -> None:
        pass


class JsonRenderer(PlainRenderer):
    """NDJSON: one object per event, for scripts and CI."""

    def handle(self, event: Event, state: RunState) -> None:
        if not isinstance(event, OtherProgress):
            self._write(json.dumps(event_dict(event), ensure_ascii=False))

    def note(self, text: str) -> None:
        self._write(json.dumps({"event": "Note", "text": text}, ensure_ascii=False))


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
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        total = state.total or state.plan.get("total_steps", 0)
        grid.add_row("steps", Text(f"{state.step}/{total or '?'}"))
        grid.add_row("", ProgressBar(total=max(total, 1), completed=state.step, width=50))
        if state.epochs:
            grid.add_row("epoch", f"{state.epoch}/{state.epochs}")
        speed = f"{state.seconds_per_step:.2f} s/step" if state.seconds_per_step else "?"
        grid.add_row("speed", f"{speed}   elapsed {clock(state.elapsed_s)}   ETA {clock(state.remaining_s)}")
        if state.loss is not None:
            smooth = f"   smoothed {state.smoothed:.4f}" if state.smoothed is not None else ""
            grid.add_row("loss", f"{state.loss:.4f}{smooth}   {sparkline(state.losses)}")
        if state.lr is not None:
            grid.add_row("lr", f"{state.lr:.3g}")
        if state.checkpoints:
            grid.add_row(
                "checkpoints", "\n".join(f"{Path(p).name} ({size_text(Path(p))})" for p in state.checkpoints[-3:])
            )
        if state.samples_at or state.sample_images:
            steps = f"at step {', '.join(map(str, state.samples_at[-5:]))}" if state.samples_at else ""
            grid.add_row("samples", "\n".join([steps, *state.sample_images[-3:]]).strip())
        if state.warnings or state.errors:
            grid.add_row("warnings", f"{state.warnings} warning(s), {len(state.errors)} error(s)")
        if state.recent:
            grid.add_row("log", Text("\n".join(line[:160] for line in state.recent), style="dim"))
        return Panel(grid, title=self.title, border_style="cyan")

    def close(self, state: RunState) -> None:
        self.tick(state, force=True)
        self.live.stop()
