"""How many threads heavy work (prep, hashing, captioning) uses: every core this process may run on."""

from __future__ import annotations

import os
from typing import Any, Callable, ContextManager


def cpu_count() -> int:
    """The cores this process may use (its CPU affinity where the platform has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worker_count(jobs: int) -> int:
    """Threads for `jobs` pieces of work: one per core, never more than the work, at least one."""
    return max(1, min(jobs, cpu_count()))


class _Quiet:
    def __enter__(self) -> "_Quiet":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def advance(self, *_: object, count: int = 1) -> None:
        pass


# Progress over a batch of images: `progress(label, total)` gives a context manager whose
# `advance(count=n)` is called as work finishes (cli/progress.py draws it; the default shows nothing).
Progress = Callable[[str, int], ContextManager[Any]]


def no_progress(label: str, total: int) -> _Quiet:
    return _Quiet()
