#!/usr/bin/env python3
"""Does supervision cost training time? The same real sd-scripts training, launched directly (its
output to a file, as a shell redirect would) and through `kohya-wrap run --plain`, alternated in one
session; prints both wall times and the ratio.

    KOHYA_WRAP_SD_SCRIPTS=/path/to/sd-scripts KOHYA_WRAP_SD_PYTHON=/path/to/venv/bin/python \\
    python scripts/bench_overhead.py --model /path/to/tiny-sd15 --tokenizers /path/to/tokenizer-cache \\
        [--steps 20] [--rounds 2]

The model can be the tiny random SD1.5 from scripts/build_tiny_sd15.py; everything runs on the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """\
name = "bench"
[model]
base = "{model}"
[[concepts]]
token = "bench"
class = "thing"
repeats = 1
[dataset]
resolution = 64
caption_extension = ".txt"
[training]
mixed_precision = "no"
network_dim = 4
max_train_steps = {steps}
train_batch_size = 1
sdpa = true
cache_latents = true
max_data_loader_n_workers = 0
tokenizer_cache_dir = "{tokenizers}"
"""


def make_project(root: Path, model: Path, tokenizers: Path, steps: int) -> None:
    from PIL import Image

    folder = root / "image" / "1_bench thing"
    folder.mkdir(parents=True)
    for index in range(8):
        Image.effect_noise((64, 64), 30 + index).convert("RGB").save(folder / f"{index}.png")
        (folder / f"{index}.txt").write_text(f"bench thing, noise {index}", encoding="utf-8")
    (root / "kohya-wrap.toml").write_text(
        SPEC.format(model=model.as_posix(), tokenizers=tokenizers.as_posix(), steps=steps), encoding="utf-8"
    )


def kohya_wrap(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kohya_wrap", *args], capture_output=True, text=True)


def direct(root: Path) -> float:
    plan = json.loads(kohya_wrap("plan", str(root), "--json").stdout)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", COLUMNS="250")
    env.pop("PYTHONPATH", None)
    start = time.perf_counter()
    with open(root / "direct.log", "wb") as log:
        code = subprocess.run(
            plan["command"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=os.environ["KOHYA_WRAP_SD_SCRIPTS"]
        ).returncode
    elapsed = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"direct run failed ({code}); see {root / 'direct.log'}")
    return elapsed


def supervised(root: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "kohya_wrap", "run", str(root), "--plain"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"kohya-wrap run failed ({result.returncode}): {result.stderr[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--tokenizers", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not os.environ.get("KOHYA_WRAP_SD_SCRIPTS"):
        raise SystemExit("set KOHYA_WRAP_SD_SCRIPTS (and KOHYA_WRAP_SD_PYTHON) to a real sd-scripts")
    times: dict[str, list[float]] = {"direct": [], "kohya-wrap run": []}
    with tempfile.TemporaryDirectory(prefix="kw-bench-") as temp:
        for round_ in range(args.rounds):
            for name, work in (("direct", direct), ("kohya-wrap run", supervised)):
                root = Path(temp) / f"{name.replace(' ', '-')}-{round_}"
                make_project(root, args.model, args.tokenizers, args.steps)
                times[name].append(work(root))
                print(f"round {round_ + 1} {name}: {times[name][-1]:.1f} s", flush=True)
    d, k = statistics.median(times["direct"]), statistics.median(times["kohya-wrap run"])
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}; {args.steps} "
        f"steps, {args.rounds} rounds alternated"
    )
    print(f"direct (median):         {d:.1f} s   {times['direct']}")
    print(f"kohya-wrap run (median): {k:.1f} s   {times['kohya-wrap run']}")
    print(f"ratio (run / direct):    {k / d:.3f}")


if __name__ == "__main__":
    main()
