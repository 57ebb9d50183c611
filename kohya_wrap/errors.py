"""One exception family and the exit codes; the CLI has the single boundary that turns them into output.

Also what that boundary needs to say everything in one line the user can act on: `user_error` turns a
failure of the machine or of the user's files (OSError: a full disk, no permission, a read-only file
system, a folder where a file belongs …; a file that is not UTF-8; input nested too deeply to read) into
a KohyaWrapError naming the path and what to do, and `shown`/`shorten`/`clip` keep a message short
whatever it echoes (a 10 MB string pasted into a config is shown as its start and its length).
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path, PurePath
from typing import Literal

Severity = Literal["error", "warning", "info"]

VALUE_LIMIT = 80  # characters of a user's value a message shows
_RUN_LIMIT = 240  # an unbroken run longer than this is a pasted value, never prose (nor a real path)
_LINE_LIMIT = 4000  # a message longer than this keeps its start and its end
_LONG_RUN = re.compile(r"\S{%d,}" % (_RUN_LIMIT + 1))


def shorten(text: object, limit: int = VALUE_LIMIT) -> str:
    """`text` whole up to `limit` characters, else its first `limit` and "… (N chars)"."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


def shown(value: object, limit: int = VALUE_LIMIT) -> str:
    """A user's value as a message quotes it (its repr), shortened like `shorten`."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}… ({len(value)} chars)"
    try:
        return shorten(repr(value), limit)
    except RecursionError:  # a list nested thousands deep
        return f"a deeply nested {type(value).__name__}"


def clip(text: str) -> str:
    """A message as it is printed, whatever it echoes: every unbroken run of more than 240 characters (a
    pasted value, a runaway path) is shortened to its first 80, and a message still longer than 4000
    characters keeps its first 2000 and last 1000 (the fix is at the end)."""
    if len(text) <= _RUN_LIMIT:
        return text
    text = _LONG_RUN.sub(lambda match: shorten(match.group()), text)
    if len(text) > _LINE_LIMIT:
        text = f"{text[:2000]} … ({len(text) - 3000} chars left out) … {text[-1000:]}"
    return text


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # the work itself failed (a child process, an unexpected error)
    USAGE = 2  # bad input: spec, arguments, files, the disk or permissions — the user can fix it
    INTERRUPTED = 130


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the user's input, reported as `where: what — how to fix`."""

    where: str
    what: str
    fix: str = ""

    def __post_init__(self) -> None:
        for name in ("where", "what", "fix"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, clip(value))

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
        message, hint = clip(message), clip(hint)
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


# ----------------------------------------------------------------------------- failures the user can fix


def user_error(exc: BaseException) -> KohyaWrapError | None:
    """The one-line error an exception from the machine or the user's files becomes; None for anything
    else (a bug)."""
    if isinstance(exc, KohyaWrapError):
        return exc
    if isinstance(exc, (OSError, UnicodeDecodeError, RecursionError)):
        return file_error(exc)
    return None


def file_error(
    exc: OSError | UnicodeDecodeError | RecursionError, path: str | os.PathLike[str] | None = None
) -> KohyaWrapError:
    """`exc` as one line naming the file (`path`, where the caller knows it better than the exception)
    and what to do: an OSError by its errno, a file that is not UTF-8, input nested too deeply to read."""
    if isinstance(exc, UnicodeDecodeError):
        return not_utf8(exc, path if path is not None else _file_being_read(exc))
    if isinstance(exc, RecursionError):
        return too_deep(path if path is not None else _file_being_read(exc))
    return os_error(exc, path)


def not_utf8(exc: UnicodeDecodeError, path: str | os.PathLike[str] | None) -> KohyaWrapError:
    byte = f"byte 0x{exc.object[exc.start]:02x} at offset {exc.start}" if exc.start < len(exc.object) else exc.reason
    if path is None:
        return KohyaWrapError(
            f"a file kohya-wrap read is not UTF-8 text ({byte})",
            "save it again as UTF-8 (an editor's encoding setting, or `iconv -t UTF-8`); --debug shows which file",
        )
    return KohyaWrapError(
        f"{path}: not UTF-8 text ({byte})", "save it again as UTF-8 (an editor's encoding setting, or `iconv -t UTF-8`)"
    )


def too_deep(path: str | os.PathLike[str] | None) -> KohyaWrapError:
    if path is None:
        return KohyaWrapError(
            "the input is nested too deeply to read (hundreds of [ or { inside each other)",
            "look for such nesting in the spec, its presets or the JSON file given; if there is none, run again "
            "with --debug and please report it",
        )
    return KohyaWrapError(
        f"{path}: nested too deeply to read (hundreds of [ or {{ inside each other)",
        "no spec or config nests like that: fix the file, or write it again",
    )


# fsutil's atomic writes fill `.<name>.<8 random characters>.tmp` beside the file, then rename it over
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")


def os_error(exc: OSError, path: str | os.PathLike[str] | None = None) -> KohyaWrapError:
    """An OSError as `<path>: <what happened> — <what to do>`."""
    code = exc.errno
    reason = exc.strerror or str(exc) or type(exc).__name__
    name = path if path is not None else _filename(exc.filename)
    second = _filename(getattr(exc, "filename2", None))
    if path is None and second is not None and code in (errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.ENOTEMPTY):
        name = second  # a rename onto it: the target is in the way
    if name is None:
        return KohyaWrapError(shorten(reason, 400), "check the files and folders the command uses; --debug shows more")
    target = Path(name)
    temp = _TEMP_NAME.match(target.name)
    writing = temp is not None  # the file was being written (in its folder, then renamed over)
    if temp:
        target = target.with_name(temp.group("name"))
    folder = _existing_parent(target)
    creating = writing or not os.path.lexists(target)
    p, where = _path(target), _path(folder)
    if code in (errno.EACCES, errno.EPERM):
        if creating:
            return KohyaWrapError(
                f"{where}: permission denied: cannot create {shorten(target.name)} in it",
                f"make the folder writable for your user (`ls -ld {where}` shows its owner and mode), or work on a "
                "copy you own",
            )
        return KohyaWrapError(
            f"{p}: permission denied",
            f"give your user access to it (`ls -l {p}` shows its owner and mode), or work on a copy you own",
        )
    if code == errno.EROFS:
        return KohyaWrapError(
            f"{p}: on a read-only file system", "work in a folder on a writable disk, or mount this one read-write"
        )
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        what = "no space left on the device" if code == errno.ENOSPC else "disk quota exceeded"
        return KohyaWrapError(
            f"{p}: {what}", f"free some space there (`df -h {where}` shows what is left), then run the command again"
        )
    if code == errno.EISDIR:
        return KohyaWrapError(
            f"{p} is a folder, where kohya-wrap needs a file", "move or remove that folder, then run the command again"
        )
    if code == errno.ENOTDIR or (code == errno.EEXIST and os.path.lexists(target) and not target.is_dir()):
        blocker = _file_in_the_way(target)
        return KohyaWrapError(
            f"{_path(blocker)} is a file, where kohya-wrap needs a folder",
            "move or remove that file, then run the command again",
        )
    if code == errno.ELOOP:
        return KohyaWrapError(
            f"{p}: a loop of symbolic links (too many levels)",
            f"fix or remove the link (`ls -l {p}` shows where it points)",
        )
    if code == errno.ENAMETOOLONG:
        return KohyaWrapError(
            f"{p}: the name is too long for the file system", "use a shorter name (at most 255 bytes per file name)"
        )
    if code == errno.ENOENT:
        return KohyaWrapError(f"{p} does not exist", "check the path (it may have been moved or deleted meanwhile)")
    if code == errno.EIO:
        return KohyaWrapError(
            f"{p}: input/output error", "the disk or network drive failed: check it (`dmesg`), or copy the files away"
        )
    if code in (errno.EMFILE, errno.ENFILE):
        return KohyaWrapError(
            f"{p}: too many open files", "raise the limit (`ulimit -n 4096`) and run the command again"
        )
    return KohyaWrapError(f"{p}: {shorten(reason, 400)}", "check the path and its permissions")


def _path(path: object) -> str:
    """A path as a message shows it: whole, unless it is longer than any real one (a pasted value)."""
    text = str(path)
    return text if len(text) <= _RUN_LIMIT else shorten(text)


def _filename(value: object) -> str | None:
    if isinstance(value, (str, bytes, os.PathLike)):
        return os.fsdecode(value)
    return None  # None, or a file descriptor


def _existing_parent(path: Path) -> Path:
    """The nearest folder above `path` that exists (where a new file would be created)."""
    for parent in path.parents:
        try:
            if parent.is_dir():
                return parent
        except OSError:
            continue
    return path.parent


def _file_in_the_way(path: Path) -> Path:
    """The first part of `path` that exists and is not a folder (what ENOTDIR is about)."""
    for part in [*reversed(path.parents), path]:
        try:
            if os.path.lexists(part) and not part.is_dir():
                return part
        except OSError:
            break
    return path


def _file_being_read(exc: BaseException) -> str | None:
    """The file whose reading raised `exc`, where a frame of its traceback says: pathlib's read_text (its
    `self`) or a parser given an open file (tomllib.load's `fp`)."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        owner = frame.f_locals.get("self") if frame.f_code.co_name in ("read_text", "read_bytes") else None
        if isinstance(owner, PurePath):
            found = str(owner)
        handle = frame.f_locals.get("fp")
        if isinstance(getattr(handle, "name", None), str):
            found = handle.name
        tb = tb.tb_next
    return found
