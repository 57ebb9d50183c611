"""Every process kohya-wrap starts goes through here (pipx's run_subprocess is the model): its own process
group, an environment without kohya-wrap's PYTHONPATH, both pipes drained continuously (raw output teed
to a log when one is given), and a stop that never leaves an orphan (SIGINT to the group, a grace
period, SIGTERM, SIGKILL).

`Child` is a running process whose output the caller consumes as it comes (training, gen_img.py);
`run` starts one, waits for it and returns its exit code and output (git, pip, introspection, probes),
stopping the whole group on a timeout or Ctrl-C. Reader threads only read and write bytes; they hand text
to the consumer through an unbounded queue, so however slow the consumer is, the child never blocks on a
full pipe.

A child also dies with its supervisor when the supervisor cannot stop it (SIGKILL, the OOM killer): a
guard process (launch/guard.py) started beside it kills its group once the supervisor's end of a pipe
closes. `die_with_parent` (Linux) also has the kernel SIGKILL the child itself when the thread that
started it dies (PR_SET_PDEATHSIG), for a child that is itself a supervisor (`sweep-trial` under a Ray
worker).
"""

from __future__ import annotations

import codecs
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterator

from kohya_wrap.launch import guard

CHUNK = 65536
GUARD_GRACE_S = 5.0  # how long the guard waits after SIGTERM before SIGKILL
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class Output:
    stream: str  # "stdout" | "stderr"
    text: str
    at: float  # seconds since start


@dataclass(frozen=True)
class Exited:
    returncode: int
    at: float


class Child:
    """A running command; iterate `events()` (or call `poll()`) for its output until it exits. `env`
    defaults to `child_env({})`; `log` (binary) gets every byte the child writes, in order. `guard`:
    start the guard that kills the child's group if this process dies first (launch/guard.py);
    `die_with_parent`: the kernel kills the child when the calling thread dies (Linux; elsewhere ignored)."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        log: IO[bytes] | None = None,
        *,
        guard: bool = True,
        die_with_parent: bool = False,
    ) -> None:
        env = child_env({}) if env is None else env
        self.argv = [str(a) for a in argv]
        self.started = time.monotonic()
        self._log = log
        self._log_lock = threading.Lock()
        self._queue: "queue.Queue[Output | None]" = queue.Queue()
        # the guard first, so it is already waiting when the child starts: between the child's start and
        # the line below that hands it the group id, a supervisor killed leaves the guard nothing to stop
        self._guard, self._guard_pipe = _start_guard() if guard else (None, None)
        try:
            self.process = subprocess.Popen(
                self.argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own group: our Ctrl-C is ours to forward, the whole tree can be stopped
                preexec_fn=_die_with(os.getpid()) if die_with_parent else None,
            )
        except BaseException:
            self._release_guard()
            raise
        self.pgid = os.getpgid(self.process.pid)
        if self._guard_pipe is not None:
            try:
                self._guard_pipe.write(f"{self.pgid}\n".encode())
                self._guard_pipe.flush()
            except OSError:  # the guard could not start or died: training goes on unguarded, as before
                self._guard_pipe = None
        self._readers = [
            threading.Thread(target=self._drain, args=(self.process.stdout, "stdout"), daemon=True),
            threading.Thread(target=self._drain, args=(self.process.stderr, "stderr"), daemon=True),
        ]
        self._open_pipes = len(self._readers)
        self._exited: Exited | None = None
        for reader in self._readers:
            reader.start()

    def _drain(self, pipe: IO[bytes], stream: str) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        fd = pipe.fileno()
        while True:
            data = os.read(fd, CHUNK)
            if not data:
                break
            if self._log is not None:
                with self._log_lock:
                    self._log.write(data)
                    self._log.flush()
            text = decoder.decode(data)
            if text:
                self._queue.put(Output(stream, text, time.monotonic() - self.started))
        tail = decoder.decode(b"", final=True)
        if tail:
            self._queue.put(Output(stream, tail, time.monotonic() - self.started))
        self._queue.put(None)

    def poll(self, timeout: float = 0.1) -> Output | Exited | None:
        """The next piece of output, None after `timeout` seconds of silence (a chance to redraw or stop),
        or Exited once both pipes are closed and the process is gone (then Exited on every call).
        Not a generator, so a KeyboardInterrupt raised while waiting leaves it usable."""
        if self._exited is not None:
            return self._exited
        while self._open_pipes:
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                return None
            if item is None:
                self._open_pipes -= 1
            else:
                return item
        self._exited = Exited(self.process.wait(), time.monotonic() - self.started)
        if not self.group_alive():
            self._release_guard()
        return self._exited

    def events(self, poll: float = 0.1) -> Iterator[Output | Exited | None]:
        while True:
            item = self.poll(poll)
            yield item
            if isinstance(item, Exited):
                return

    def signal_group(self, sig: int) -> bool:
        try:
            os.killpg(self.pgid, sig)
            return True
        except ProcessLookupError:
            return False

    def group_alive(self) -> bool:
        """Whether any process of the group still runs (zombies awaiting their reaper do not count)."""
        return guard.group_alive(self.pgid)

    def _release_guard(self) -> None:
        """The group is gone (or never started): the guard ends without killing anything."""
        pipe, self._guard_pipe = self._guard_pipe, None
        if pipe is not None:
            try:
                pipe.write(guard.RELEASE + b"\n")
                pipe.close()
            except OSError:
                pass
        if self._guard is not None:
            try:
                self._guard.wait(timeout=2.0)
            except subprocess.TimeoutExpired:  # it ends on its own: no reason to hold the caller up
                pass

    def stop(self, grace_s: float, escalate_s: float = 5.0) -> None:
        """SIGINT the group (sd-scripts and accelerate end cleanly on it), then SIGTERM after `grace_s`,
        then SIGKILL; returns once no process of the group is left."""
        for sig, wait in ((signal.SIGINT, grace_s), (signal.SIGTERM, escalate_s), (signal.SIGKILL, escalate_s)):
            if not self.signal_group(sig):
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if self.process.poll() is not None and not self.group_alive():
                    self._release_guard()
                    return
                time.sleep(0.05)
        if self.process.poll() is not None and not self.group_alive():
            self._release_guard()


def _start_guard() -> tuple[subprocess.Popen | None, IO[bytes] | None]:
    """The guard process (launch/guard.py), reading the read end of a pipe whose write end only this
    process holds (os.pipe is not inherited by other children)."""
    read_end, write_end = os.pipe()
    try:
        process = subprocess.Popen(
            # the file itself, isolated (-I): standard library only, nothing of the user's environment needed
            [sys.executable, "-I", guard.__file__, str(GUARD_GRACE_S)],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # not in our group: a Ctrl-C or a group kill of the supervisor spares it
        )
    except OSError:
        os.close(read_end)
        os.close(write_end)
        return None, None
    os.close(read_end)
    return process, os.fdopen(write_end, "wb")


def _die_with(parent: int) -> Callable[[], None] | None:
    """A preexec_fn: SIGKILL this child when the thread that started it dies (Linux prctl), and exit at
    once if that parent is already gone. Async-signal-safe enough: one libc call and getppid."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return arm


@dataclass(frozen=True)
class Completed:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> "Completed":
        if self.returncode != 0:
            raise subprocess.CalledProcessError(self.returncode, self.argv, self.stdout, self.stderr)
        return self


def run(
    argv: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    log: IO[bytes] | None = None,
    check: bool = False,
) -> Completed:
    """Run a command to its end and return its output (also teed to `log`). A timeout raises
    subprocess.TimeoutExpired and Ctrl-C re-raises KeyboardInterrupt, each after stopping the whole group."""
    child = Child(argv, env, cwd, log)
    streams: dict[str, list[str]] = {"stdout": [], "stderr": []}
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            item = child.poll(0.1)
            if isinstance(item, Output):
                streams[item.stream].append(item.text)
            elif isinstance(item, Exited):
                break
            if deadline is not None and time.monotonic() > deadline:
                child.stop(0.0, escalate_s=2.0)
                raise subprocess.TimeoutExpired(
                    child.argv, timeout or 0, "".join(streams["stdout"]), "".join(streams["stderr"])
                )
    except KeyboardInterrupt:
        child.stop(2.0, escalate_s=2.0)
        raise
    result = Completed(child.argv, item.returncode, "".join(streams["stdout"]), "".join(streams["stderr"]))
    return result.check() if check else result


def spawn_detached(
    argv: list[str], log_path: Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start `argv` in a session of its own with no terminal (stdin from /dev/null, stdout and stderr
    into `log_path`), not waited for: it outlives this process and the terminal (no SIGHUP reaches it).
    For `run --detach`, whose child is kohya-wrap's own supervisor."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [str(a) for a in argv],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    _DETACHED.append(process)  # not waited for; kept so no finalizer warns that it still runs
    return process


_DETACHED: list[subprocess.Popen] = []


def child_env(overrides: dict[str, str]) -> dict[str, str]:
    """The environment for anything run in sd-scripts' venv: kohya-wrap's own PYTHONPATH must not leak in."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(overrides)
    return env
