"""Every process kohya-wrap starts goes through here (pipx's run_subprocess is the model): its own process
group, an environment without kohya-wrap's PYTHONPATH, both pipes drained continuously (raw output teed
to a log when one is given), and a stop that never leaves an orphan (SIGINT to the group, a grace
period, SIGTERM, SIGKILL).

`Child` is a running process whose output the caller consumes as it comes (training, gen_img.py);
`run` starts one, waits for it and returns its exit code and output (git, pip, introspection, probes),
stopping the whole group on a timeout or Ctrl-C. Reader threads only read and write bytes; they hand text
to the consumer through an unbounded queue, so however slow the consumer is, the child never blocks on a
full pipe.
"""

from __future__ import annotations

import codecs
import os
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

CHUNK = 65536


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
    defaults to `child_env({})`; `log` (binary) gets every byte the child writes, in order."""

    def __init__(
        self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None, log: IO[bytes] | None = None
    ) -> None:
        env = child_env({}) if env is None else env
        self.argv = [str(a) for a in argv]
        self.started = time.monotonic()
        self._log = log
        self._log_lock = threading.Lock()
        self._queue: "queue.Queue[Output | None]" = queue.Queue()
        self.process = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own group: our Ctrl-C is ours to forward, and the whole tree can be stopped
        )
        self.pgid = os.getpgid(self.process.pid)
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
        proc = Path("/proc")
        if not proc.is_dir():
            try:
                os.killpg(self.pgid, 0)
                return True
            except ProcessLookupError:
                return False
        for stat in proc.glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if len(fields) > 2 and int(fields[2]) == self.pgid and fields[0] != "Z":
                return True
        return False

    def stop(self, grace_s: float, escalate_s: float = 5.0) -> None:
        """SIGINT the group (sd-scripts and accelerate end cleanly on it), then SIGTERM after `grace_s`,
        then SIGKILL; returns once no process of the group is left."""
        for sig, wait in ((signal.SIGINT, grace_s), (signal.SIGTERM, escalate_s), (signal.SIGKILL, escalate_s)):
            if not self.signal_group(sig):
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if self.process.poll() is not None and not self.group_alive():
                    return
                time.sleep(0.05)


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
