#!/usr/bin/env python3
"""What does a sweep save? The same 2 × 2 trials (learning rate × dim) of the tiny demo model, three ways,
in one session, each on a fresh copy of the project:

  sweep     `kohya-wrap sweep` (latents cached to disk by the first trial, reused by the others)
  separate  four `kohya-wrap run --set …` one after another, as a user would by hand (the project's own
            caching: in memory, per run)
  nocache   `kohya-wrap sweep --no-shared-cache` (each trial caches its own latents)

Prints the wall times and the ratios separate/sweep and nocache/sweep.

    KOHYA_WRAP_SD_SCRIPTS=/path/to/sd-scripts KOHYA_WRAP_SD_PYTHON=/path/to/venv/bin/python \\
    python scripts/bench_sweep.py [--images 64] [--resolution 128] [--steps 2] [--json out.json]

The model is the demo's tiny random SD1.5 (built once into the user cache); everything runs on the CPU.
More and larger images make the latent cache matter more; the model load every trial pays does not change.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRIALS = [("1e-4", "4"), ("1e-4", "8"), ("1e-3", "4"), ("1e-3", "8")]
VARY = ["--vary", "training.learning_rate=1e-4,1e-3", "--vary", "training.network_dim=4,8"]


def make_project(root: Path, images: int, resolution: int, steps: int) -> None:
    from PIL import Image

    from kohya_wrap.demo import ensure_demo_model, write_demo_project
    from kohya_wrap.sdscripts.locate import locate_sd_scripts

    model, tokenizers = ensure_demo_model(locate_sd_scripts(), lambda *a, **k: None)
    write_demo_project(root, model, tokenizers, steps=steps)
    folder = root / "image" / "1_kwdemo shape"
    for path in folder.glob("*"):
        path.unlink()
    for index in range(images):
        Image.effect_noise((resolution, resolution), 20 + index % 60).convert("RGB").save(folder / f"{index}.png")
        (folder / f"{index}.txt").write_text(f"kwdemo shape, noise {index}", encoding="utf-8")
    spec = root / "kohya-wrap.toml"
    text = spec.read_text(encoding="utf-8").replace("resolution = 64", f"resolution = {resolution}")
    spec.write_text(text, encoding="utf-8")


def kohya_wrap(*args: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "kohya_wrap", *args, "--plain"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    if done.returncode != 0:
        sys.exit(f"kohya-wrap {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        template = Path(tmp) / "template"
        make_project(template, args.images, args.resolution, args.steps)
        times: dict[str, float] = {}
        for way in ("sweep", "separate", "nocache"):
            root = Path(tmp) / way
            shutil.copytree(template, root)
            if way == "sweep":
                times[way] = kohya_wrap("sweep", str(root), *VARY)
            elif way == "nocache":
                times[way] = kohya_wrap("sweep", str(root), *VARY, "--no-shared-cache")
            else:
                times[way] = sum(
                    kohya_wrap(
                        "run",
                        str(root),
                        "--set",
                        f"training.learning_rate={lr}",
                        "--set",
                        f"training.network_dim={dim}",
                        "--set",
                        f'name="bench-{n}"',
                    )
                    for n, (lr, dim) in enumerate(TRIALS, 1)
                )
            print(f"{way:>9}: {times[way]:7.1f} s for {len(TRIALS)} trials", flush=True)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "images": args.images,
        "resolution": args.resolution,
        "steps": args.steps,
        "seconds": {k: round(v, 1) for k, v in times.items()},
        "separate_over_sweep": round(times["separate"] / times["sweep"], 3),
        "nocache_over_sweep": round(times["nocache"] / times["sweep"], 3),
    }
    print(
        f"separate runs / sweep: {result['separate_over_sweep']:.2f}x; no shared cache / sweep: "
        f"{result['nocache_over_sweep']:.2f}x"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
