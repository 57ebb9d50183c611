#!/usr/bin/env python3
"""How long does `kohya-wrap check` take on a real-sized project, the first time and the second?

Builds a project of `--count` captioned training images as a phone or camera gives them: large JPEG
photos (4000×3000, ~2.7 MB, every fourth stored sideways with EXIF orientation 6), a few PNGs with
transparent backgrounds, a few with a fully opaque alpha channel, and a few small images. Then runs
the whole `kohya-wrap check --json` command in a fresh process, cold (the project's `.kohya-wrap/cache`
removed; the files themselves are in the OS page cache either way) and warm (the same command again),
for this working tree and for the code of a git revision (`--before`, default HEAD: the code without
uncommitted changes), interleaved, medians of `--rounds`. Also the start-up floor (`kohya-wrap --help`)
and, in this process, the folder scan alone: the revision's `scan_folder` against this tree's, cold and
warm (the rest of a cold `check` is mostly lint's difference hashes, a decode of every image).

    python scripts/bench_check.py [--count 200] [--rounds 3] [--size 4000x3000] [--before REF] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_prep import photo  # noqa: E402 - the same photo-like images as the prep benchmark

SPEC = """\
extends = "sd15-character"
name = "bench_v1"

[model]
base = "{base}"

[[concepts]]
token = "mytoken"
class = "woman"
repeats = 10
"""


def make_one(folder: Path, index: int, kind: str, size: tuple[int, int]) -> None:
    from PIL import Image, ImageDraw

    if kind == "photo":
        exif = Image.Exif()
        if index % 4 == 0:
            exif[0x0112] = 6  # stored sideways, as phones do
        photo(size, index).save(folder / f"photo{index:03d}.jpg", quality=90, exif=exif.tobytes())
    elif kind in ("cutout", "opaque"):
        side = 2048
        image = photo((side, side), index).convert("RGBA")
        if kind == "cutout":  # a subject on a transparent background
            mask = Image.new("L", (side, side), 0)
            ImageDraw.Draw(mask).ellipse((side // 8, side // 16, side * 7 // 8, side * 15 // 16), fill=255)
            image.putalpha(mask)
        image.save(folder / f"{kind}{index:03d}.png", compress_level=1)
    else:  # small
        photo((200, 150), index).save(folder / f"small{index:03d}.jpg", quality=90)  # far below 512
    stem = {"photo": "photo", "cutout": "cutout", "opaque": "opaque", "small": "small"}[kind]
    (folder / f"{stem}{index:03d}.txt").write_text(f"mytoken woman, photo {index}, outdoors", encoding="utf-8")


def make_project(root: Path, count: int, size: tuple[int, int]) -> None:
    folder = root / "image" / "10_mytoken woman"
    folder.mkdir(parents=True)
    base = root / "models" / "base.safetensors"
    base.parent.mkdir()
    base.write_bytes(b"\0" * 16)
    (root / "kohya-wrap.toml").write_text(SPEC.format(base=base.as_posix()), encoding="utf-8")
    kinds = ["cutout"] * 4 + ["opaque"] * 2 + ["small"] * 2
    kinds += ["photo"] * max(0, count - len(kinds))
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(lambda job: make_one(folder, job[0], job[1], size), enumerate(kinds[:count])))


def export_revision(ref: str, target: Path) -> bool:
    """The package (and its presets) as committed at `ref` (git archive: reads the repository, changes nothing)."""
    archive = target / "code.tar"
    with open(archive, "wb") as handle:
        done = subprocess.run(["git", "-C", str(REPO), "archive", ref, "kohya_wrap", "presets"], stdout=handle)
    if done.returncode != 0:
        return False
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    archive.unlink()
    return True


def run(args: list[str], code: Path | None, env: dict[str, str], where: Path) -> tuple[float, str]:
    """`kohya-wrap ARGS` in a fresh process, on the package in `code` (else the working tree's, through
    the editable install), from a folder holding no other kohya_wrap (`-m` puts the current folder first)."""
    env = dict(env)
    if code is not None:
        env["PYTHONPATH"] = str(code)  # ahead of the editable install's path entry
    started, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(
        [sys.executable, "-m", "kohya_wrap", *args], capture_output=True, text=True, env=env, cwd=code or where
    )
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 2):
        raise SystemExit(f"kohya-wrap {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    CPU_SECONDS.append(_children_cpu() - cpu)
    return seconds, done.stdout


CPU_SECONDS: list[float] = []  # user + system time of each run above, all its threads


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def scan_times(folder: Path, before: Path | None, rounds: int) -> dict[str, list[float]]:
    """In this process: the folder scan alone (what changed), `before`'s scan_folder (sizes and integrity,
    one image after another) against this tree's cold (cache removed) and warm."""
    import importlib.util

    from kohya_wrap.dataset.facts import cache_file
    from kohya_wrap.dataset.scan import project_of, scan_folder

    old = None
    if before is not None and (before / "kohya_wrap" / "dataset" / "scan.py").is_file():
        spec = importlib.util.spec_from_file_location("old_scan", before / "kohya_wrap" / "dataset" / "scan.py")
        old = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules["old_scan"] = old  # dataclasses look their module up
        spec.loader.exec_module(old)  # type: ignore[union-attr]
    root = project_of(folder)
    times: dict[str, list[float]] = {}
    for _ in range(rounds):
        if old is not None:
            started = time.perf_counter()
            old.scan_folder(folder)
            times.setdefault("scan_folder, before", []).append(time.perf_counter() - started)
        if root is not None:
            cache_file(root).unlink(missing_ok=True)
        for phase in ("cold", "warm"):
            started = time.perf_counter()
            scan_folder(folder)
            times.setdefault(f"scan_folder, now: {phase}", []).append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", default="4000x3000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", default="HEAD", help="git revision to compare with ('' for none)")
    parser.add_argument("--keep", type=Path, help="build the project here and keep it (reused if it exists)")
    args = parser.parse_args()
    size = tuple(map(int, args.size.split("x")))

    with tempfile.TemporaryDirectory(prefix="kw-bench-check-") as temp:
        temp_path = Path(temp)
        env = os.environ | {  # no user presets, config or model caches
            "XDG_CONFIG_HOME": str(temp_path / "config"),
            "XDG_DATA_HOME": str(temp_path / "data"),
            "XDG_CACHE_HOME": str(temp_path / "cache"),
            "HF_HOME": str(temp_path / "hf"),
            "HF_HUB_OFFLINE": "1",
            "KOHYA_WRAP_VENDOR": str(temp_path / "vendor"),
        }
        root = args.keep or temp_path / "project"
        if not (root / "kohya-wrap.toml").is_file():
            started = time.perf_counter()
            make_project(root, args.count, size)  # type: ignore[arg-type]
            print(f"project built in {time.perf_counter() - started:.1f} s", flush=True)
        folder = root / "image" / "10_mytoken woman"
        images = [p for p in folder.iterdir() if p.suffix in (".jpg", ".png")]
        megabytes = sum(p.stat().st_size for p in images) / 1e6
        print(f"{len(images)} images, {megabytes:.0f} MB, in {root}", flush=True)

        variants: dict[str, Path | None] = {"now": None}
        if args.before:
            before = temp_path / "before"
            before.mkdir()
            if export_revision(args.before, before):
                variants = {f"before ({args.before})": before, "now": None}
            else:
                print(f"git archive {args.before} failed: comparing nothing", flush=True)
        times: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        outputs: dict[str, str] = {}
        for _ in range(args.rounds):
            seconds, _ = run(["--help"], None, env, temp_path)
            times.setdefault("start-up floor: kohya-wrap --help", []).append(seconds)
            cpu.setdefault("start-up floor: kohya-wrap --help", []).append(CPU_SECONDS[-1])
            for name, code in variants.items():
                shutil.rmtree(root / ".kohya-wrap" / "cache", ignore_errors=True)
                seconds, outputs[name] = run(["check", str(root), "--json"], code, env, temp_path)
                times.setdefault(f"{name}: cold", []).append(seconds)
                cpu.setdefault(f"{name}: cold", []).append(CPU_SECONDS[-1])
                seconds, _ = run(["check", str(root), "--json"], code, env, temp_path)
                times.setdefault(f"{name}: warm", []).append(seconds)
                cpu.setdefault(f"{name}: warm", []).append(CPU_SECONDS[-1])
        times.update(scan_times(folder, variants.get(f"before ({args.before})"), args.rounds))
        medians = {name: statistics.median(values) for name, values in times.items()}
        print(f"\nkohya-wrap check on {len(images)} images, medians of {args.rounds} rounds (s):")
        print(f"  {'':40s} {'wall':>6s}   {'cpu':>6s}   (wall of each round)")
        for name, value in medians.items():
            used = f"{statistics.median(cpu[name]):6.2f}" if name in cpu else " " * 6
            print(f"  {name:40s} {value:6.2f}   {used}   ({', '.join(f'{v:.2f}' for v in times[name])})")
        if len(variants) == 2:
            old = next(iter(variants))
            for phase in ("cold", "warm"):
                ratio = medians[f"{old}: {phase}"] / medians[f"now: {phase}"]
                print(f"  check, {phase}: now is {ratio:.2f}× as fast as {old}")
            if "scan_folder, before" in medians:
                for phase in ("cold", "warm"):
                    ratio = medians["scan_folder, before"] / medians[f"scan_folder, now: {phase}"]
                    print(f"  scan_folder, {phase}: now is {ratio:.2f}× as fast as before")
        for name, text in outputs.items():
            data = json.loads(text)
            found = [f["what"][:110] for f in data.get("findings", []) if f["where"].startswith("image")]
            print(f"\n{name}: {len(found)} dataset finding(s)")
            for what in found:
                print(f"  - {what}")


if __name__ == "__main__":
    main()
