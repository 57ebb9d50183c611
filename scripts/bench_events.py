#!/usr/bin/env python3
"""Log-parser throughput on recorded sd-scripts output (tests/fixtures/sdscripts_logs/*.jsonl), against
a naive parser that tries every pattern with re.search on every line, in the same run.

    python scripts/bench_events.py [--repeat 200]

Prints lines/s for both and the ratio. A "line" is one `\\r`- or `\\n`-separated piece of output, which
is what a tqdm-heavy log is made of.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import time
from pathlib import Path

from kohya_wrap.launch.events import ANSI, EventParser

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "sdscripts_logs"
NAIVE_PATTERNS = [re.compile(p) for p in (
    r"steps:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)\s*\[([\d:]+)<([\d:?]+),\s*([\d.?]+)(s/it|it/s)?(?:,\s*avr_loss=([-+\w.]+))?",
    r"^epoch (\d+)/(\d+)\s*$",
    r"saving checkpoint: (.+?)\s*$",
    r"generating sample images at step / [^:]*: (\d+)",
    r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) +(.*)",
    r"total optimization steps / [^:]*: (\d+)",
    r"^Traceback \(most recent call last\)",
)]


def recorded_text() -> str:
    chunks = []
    for path in sorted(FIXTURES.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if "data" in record:
                chunks.append(record["data"])
    return "".join(chunks)


def naive(text: str) -> int:
    found = 0
    for line in ANSI.sub("", text).replace("\r", "\n").split("\n"):
        for pattern in NAIVE_PATTERNS:
            if pattern.search(line):
                found += 1
                break
    return found


def ours(text: str) -> int:
    parser = EventParser()
    return len(parser.feed(text)) + len(parser.close())


def best_of(runs: int, work, text: str) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work(text)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=200, help="how many copies of the recorded logs to parse at once")
    args = parser.parse_args()
    base = recorded_text()
    if not base:
        raise SystemExit(f"no recorded logs in {FIXTURES}")
    text = base * args.repeat
    lines = text.count("\n") + text.count("\r")
    t_ours, t_naive = best_of(3, ours, text), best_of(3, naive, text)
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"input: {len(base):,} characters of recorded sd-scripts output × {args.repeat} = {lines:,} lines")
    print(f"kohya-wrap EventParser: {lines / t_ours:>12,.0f} lines/s ({t_ours:.3f} s)")
    print(f"naive re.search loop:   {lines / t_naive:>12,.0f} lines/s ({t_naive:.3f} s)")
    print(f"ratio (ours / naive):   {t_naive / t_ours:.2f}×")


if __name__ == "__main__":
    main()
