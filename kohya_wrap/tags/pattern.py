"""A user's `--regex`, matched against whole tags under a time limit.

Python's `re` backtracks without a bound: `(a+)+$` or `(a|aa)+$` on a tag of 40 characters would run
for hours, and no thread can stop it. But `re` checks for signals while it backtracks, so each match
runs under a SIGALRM timer: a pattern that takes over `REGEX_TAG_SECONDS` on one tag, or
`REGEX_TOTAL_SECONDS` over all of them, ends the command with a KohyaWrapError before anything is
written. Only the main thread receives signals: called from another thread (a Python caller's own
threads), matching runs without the bound.
"""

from __future__ import annotations

import re
import signal
import threading
import time

from kohya_wrap.errors import KohyaWrapError

REGEX_TAG_SECONDS = 1.0  # one tag: a sane pattern takes microseconds
REGEX_TOTAL_SECONDS = 60.0  # all different tags of one command: a million take about 8 s (measured)


class _OutOfTime(Exception):
    pass


class TagPattern:
    """`re.compile(pattern)` whose `fullmatch` is bounded in time (see the module doc); each different
    tag is matched once (tags repeat across captions)."""

    def __init__(self, pattern: str) -> None:
        self.text = pattern
        try:
            self._compiled = re.compile(pattern)
        except (re.error, RecursionError, OverflowError) as exc:
            raise KohyaWrapError(
                f"--regex: {pattern!r} is not a valid regular expression ({exc})",
                'check the pattern; it must match a whole tag, e.g. ".* hair"',
            ) from None
        self._seen: dict[str, re.Match[str] | None] = {}
        self._armed = False
        self.spent = 0.0  # seconds of matching so far

    def fullmatch(self, key: str) -> re.Match[str] | None:
        """The match of the whole tag, or None; a KohyaWrapError when the time limit runs out."""
        if key not in self._seen:
            self._seen[key] = self._match(key)
        return self._seen[key]

    def _match(self, key: str) -> re.Match[str] | None:
        limit = min(REGEX_TAG_SECONDS, REGEX_TOTAL_SECONDS - self.spent)
        bounded = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
        start = time.perf_counter()
        if not bounded:
            try:
                return self._compiled.fullmatch(key)
            finally:
                self.spent += time.perf_counter() - start
        previous = signal.signal(signal.SIGALRM, self._alarm)
        try:
            self._armed = True
            signal.setitimer(signal.ITIMER_REAL, max(limit, 0.001))
            found = self._compiled.fullmatch(key)
            self._armed = False
            return found
        except _OutOfTime:
            raise self._too_slow(key, per_tag=limit == REGEX_TAG_SECONDS) from None
        finally:
            self._armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            self.spent += time.perf_counter() - start

    def _alarm(self, signum, frame) -> None:
        if self._armed:  # a late alarm, after the match returned, is ignored
            raise _OutOfTime

    def _too_slow(self, key: str, per_tag: bool) -> KohyaWrapError:
        shown = key if len(key) <= 40 else key[:39] + "…"
        took = (
            f"over {REGEX_TAG_SECONDS:g} s on the tag {shown!r}"
            if per_tag
            else f"over {REGEX_TOTAL_SECONDS:g} s in all"
        )
        return KohyaWrapError(
            f"--regex {self.text!r}: matching took {took}, so nothing was changed; the pattern backtracks "
            "without end (a repeat inside a repeat, like (a+)+ or (a|aa)*)",
            'write it without nested or overlapping repeats, e.g. "a+" for "(a+)+"',
        )

    def expand(self, match: re.Match[str], template: str) -> str:
        try:
            return match.expand(template)
        except (re.error, IndexError) as exc:
            raise KohyaWrapError(
                f"NEW {template!r}: invalid group reference or escape ({exc})",
                "refer only to groups the pattern has, e.g. \\1",
            ) from None
