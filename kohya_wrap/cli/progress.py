"""Progress over images: a Rich bar with images/s on a terminal, a plain line every few seconds when
piped (so a log shows the run is alive), nothing with --json (the JSON summary follows)."""

from __future__ import annotations

import time


class ImageProgress:
    PLAIN_EVERY_S = 5.0

    def __init__(self, verb: str, label: str, total: int, mode: str) -> None:
        """mode: "bar" (a terminal), "lines" (piped) or "quiet" (--json)."""
        self.verb, self.label, self.total, self.mode = verb, label, total, mode
        self.bar = None
        self.started = time.monotonic()
        self.last_line = self.started
        self.done = 0

    @classmethod
    def for_output(cls, verb: str, label: str, total: int, as_json: bool) -> "ImageProgress":
        from kohya_wrap.console import is_interactive

        return cls(verb, label, total, "quiet" if as_json else "bar" if is_interactive() else "lines")

    def __enter__(self) -> "ImageProgress":
        if self.mode == "bar" and self.total:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            from kohya_wrap.console import out

            self.bar = Progress(
                TextColumn(f"{self.verb} {self.label}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=out(),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=self.total, rate="")
        return self

    @property
    def rate(self) -> float:
        return self.done / max(time.monotonic() - self.started, 1e-9)

    def advance(self, *_: object, count: int = 1) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(self.task, advance=count, rate=f"{self.rate:.1f} img/s")
        elif (
            self.mode == "lines" and time.monotonic() - self.last_line >= self.PLAIN_EVERY_S and self.done < self.total
        ):
            from kohya_wrap.cli.output import echo

            self.last_line = time.monotonic()
            echo(f"{self.verb} {self.label}: {self.done}/{self.total} ({self.rate:.1f} img/s)")

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
