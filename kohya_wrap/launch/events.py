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
from typing import Union, get_args


@dataclass(frozen=True)
class PlanLine:
    """One number of sd-scripts' plan block ("total optimization steps / 学習ステップ数: 52")."""

    # train_images_x_repeats | reg_images | batches_per_epoch | epochs | total_steps | batch_size
    # | gradient_accumulation_steps
    key: str
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
class SampleSaved:
    """A sample image that appeared in <output_dir>/sample (sd-scripts saves them without a log line;
    the supervisor watches the folder)."""

    path: str


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


Event = Union[
    PlanLine,
    Progress,
    Epoch,
    CheckpointSaved,
    SamplesStarted,
    SampleSaved,
    ModelSaved,
    LogMessage,
    TracebackLine,
    OtherProgress,
    Line,
]

ANSI = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
PROGRESS = re.compile(
    r"steps:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)\s*\[([\d:]+)<([\d:?]+),\s*([\d.?]+)(s/it|it/s)?(?:,\s*avr_loss=([-+\w.]+))?"
)
EPOCH = re.compile(r"^epoch (\d+)/(\d+)\s*$")
SAMPLES = re.compile(r"generating sample images at step / [^:]*: (\d+)")
RICH_LOG = re.compile(r"^(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d| {19}) (DEBUG|INFO|WARNING|ERROR|CRITICAL) +(.*)")
RICH_DATE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (?:DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
RICH_LEVEL = re.compile(r"(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
SOURCE = re.compile(r"[\w.-]+\.py:\d+")  # Rich's "file.py:123" at the right edge
BAR_END = re.compile(r"\d+/\d+ \[[^\]]*\]")
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
EXCEPTION_LINE = re.compile(
    r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit|Warning)|KeyboardInterrupt)(?::\s?(.*))?$"
)


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
    """One clean line (no `\r`/`\n`, no control codes) → an event; None for a blank line.
    Cheap character tests pick the one pattern worth trying: most lines are log records or text."""
    if not line or line.isspace():
        return None
    if "%|" in line:  # a tqdm bar: the training steps, or another one
        if "steps:" in line:
            progress = parse_progress(line)
            if progress is not None:
                return progress
        if not in_traceback:
            match = OTHER_BAR.match(line)
            if match:
                return OtherProgress(match.group(1).strip(), int(match.group(3)), int(match.group(4)))
    first = line[0]
    if in_traceback or (first == "T" and line.startswith("Traceback (most recent call last)")):
        match = EXCEPTION_LINE.match(line)
        return TracebackLine(line, line if match else None)
    if line[19:20] == " " and line[20:21] in "IWEDC":
        match = RICH_LOG.match(line)
        if match:
            return _log_event(match.group(1), match.group(2))
    if first == " ":
        if line[1:2] == " " and line[2:3] in "ntbg":
            match = PLAN_LINE.match(line)
            if match:
                return PlanLine(PLAN[match.group(1)], int(match.group(2)))
    elif first == "e":
        match = EPOCH.match(line)
        if match:
            return Epoch(int(match.group(1)), int(match.group(2)))
    elif first == "s":
        if line.startswith("saving checkpoint: "):
            return CheckpointSaved(line[len("saving checkpoint: ") :].strip())
    elif first in "DIWEC":
        match = SIMPLE_LOG.match(line)
        if match:
            return _log_event(match.group(1), match.group(2))
    if line == "model saved.":  # --console_log_simple prints records bare
        return ModelSaved()
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
        cut = max(text.rfind("\n"), text.rfind("\r"))
        if cut < 0:
            self._pending = text
            return self._finished_bar()
        # the unfinished line stays raw: a control sequence may be split across chunks
        self._pending = text[cut + 1 :]
        complete = text[:cut]
        if "\x1b" in complete:
            complete = ANSI.sub("", complete)
        return self._events(complete) + self._finished_bar()

    def _finished_bar(self) -> list[Event]:
        """The training bar tqdm just drew: it stays unterminated until its next draw (`\r` comes first), a
        whole step later, so a complete one is read now (and not again when its `\r` comes)."""
        pending = self._pending
        if "%|" not in pending or "steps:" not in pending or self._in_traceback:
            return []
        if "\x1b" in pending:
            pending = ANSI.sub("", pending)
        if not pending.rstrip().endswith("]"):
            return []
        event = parse_progress(pending.rstrip())
        if event is None or (event.step, event.loss) == self._last_progress:
            return []
        self._last_progress = (event.step, event.loss)
        return [event]

    def close(self) -> list[Event]:
        """The last line, if the stream ended without a newline."""
        text, self._pending = self._pending, ""
        return self._events(ANSI.sub("", text))

    def _events(self, text: str) -> list[Event]:
        events: list[Event] = []
        for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
            if not raw:
                continue
            # tqdm leaves its bar without a newline, so the next log record can start on the same line:
            # split after the bar's closing bracket
            while "%|" in raw:
                end = BAR_END.search(raw)
                if end is None or not raw[end.end() :].strip():
                    break
                self._add(raw[: end.end()], events)
                raw = _after_bar(raw[end.end() :])
            self._add(raw, events)
        return events

    def _add(self, raw: str, events: list[Event]) -> None:
        event = parse_line(raw.rstrip(), self._in_traceback)
        if event is None:
            return
        if isinstance(event, TracebackLine):
            self._in_traceback = event.exception is None
        elif isinstance(event, Progress):
            key = (event.step, event.loss)
            if key == self._last_progress:
                return
            self._last_progress = key
        events.append(event)


def _after_bar(rest: str) -> str:
    """The text after a tqdm bar on the same line, without the spaces tqdm pads a shorter bar with: a Rich
    record keeps its 20-column time (blank when the second did not change), so its level lines up."""
    text = rest.lstrip(" ")
    if text[:1] in "DIWEC" and RICH_LEVEL.match(text):
        return " " * 20 + text
    return text if RICH_DATE.match(text) else rest


EVENT_TYPES: dict[str, type] = {cls.__name__: cls for cls in get_args(Event)}


def event_from_dict(data: object) -> Event | None:
    """An event back from its `event_dict` (a line of events.jsonl); None for any other object."""
    if not isinstance(data, dict):
        return None
    kind = EVENT_TYPES.get(data.get("event"))  # type: ignore[arg-type]
    if kind is None:
        return None
    try:
        return kind(**{key: value for key, value in data.items() if key != "event"})
    except TypeError:
        return None


def event_dict(event: Event) -> dict:
    """An event as one JSON-ready object, with its kind (for NDJSON output and events.jsonl)."""
    return {"event": type(event).__name__, **asdict(event)}
