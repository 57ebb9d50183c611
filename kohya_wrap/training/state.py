"""What a run has reported so far, folded from its events: the one state the dashboard, the plain and
JSON renderers, metrics.csv and the run record are all built from."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from kohya_wrap.launch.events import (
    CheckpointSaved,
    Epoch,
    Event,
    Line,
    LogMessage,
    ModelSaved,
    PlanLine,
    Progress,
    SampleSaved,
    SamplesStarted,
    TracebackLine,
)


@dataclass
class RunState:
    """What the run has told us so far; every renderer reads the same state."""

    plan: dict[str, int] = field(default_factory=dict)
    step: int = 0
    total: int = 0
    epoch: int = 0
    epochs: int = 0
    seconds_per_step: float | None = None
    elapsed_s: float = 0.0
    remaining_s: float | None = None
    loss: float | None = None
    smoothed: float | None = None
    losses: list[float] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    samples_at: list[int] = field(default_factory=list)
    sample_images: list[str] = field(default_factory=list)
    lr: float | None = None
    lr_at: Callable[[int], float | None] | None = None  # the scheduled learning rate of a step, where known
    warnings: int = 0
    errors: list[str] = field(default_factory=list)
    exception: str | None = None
    model_saved: bool = False
    recent: deque = field(default_factory=lambda: deque(maxlen=6))

    def update(self, event: Event) -> None:
        if isinstance(event, Progress):
            self.step, self.total = event.step, event.total
            if self.lr_at is not None:
                self.lr = self.lr_at(event.step)
            self.elapsed_s, self.remaining_s = event.elapsed_s, event.remaining_s
            self.seconds_per_step = event.seconds_per_step or self.seconds_per_step
            if event.loss is not None:
                self.loss = event.loss
                if event.loss == event.loss:  # not NaN
                    self.losses.append(event.loss)
                    self.smoothed = event.loss if self.smoothed is None else 0.9 * self.smoothed + 0.1 * event.loss
        elif isinstance(event, PlanLine):
            self.plan[event.key] = event.value
            if event.key == "epochs":
                self.epochs = event.value
        elif isinstance(event, Epoch):
            self.epoch, self.epochs = event.epoch, event.total
        elif isinstance(event, CheckpointSaved):
            self.checkpoints.append(event.path)
        elif isinstance(event, SamplesStarted):
            self.samples_at.append(event.step)
        elif isinstance(event, SampleSaved):
            self.sample_images.append(event.path)
        elif isinstance(event, ModelSaved):
            self.model_saved = True
        elif isinstance(event, LogMessage):
            if event.level == "WARNING":
                self.warnings += 1
            elif event.level in ("ERROR", "CRITICAL"):
                self.errors.append(event.message)
            self.recent.append(f"{event.level} {event.message}")
        elif isinstance(event, TracebackLine):
            if event.exception and self.exception is None:
                self.exception = event.exception
            self.recent.append(event.text)
        elif isinstance(event, Line):
            self.recent.append(event.text)
