"""The only place that creates Rich consoles; everything user-visible goes through these two."""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


@lru_cache(maxsize=None)
def _console(stderr: bool) -> "Console":
    from rich.console import Console

    # Rich honours NO_COLOR itself; highlight=False keeps paths and numbers as the user wrote them.
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def out() -> "Console":
    return _console(False)


def err() -> "Console":
    return _console(True)


def is_interactive() -> bool:
    """True when stdout is a terminal a person watches (progress bars, colours)."""
    return sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
