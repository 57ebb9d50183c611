"""The guard: a tiny process started beside every child (launch/process.py `Child`) so the child's whole
process group dies with its supervisor, even when the supervisor cannot clean up (SIGKILL, the OOM
killer, a Ray worker killed under it). The child runs in a process group of its own, so without this a
supervisor killed with SIGKILL leaves accelerate and sd-scripts training, unsupervised.

The supervisor holds the only write end of a pipe whose read end is the guard's stdin, and writes the
child's process group id into it as soon as the child starts. The guard blocks reading it:
- `release` (the supervisor saw the group end): it exits, killing nothing;
- end of file without `release` (the supervisor is gone, however it died — the kernel closes its end):
  SIGTERM to the group, then SIGKILL to whatever is left after the grace period.

Run as `python -I path/to/guard.py GRACE_S`; standard library only, so it starts fast. It lives in
a session of its own and ignores SIGINT and SIGHUP, so a Ctrl-C at the terminal or a hang-up does not take
it down with the supervisor's group.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

RELEASE = b"release"


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies awaiting their reaper do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def kill_group(pgid: int, grace_s: float) -> None:
    """SIGTERM to the group, then SIGKILL after `grace_s` if any of it is left."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not group_alive(pgid):
                return
            time.sleep(0.05)


def watch(fd: int, grace_s: float) -> int:
    """Read the supervisor's pipe until it says `release` or closes; returns the exit status."""
    received = b""
    while True:
        try:
            data = os.read(fd, 256)
        except InterruptedError:  # pragma: no cover - PEP 475 retries reads; kept for old kernels
            continue
        if not data:
            break
        received += data
        if RELEASE in received:
            return 0
    head = received.split(b"\n", 1)[0].strip()
    if not head.isdigit() or int(head) <= 1:
        return 0  # the supervisor died before its child started: nothing to stop
    kill_group(int(head), grace_s)
    return 0


def main(argv: list[str]) -> int:
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    grace_s = float(argv[0]) if argv else 5.0
    return watch(sys.stdin.fileno(), grace_s)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
