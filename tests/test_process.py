"""The child process supervisor: pipes drained while the consumer is slow, output teed raw, and a stop
that leaves no process of the group alive."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from kohya_wrap.launch.process import Child, Exited, Output, child_env

FLOOD = """
import sys
for i in range(20000):
    sys.stdout.write(f"out {i} " + "x" * 100 + "\\n")
    sys.stderr.write(f"\\rsteps: {i}")
sys.stderr.write("\\n")
print("done 中文", flush=True)
sys.exit(3)
"""

STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)  # like a child that ignores Ctrl-C
deaf = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
deaf += "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
grandchild = subprocess.Popen([sys.executable, "-c", deaf])
print(grandchild.pid, flush=True)
time.sleep(60)
"""


def run_child(tmp_path: Path, code: str) -> Child:
    log = open(tmp_path / "train.log", "wb")
    return Child([sys.executable, "-c", code], child_env({"PYTHONUNBUFFERED": "1"}), tmp_path, log)


def test_output_is_drained_teed_and_ordered_per_stream(tmp_path):
    child = run_child(tmp_path, FLOOD)
    time.sleep(1.0)  # the consumer is late: ~4 MB have been written meanwhile, far past a pipe's 64 KB
    stdout, stderr, exited = [], [], None
    for item in child.events():
        if isinstance(item, Output):
            (stdout if item.stream == "stdout" else stderr).append(item.text)
        elif isinstance(item, Exited):
            exited = item
    assert exited is not None and exited.returncode == 3
    out = "".join(stdout)
    assert out.count("\n") == 20001 and out.endswith("done 中文\n")
    assert "".join(stderr).count("\rsteps:") == 20000
    raw = (tmp_path / "train.log").read_bytes()
    assert len(raw) == len(out.encode()) + len("".join(stderr).encode())


def test_stop_escalates_and_leaves_no_process(tmp_path):
    child = run_child(tmp_path, STUBBORN)
    events = child.events(poll=0.05)
    first = next(item for item in events if isinstance(item, Output))
    grandchild = int(first.text.split()[0])
    start = time.monotonic()
    child.stop(grace_s=0.5, escalate_s=0.5)
    assert time.monotonic() - start < 5
    assert not child.group_alive()
    stat = Path(f"/proc/{grandchild}/stat")
    state = stat.read_text().rpartition(")")[2].split()[0] if stat.exists() else "gone"
    assert state in ("gone", "Z")  # killed (a zombie only until its new parent reaps it)
    final = [item for item in events if isinstance(item, Exited)]
    assert (
        final and final[0].returncode == -signal.SIGTERM
    )  # the child gave way to SIGTERM; its grandchild needed SIGKILL
