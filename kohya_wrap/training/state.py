"""What a run has reported so far, folded from its events: the one state the dashboard, the plain and
JSON renderers, metrics.csv and the run record are all built from.

Each step's own loss. sd-scripts draws its step bar twice a step: `progress_bar.update(1)` shows the new
step with the *previous* step's loss, then `set_postfix` shows it with its own, and between the two it
samples and saves that step's checkpoint. The log parser drops a report identical to the one before, so
when a step's own loss reads the same as the previous one only the first report arrives. A step's
own loss is therefore settled by a second report of it, by a first report whose loss differs from the
last one (tqdm skipped the first draw), or by the events sd-scripts emits only after `set_postfix`, on
the same stream as the bar (Rich logging goes to stderr): a later step, the next epoch's dataset
message, epoch-end sampling. `reported` holds the settled steps in order; the renderers print those,
never a loss that belongs to the step before. (The parser reads a bar as soon as it is drawn, so a step's
own loss is known at the step's end, or, when it reads the same as the one before, as the next begins.)"""

from __future__ import annotations

import time
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

# the phases before the first step, from the lines sd-scripts logs as it enters them (plain or Rich logging)
PHASES = (
    ("loading model for process", "loading the model"),
    ("caching latents", "caching latents"),
    ("caching text encoder outputs", "caching text encoder outputs"),
    ("prepare optimizer, data loader", "preparing training"),
)
STARTING, TRAINING = "starting sd-scripts", "training"
NEXT_EPOCH = "epoch is incremented"  # logged (stderr) as an epoch's data loading begins: the step before is over


@dataclass
class RunState:
    """What the run has told us so far; every renderer reads the same state. Created with the plan's
    totals (and the resumed step), so the totals show before sd-scripts prints its own."""

    plan: dict[str, int] = field(default_factory=dict)
    step: int = 0
    total: int = 0
    epoch: int = 0
    epochs: int = 0
    steps_per_epoch: int = 0  # the plan's; sd-scripts' own once it prints its plan block
    samples_after_epochs: bool = False  # sample_every_n_epochs: sampling follows an epoch's last step
    phase: str = STARTING
    phase_started: float = field(default_factory=time.monotonic)
    started: float = field(default_factory=time.monotonic)
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
    traceback: deque = field(
        default_factory=lambda: deque(maxlen=400)
    )  # traceback lines (the newest 400), for diagnose
    # each step's own loss (see the module's docstring)
    reported: deque = field(default_factory=lambda: deque(maxlen=64))  # settled steps' last reports, in order
    settled_step: int = 0  # the newest step whose own loss is known (before any: the step a resumed run starts at)
    pending: Progress | None = None  # the newest step, while its report may still carry the step before's loss
    last_loss: float | None = None  # the loss of the newest report

    @property
    def complete_step(self) -> int:
        """The newest step known to be over with its own loss: settled, or followed by a later step."""
        return max(self.settled_step, self.step - 1)

    @property
    def last_report(self) -> Progress | None:
        """The newest step with its own loss: the newest settled one, or once the model is saved the last."""
        if self.model_saved and self.pending is not None:
            return self.pending
        return self.reported[-1] if self.reported else None

    def update(self, event: Event) -> None:
        if isinstance(event, Progress):
            self.step, self.total = event.step, event.total
            if self.lr_at is not None:
                self.lr = self.lr_at(event.step)
            self.elapsed_s, self.remaining_s = event.elapsed_s, event.remaining_s
            self.seconds_per_step = event.seconds_per_step or self.seconds_per_step
            if event.loss is not None:
                self.loss = event.loss
            self._enter(TRAINING)
            self._own_loss(event)
        elif isinstance(event, PlanLine):
            self.plan[event.key] = event.value
            if event.key == "epochs":
                self.epochs = event.value
            if event.key in ("batches_per_epoch", "gradient_accumulation_steps") and "batches_per_epoch" in self.plan:
                accumulation = max(self.plan.get("gradient_accumulation_steps", 1), 1)
                self.steps_per_epoch = -(-self.plan["batches_per_epoch"] // accumulation)
            elif event.key == "total_steps":
                self.total = event.value
        elif isinstance(event, Epoch):
            self.epoch, self.epochs = event.epoch, event.total
            self._enter(TRAINING)
        elif isinstance(event, CheckpointSaved):
            self.checkpoints.append(event.path)
        elif isinstance(event, SamplesStarted):
            self.samples_at.append(event.step)
            if self.samples_after_epochs:
                self._settle()
        elif isinstance(event, SampleSaved):
            self.sample_images.append(event.path)
        elif isinstance(event, ModelSaved):  # no settling: with console_log_simple it comes on stdout
            self.model_saved = True
        elif isinstance(event, LogMessage):
            if event.level == "WARNING":
                self.warnings += 1
            elif event.level in ("ERROR", "CRITICAL"):
                self.errors.append(event.message)
            elif event.message.startswith(NEXT_EPOCH):
                self._settle()
            self.recent.append(f"{event.level} {event.message}")
            self._phase_of(event.message)
        elif isinstance(event, TracebackLine):
            if event.exception and self.exception is None:
                self.exception = event.exception
            self.recent.append(event.text)
            self.traceback.append(event.text)
        elif isinstance(event, Line):
            self.recent.append(event.text)
            self._phase_of(event.text)

    def _enter(self, phase: str) -> None:
        if phase != self.phase:
            self.phase, self.phase_started = phase, time.monotonic()

    def _phase_of(self, text: str) -> None:
        if self.phase == TRAINING:
            return
        lowered = text.lower()
        for start, phase in PHASES:
            if lowered.startswith(start):
                self._enter(phase)
                return

    def _own_loss(self, event: Progress) -> None:
        if event.loss is None:
            return
        if self.pending is not None and event.step > self.pending.step:
            self._settle()  # a later step: the pending one had its last report
        own = event.loss != self.last_loss or (self.pending is not None and self.pending.step == event.step)
        self.last_loss = event.loss
        if event.step <= self.settled_step:
            return  # a settled step drawn again (gradient accumulation's further micro-batches, the bar's end)
        self.pending = event
        if own:
            self._settle()

    def _settle(self) -> None:
        """The pending step's report carries its own loss."""
        event, self.pending = self.pending, None
        if event is None or event.step <= self.settled_step:
            return
        self.settled_step = event.step
        self.reported.append(event)
        if event.loss == event.loss:  # not NaN
            self.losses.append(event.loss)
            self.smoothed = event.loss if self.smoothed is None else 0.9 * self.smoothed + 0.1 * event.loss
