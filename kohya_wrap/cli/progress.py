"""Progress over images: a Rich bar with images/s on a terminal, a plain line every few seconds when
piped (so a log shows the run is alive), nothing with --json (the JSON summary follows).

With `waiting` (what happens before the first image, e.g. gen_img.py loading the model), a piped run
prints its line every few seconds from the start — before the first image too, and between slow ones —
rather than only as images finish; the bar shows `waiting` until the first image."""

from __future__ import annotations

import threading
import time


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class ImageProgress:
    PLAIN_EVERY_S = 5.0
    SLOWER_AFTER_S = 60.0  # with `waiting`: after the first minute a line every 3 × PLAIN_EVERY_S

    def __init__(
        self, verb: str, label: str, total: int, mode: str, waiting: str | None = None, unit: str = "img"
    ) -> None:
        """mode: "bar" (a terminal), "lines" (piped) or "quiet" (--json)."""
        self.verb, self.label, self.total, self.mode = verb, label, total, mode
        self.waiting, self.unit = waiting, unit
        self.bar = None
        self.started = time.monotonic()
        self.last_line = self.started
        self.done = 0
        self.first_done = self.last_done = self.started  # when the first and the newest image were done
        self.first_count = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_output(
        cls, verb: str, label: str, total: int, as_json: bool, waiting: str | None = None, unit: str = "img"
    ) -> "ImageProgress":
        from kohya_wrap.console import is_interactive

        mode = "quiet" if as_json else "bar" if is_interactive() else "lines"
        return cls(verb, label, total, mode, waiting, unit)

    def __enter__(self) -> "ImageProgress":
        self.started = self.last_line = time.monotonic()
        if self.mode == "bar" and self.total:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            from kohya_wrap.console import out

            self.bar = Progress(
                TextColumn(f"{self.verb} {self.label}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                *([TimeElapsedColumn()] if self.waiting else []),
                TimeRemainingColumn(),
                console=out(),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=self.total, rate=self.waiting or "")
        elif self.mode == "lines" and self.waiting and self.total:
            self._thread = threading.Thread(target=self._heartbeat, name="progress-lines", daemon=True)
            self._thread.start()
        return self

    @property
    def rate(self) -> float:
        return self.done / max(time.monotonic() - self.started, 1e-9)

    def line(self) -> str:
        """The piped progress line."""
        head = f"{self.verb} {self.label}: {self.done}/{self.total}"
        if self.waiting is None:
            return f"{head} ({self.rate:.1f} img/s)"
        now = time.monotonic()
        elapsed = now - self.started
        if not self.done:
            return f"{head} {self.unit}s · {_clock(elapsed)} · {self.waiting}"
        # the pace from the first image on: the start-up before it (a model load) is not paid again; with
        # only the first done, the time it took (start-up included: an upper bound), not a pace that falls
        # while the next one renders
        since_first = self.last_done - self.first_done
        if since_first > 0:
            rate = (self.done - self.first_count) / since_first
        else:
            rate = self.first_count / max(self.first_done - self.started, 1e-9)
        rate = max(rate, 1e-9)
        speed = f"{rate:.1f} {self.unit}s/s" if rate >= 1 else f"{1 / rate:.0f} s/{self.unit}"
        eta = max((self.total - self.done) / rate - (now - self.last_done), 0.0)  # the one in hand has begun
        return f"{head} {self.unit}s · {_clock(elapsed)} · {speed} · ETA {_clock(eta)}"

    def _print_line(self) -> None:
        from kohya_wrap.cli.output import echo

        self.last_line = time.monotonic()
        echo(self.line())

    def _heartbeat(self) -> None:
        while not self._stop.wait(min(1.0, self.PLAIN_EVERY_S / 5)):
            now = time.monotonic()
            every = self.PLAIN_EVERY_S * (1 if now - self.started < self.SLOWER_AFTER_S else 3)
            with self._lock:
                if now - self.last_line >= every and self.done < self.total:
                    self._print_line()

    def advance(self, *_: object, count: int = 1) -> None:
        with self._lock:
            now = time.monotonic()
            if not self.done:
                self.first_done, self.first_count = now, count
            self.done += count
            self.last_done = now
            if self.bar is not None:
                speed = self.rate
                slow = self.waiting and speed < 1
                shown = f"{1 / speed:.0f} s/{self.unit}" if slow else f"{speed:.1f} {self.unit}/s"
                self.bar.update(self.task, advance=count, rate=shown)
            elif (
                self.mode == "lines"
                and time.monotonic() - self.last_line >= self.PLAIN_EVERY_S
                and self.done < self.total
            ):
                self._print_line()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.bar is not None:
            self.bar.stop()
