"""SIGTERM and SIGHUP stop a supervised run as Ctrl-C does.

`kill PID` (systemd's stop, `docker stop`, `timeout`) sends SIGTERM, and a dropped SSH connection sends
SIGHUP; Python's default for both is to die at once, which leaves the training processes (in their own
process group, so the signal never reached them) running unsupervised, with no record. While a
`StopSignals` is armed, each of them raises `Signalled` — a KeyboardInterrupt, so every path that
already stops the child cleanly on Ctrl-C does so on them too — and the exit code is 128 + the signal's
number (143, 129), as a shell reports a process ended by it. Disarmed (writing the record), a signal is
kept and raised once armed again, never in the middle of a write.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Signalled(KeyboardInterrupt):
    """A stop signal other than Ctrl-C arrived."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopSignals:
    """Installs the handlers on entering (main thread only; elsewhere it does nothing) and puts the old
    ones back on leaving. Armed, a signal raises at once; disarmed (the default), it is kept, and `arm()`
    raises it then."""

    def __init__(self) -> None:
        self.armed = False
        self.pending: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.armed:
            raise Signalled(signum)
        if self.pending is None:
            self.pending = signum

    def arm(self) -> None:
        """Raise from now on, and at once for a signal that came while disarmed."""
        self.armed = True
        if self.pending is not None:
            signum, self.pending = self.pending, None
            raise Signalled(signum)

    def disarm(self) -> None:
        self.armed = False
