"""One exception family and the exit codes; the CLI has the single boundary that turns them into output."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

Severity = Literal["error", "warning", "info"]


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # the work itself failed (a child process, an unexpected error)
    USAGE = 2  # bad input: spec, arguments, files — the user can fix it
    INTERRUPTED = 130


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the user's input, reported as `where: what — how to fix`."""

    where: str
    what: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        return f"{text} — {self.fix}" if self.fix else text


@dataclass(frozen=True)
class Finding(Problem):
    """A problem `check` or `lint` found in a project; errors stop `plan` and `run`, warnings do not."""

    severity: Severity = "error"

    def as_dict(self) -> dict[str, str]:
        return {"severity": self.severity, "where": self.where, "what": self.what, "fix": self.fix}


class KohyaWrapError(Exception):
    """An error the user can act on; carries a hint and an exit code."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def lines(self) -> list[str]:
        return [f"{self.message} — {self.hint}" if self.hint else self.message]


class SpecError(KohyaWrapError):
    """Everything wrong with a spec, collected so the user fixes it all in one pass."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        count = len(problems)
        super().__init__(f"{source}: {count} problem{'s' if count != 1 else ''}")
        self.source = source
        self.problems = problems

    def lines(self) -> list[str]:
        return [self.message + ":"] + ["  " + p.line() for p in self.problems]


class ChildFailed(KohyaWrapError):
    exit_code = ExitCode.FAILED
