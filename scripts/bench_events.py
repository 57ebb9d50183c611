#!/usr/bin/env python3
"""Log-parser throughput on recorded sd-scripts output (tests/fixtures/sdscripts_logs/*.jsonl), against
a naive parser that tries every pattern with re.search on every line, in the same run.

    python scripts/bench_events.py [--repeat 200]

Both build typed events; the naive one tries every pattern with re.search on every line. Prints
lines/s for both and the ratio. A "line" is one `\\r`- or `\\n`-separated piece of output, which
is what a tqdm-heavy log is made of.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import time
from pathlib import Path

from kohya_wrap.launch.events import (
    ANSI,
    CheckpointSaved,
    Epoch,
    EventParser,
    Line,
    LogMessage,
    PlanLine,
    Progress,
    SamplesStarted,
    TracebackLine,
)

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "sdscripts_logs"
# The naive way: every pattern tried with re.search on every line, in order, building the same events.
NAIVE = [
    (
        re.compile(
            r"steps:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)\s*\[([\d:]+)<([\d:?]+),\s*([\d.?]+)(s/it|it/s)?(?:,\s*avr_loss=([-+\w.]+))?"
        ),
        lambda m: Progress(int(m[1]), int(m[2]), 0.0, None, None, float(m[7]) if m[7] else None),
    ),
    (re.compile(r"^epoch (\d+)/(\d+)\s*$"), lambda m: Epoch(int(m[1]), int(m[2]))),
    (re.compile(r"saving checkpoint: (.+?)\s*$"), lambda m: CheckpointSaved(m[1])),
    (re.compile(r"generating sample images at step / [^:]*: (\d+)"), lambda m: SamplesStarted(int(m[1]))),
    (re.compile(r"total optimization steps / [^:]*: (\d+)"), lambda m: PlanLine("total_steps", int(m[1]))),
    (re.compile(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) +(.*)"), lambda m: LogMessage(m[1], m[2].strip())),
    (re.compile(r"^Traceback \(most recent call last\)"), lambda m: TracebackLine(m[0])),
]


def recorded_text() -> str:
    chunks = []
    for path in sorted(FIXTURES.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if "data" in record:
                chunks.append(record["data"])
    return "".join(chunks)


def naive(text: str) -> int:
    events = []
    for line in ANSI.sub("", text).replace("\r", "\n").split("\n"):
        if not line.strip():
            continue
        for pattern, build in NAIVE:
            match = pattern.search(line)
            if match:
                events.append(build(match))
                break
        else:
            events.append(Line(line))
    return len(events)


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
    found_ours, found_naive = ours(base), naive(base)
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"input: {len(base):,} characters of recorded sd-scripts output × {args.repeat} = {lines:,} lines")
    print(f"kohya-wrap EventParser: {lines / t_ours:>12,.0f} lines/s ({t_ours:.3f} s)")
    print(f"naive re.search loop:   {lines / t_naive:>12,.0f} lines/s ({t_naive:.3f} s)")
    print(f"ratio (ours / naive):   {t_naive / t_ours:.2f}×")
    print(
        f"events in one copy: ours {found_ours:,} (repeated tqdm lines merged, records glued to bars split off), "
        f"naive {found_naive:,}"
    )


if __name__ == "__main__":
    main()
