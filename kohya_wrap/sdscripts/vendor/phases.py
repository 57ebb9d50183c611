"""Named phases with one log: install and upgrade are a row of slow steps (git, pip) whose output would
bury the terminal, so each step is one progress line there and everything it runs and prints goes to
`<vendor>/logs/<action>-<time>.log`; a failing phase names itself and the log."""

from __future__ import annotations

import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable

from kohya_wrap.errors import ExitCode, KohyaWrapError, os_error
from kohya_wrap.launch.process import child_env, run
from kohya_wrap.sdscripts.vendor.layout import Vendor


class PhaseFailed(KohyaWrapError):
    exit_code = ExitCode.FAILED


def pip_env() -> dict[str, str]:
    """The environment of everything an install runs: pip's self-update nag left out of the log."""
    return child_env({"PIP_DISABLE_PIP_VERSION_CHECK": "1"})


@dataclass
class PhaseLog:
    """Runs named phases, writes everything to one log file, reports progress through `report`."""

    path: Path
    report: Callable[[str], None]
    total: int
    done: int = 0
    handle: IO[str] | None = field(default=None, repr=False)

    def __enter__(self) -> "PhaseLog":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a", encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.handle is not None
        self.handle.close()

    def write(self, text: str) -> None:
        assert self.handle is not None
        self.handle.write(text if text.endswith("\n") else text + "\n")
        self.handle.flush()

    def phase(self, name: str, work: Callable[[], str | None]) -> None:
        self.done += 1
        self.report(f"[{self.done}/{self.total}] {name} …")
        self.write(f"\n==== {name} ({time.strftime('%Y-%m-%d %H:%M:%S')})")
        start = time.monotonic()
        try:
            detail = work()
        except PhaseFailed:
            raise
        except KohyaWrapError as exc:
            self.write(f"FAILED: {exc.message}")
            raise PhaseFailed(f"{name} failed: {exc.message}", exc.hint or f"the log is {self.path}") from None
        except subprocess.CalledProcessError as exc:
            raise PhaseFailed(
                f"{name} failed: `{shlex.join(map(str, exc.cmd))}` exited with {exc.returncode}",
                f"see {self.path}:\n{self.tail()}",
            ) from None
        except OSError as exc:  # the vendor folder: no permission, a full disk, …
            self.write(f"FAILED: {type(exc).__name__}: {exc}")
            error = os_error(exc)
            raise PhaseFailed(f"{name} failed: {error.message}", error.hint) from None
        except Exception as exc:  # git errors and the like: keep the log, name the phase
            self.write(f"FAILED: {type(exc).__name__}: {exc}")
            raise PhaseFailed(f"{name} failed: {failure_reason(exc)}", f"the log is {self.path}") from None
        self.report(f"[{self.done}/{self.total}] {name}: {detail or 'done'} ({time.monotonic() - start:.1f} s)")

    def note(self, text: str, then: str | None = None) -> None:
        """A line about the running phase, in the log and on the terminal; `then`, the work that follows
        within the same phase (shown as running)."""
        self.write(text)
        self.report(f"[{self.done}/{self.total}] {text}")
        if then:
            self.report(f"[{self.done}/{self.total}] {then} …")

    def run(self, argv: list[str], cwd: Path | None = None) -> None:
        """A child process (launch.process: its own group, pipes drained) whose stdout and stderr are
        written to the log byte for byte as they come; a non-zero exit raises CalledProcessError."""
        self.write("$ " + shlex.join(argv))
        assert self.handle is not None
        self.handle.flush()  # the text layer is empty now: the child's bytes go in after the command line
        run(argv, cwd=cwd, env=pip_env(), log=self.handle.buffer, check=True)

    def tail(self, lines: int = 12) -> str:
        text = self.path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        return "\n".join("    " + line for line in text)


def failure_reason(exc: Exception) -> str:
    """What went wrong, in one line: for a git command, git's own reason (the `fatal:` or `error:` line of
    its stderr, which gitpython wraps in quotes and a `stderr:` label), else the exception's last line."""
    stderr = getattr(exc, "stderr", None)
    if type(exc).__name__ == "GitCommandError" and isinstance(stderr, str):
        text = stderr.strip().removeprefix("stderr:").strip().strip("'").strip()
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if line.startswith(("fatal:", "error:"))), None)
        if reason or lines:
            return f"git: {reason or lines[-1]}"
        return f"git exited with {getattr(exc, 'status', '?')}"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip().strip("'")]
    return f"{type(exc).__name__}: {lines[-1]}" if lines else type(exc).__name__


def new_log(vendor: Vendor, action: str) -> Path:
    return vendor.logs / f"{action}-{time.strftime('%Y%m%d-%H%M%S')}.log"
