"""Pure: sd-scripts' raw output (chunks of stdout/stderr text) → typed events.

sd-scripts prints the plan block and `epoch N/M` with accelerator.print (stdout), logs through Rich
(stderr: an optional timestamp, a level padded to 8 columns, the message, the source file at the right
edge; continuation lines indented) and draws tqdm bars with `\\r` updates; under a terminal there are ANSI
colours and OSC-8 links too. The parser splits on `\\r` and `\\n` across chunk boundaries, strips control
sequences, and turns each line into at most one event. Lines it does not understand come back as `Line`
so nothing is lost. It is fast (precompiled patterns behind cheap substring tests) because the dashboard
must keep up with thousands of lines per second.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Iterator, Union


@dataclass(frozen=True)
class PlanLine:
    """One number of sd-scripts' plan block ("total optimization steps / 学習ステップ数: 52")."""

    key: str  # train_images_x_repeats | reg_images | batches_per_epoch | epochs | total_steps | batch_size | gradient_accumulation_steps
    value: int


@dataclass(frozen=True)
class Progress:
    step: int
    total: int
    elapsed_s: float
    remaining_s: float | None
    seconds_per_step: float | None
    loss: float | None


@dataclass(frozen=True)
class Epoch:
    epoch: int
    total: int


@dataclass(frozen=True)
class CheckpointSaved:
    path: str


@dataclass(frozen=True)
class SamplesStarted:
    step: int


@dataclass(frozen=True)
class ModelSaved:
    pass


@dataclass(frozen=True)
class LogMessage:
    level: str  # DEBUG | INFO | WARNING | ERROR | CRITICAL
    message: str


@dataclass(frozen=True)
class TracebackLine:
    """A line of a Python traceback; `exception` is set on its last line ("ValueError: …")."""

    text: str
    exception: str | None = None


@dataclass(frozen=True)
class OtherProgress:
    """A tqdm bar that is not the training steps (caching latents, sampling, loading)."""

    label: str
    done: int
    total: int


@dataclass(frozen=True)
class Line:
    """Anything else, untouched (minus control sequences)."""

    text: str


Event = Union[PlanLine, Progress, Epoch, CheckpointSaved, SamplesStarted, ModelSaved, LogMessage, TracebackLine, OtherProgress, Line]

ANSI = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
PROGRESS = re.compile(
    r"steps:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)\s*\[([\d:]+)<([\d:?]+),\s*([\d.?]+)(s/it|it/s)?(?:,\s*avr_loss=([-+\w.]+))?"
)
EPOCH = re.compile(r"^epoch (\d+)/(\d+)\s*$")
CHECKPOINT = re.compile(r"saving checkpoint: (.+?)\s*$")
SAMPLES = re.compile(r"generating sample images at step / [^:]*: (\d+)")
RICH_LOG = re.compile(r"^(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d| {19}) (DEBUG|INFO|WARNING|ERROR|CRITICAL) +(.*)")
SOURCE = re.compile(r"[\w.-]+\.py:\d+")  # Rich's "file.py:123" at the right edge
OTHER_BAR = re.compile(r"^(.*?):?\s*(\d+)%\|[^|]*\|\s*(\d+)/(\d+) \[")
SIMPLE_LOG = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)[: ]\s*(.*)$")
PLAN = {
    "num train images * repeats": "train_images_x_repeats",
    "num reg images": "reg_images",
    "num batches per epoch": "batches_per_epoch",
    "num epochs": "epochs",
    "batch size per device": "batch_size",
    "gradient accumulation steps": "gradient_accumulation_steps",
    "total optimization steps": "total_steps",
}
PLAN_LINE = re.compile(r"^\s{2}(" + "|".join(re.escape(k) for k in PLAN) + r") / [^:=]*[:=] ?(\d+)\s*$")
EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit|Warning)|KeyboardInterrupt)(?::\s?(.*))?$")


def _seconds(clock: str) -> float | None:
    if "?" in clock:
        return None
    total = 0.0
    for part in clock.split(":"):
        total = total * 60 + float(part)
    return total


def parse_progress(line: str) -> Progress | None:
    match = PROGRESS.search(line)
    if match is None:
        return None
    step, total, elapsed, remaining, rate, unit, loss = match.groups()
    per_step: float | None = None
    if rate != "?" and unit:
        value = float(rate)
        per_step = value if unit == "s/it" else (1.0 / value if value else None)
    try:
        loss_value = float(loss) if loss is not None else None
    except ValueError:  # "nan", "inf" parse; anything else is not a loss
        loss_value = None
    return Progress(int(step), int(total), _seconds(elapsed) or 0.0, _seconds(remaining), per_step, loss_value)


def parse_line(line: str, in_traceback: bool = False) -> Event | None:
    """One clean line (no `\\r`/`\\n`, no control codes) → an event; None for a blank line."""
    if not line.strip():
        return None
    if "steps:" in line and "it" in line:
        progress = parse_progress(line)
        if progress is not None:
            return progress
    if in_traceback or line.startswith("Traceback (most recent call last)"):
        match = EXCEPTION_LINE.match(line)
        return TracebackLine(line, line if match else None)
    if line.startswith("epoch "):
        match = EPOCH.match(line)
        if match:
            return Epoch(int(match.group(1)), int(match.group(2)))
    if line.startswith("saving checkpoint: "):
        return CheckpointSaved(CHECKPOINT.match(line).group(1))  # type: ignore[union-attr]
    if line.startswith("  num ") or line.startswith("  total ") or line.startswith("  batch ") or line.startswith("  gradient "):
        match = PLAN_LINE.match(line)
        if match:
            return PlanLine(PLAN[match.group(1)], int(match.group(2)))
    if line[20:21] in "IWEDC" and line[19:20] == " ":
        match = RICH_LOG.match(line)
        if match:
            return _log_event(match.group(1), match.group(2))
    if line[:1] in "DIWEC":
        match = SIMPLE_LOG.match(line)
        if match:
            return _log_event(match.group(1), match.group(2))
    if "%|" in line:
        match = OTHER_BAR.match(line)
        if match:
            return OtherProgress(match.group(1).strip(), int(match.group(3)), int(match.group(4)))
    return Line(line)


def _log_event(level: str, message: str) -> Event | None:
    head, gap, tail = message.rpartition("  ")  # Rich pads before the source location; no regex backtracking
    if SOURCE.fullmatch(tail if gap else message):
        message = head if gap else ""
    message = message.strip()
    if not message:
        return None  # Rich prints an empty record as just the level and source
    if level == "INFO":
        if message.startswith("generating sample images at step"):
            match = SAMPLES.search(message)
            if match:
                return SamplesStarted(int(match.group(1)))
        if message == "model saved.":
            return ModelSaved()
    return LogMessage(level, message)


class EventParser:
    """Feed raw chunks as they arrive; get events for every complete line. Keeps the partial last line,
    drops a tqdm line repeated verbatim, and follows tracebacks to their exception line."""

    def __init__(self) -> None:
        self._pending = ""
        self._in_traceback = False
        self._last_progress: tuple[int, float | None] | None = None

    def feed(self, chunk: str) -> list[Event]:
        text = self._pending + chunk
        if "\x1b" in text:
            text = ANSI.sub("", text)
        cut = max(text.rfind("\n"), text.rfind("\r"))
        if cut < 0:
            self._pending = text
            return []
        self._pending = text[cut + 1:]
        return list(self._events(text[:cut]))

    def close(self) -> list[Event]:
        """The last line, if the stream ended without a newline."""
        text, self._pending = self._pending, ""
        return list(self._events(ANSI.sub("", text)))

    def _events(self, text: str) -> Iterator[Event]:
        for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
            line = raw.rstrip()
            event = parse_line(line, self._in_traceback)
            if event is None:
                continue
            if isinstance(event, TracebackLine):
                self._in_traceback = event.exception is None
            elif isinstance(event, Progress):
                key = (event.step, event.loss)
                if key == self._last_progress:
                    continue
                self._last_progress = key
            yield event


def event_dict(event: Event) -> dict:
    """An event as one JSON-ready object, with its kind (for NDJSON output and events.jsonl)."""
    return {"event": type(event).__name__, **asdict(event)}
