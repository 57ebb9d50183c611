#!/usr/bin/env python3
"""GPU check: the SD 1.5 and SDXL demo models trained on a CUDA GPU with the settings users run (fp16 and
bf16, sdpa and xformers where installed, AdamW8bit with bitsandbytes, cache_latents_to_disk, gradient
checkpointing), each through `kohya-wrap run` and then the exact command it ran, launched directly;
prints s/step, peak VRAM and the wall-time ratio, and writes them as JSON and Markdown.

    python scripts/gpu_check.py [--steps 12] [--families sd15 sdxl] [--json out.json] [--markdown out.md]
    python scripts/gpu_check.py --dry-run        # the configs and the commands, nothing trained

sd-scripts is the one kohya-wrap finds (KOHYA_WRAP_SD_SCRIPTS / KOHYA_WRAP_SD_PYTHON, or the vendored
install). The demo models are built once into the user cache, as `kohya-wrap demo` builds them. Each
config trains in a fresh project at the family's usual size (512 px SD 1.5, 1024 px SDXL); cached latents
are deleted between the two launches, so both encode them. s/step is sd-scripts' own (its progress bar)
after the first two steps; peak VRAM is sampled from nvidia-smi every 0.2 s for the training process tree
(the whole GPU's rise where nvidia-smi cannot map the PIDs, e.g. in a container), so it includes the
CUDA context and PyTorch's cached blocks. Without a CUDA device in sd-scripts' venv, or without
nvidia-smi, it prints one line and exits 0 (2 with --require-gpu).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_check_parts import (  # noqa: E402 - this folder first, so the parts module is found when run as a file
    FAMILIES,
    RESOLUTION,
    Capabilities,
    Config,
    Measured,
    Result,
    VramSampler,
    markdown,
    matrix,
    query,
    spec_text,
    steady_seconds_per_step,
    table,
)

from kohya_wrap.launch.events import EventParser, Progress  # noqa: E402
from kohya_wrap.launch.process import child_env  # noqa: E402

PROBE_PARTS = ["torch", "xformers", "bitsandbytes"]
SHAPES = [(220, 40, 40), (40, 180, 60), (40, 80, 220), (230, 200, 40)]


def say(text: str) -> None:
    print(text, flush=True)


def write_project(root: Path, config: Config, model: Path, tokenizers: Path, args) -> None:
    """8 captioned images of shapes at the family's training size, and the config's spec."""
    from PIL import Image, ImageDraw

    size = args.resolution or RESOLUTION[config.family]
    folder = root / "image" / "1_kwgpu shape"
    folder.mkdir(parents=True)
    for index in range(8):
        image = Image.new("RGB", (size, size), (245, 245, 240))
        draw = ImageDraw.Draw(image)
        box = (size * (2 + index % 3) // 10, size // 5, size * 8 // 10, size * (7 + index % 2) // 10)
        (draw.ellipse if index % 2 == 0 else draw.rectangle)(box, fill=SHAPES[index % len(SHAPES)])
        image.save(folder / f"shape{index}.png")
        (folder / f"shape{index}.txt").write_text(f"kwgpu shape, shape {index}, plain background", encoding="utf-8")
    text = spec_text(config, model, tokenizers, args.steps, size, args.batch)
    (root / "kohya-wrap.toml").write_text(text, encoding="utf-8")


def launch(argv: list[str], cwd: Path, env: dict[str, str], log: Path, timeout: float) -> Measured:
    """Run `argv` (its output to `log`, as a shell redirect would) with nvidia-smi sampled for its tree."""
    sampler = VramSampler()
    start = time.perf_counter()
    with open(log, "wb") as out:
        child = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        sampler.start(child.pid)
        try:
            code = child.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGTERM)  # kohya-wrap stops sd-scripts itself on SIGTERM
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
            code = 124
        finally:
            sampler.stop()
    return Measured(time.perf_counter() - start, code, peak_vram_mib=sampler.peak_mib, vram_source=sampler.source)


def progress_of(events) -> tuple[float | None, int, float | None]:
    """Steady s/step, the last step reached and its loss, from Progress events."""
    steps = [e for e in events if isinstance(e, Progress)]
    last = steps[-1] if steps else None
    rate = steady_seconds_per_step([(e.step, e.seconds_per_step) for e in steps])
    return rate, last.step if last else 0, last.loss if last else None


def parse_log(path: Path) -> list:
    parser = EventParser()
    return parser.feed(path.read_bytes().decode("utf-8", errors="replace") + "\n")


def recorded_progress(run_dir: Path) -> list[Progress]:
    events = []
    for line in (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines():
        data = json.loads(line)
        if data.get("event") == "Progress":
            data.pop("event")
            events.append(Progress(**data))
    return events


def clear_cached_latents(root: Path) -> None:
    for path in (root / "image").rglob("*.npz"):
        path.unlink()


def warm_page_cache(model: Path) -> None:
    """Both launches of the first config find the model's files in memory, as every later one does."""
    for path in [model] if model.is_file() else sorted(p for p in model.rglob("*") if p.is_file()):
        with open(path, "rb") as handle:
            while handle.read(64 << 20):
                pass


def measure(config: Config, root: Path, args) -> Result:
    result = Result(config)
    wrapped_argv = [sys.executable, "-m", "kohya_wrap", "run", str(root), "--plain"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    result.wrapped = launch(wrapped_argv, root, env, root / "kohya-wrap-run.log", args.run_timeout)
    runs = sorted(p for p in (root / "runs").glob("*") if p.is_dir()) if (root / "runs").is_dir() else []
    if result.wrapped.exit_code != 0 or not runs:
        tail = (root / "kohya-wrap-run.log").read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        result.error = f"kohya-wrap run exited {result.wrapped.exit_code}: {' | '.join(tail)}"
        return result
    run_dir = runs[-1]
    rate, reached, loss = progress_of(recorded_progress(run_dir))
    result.wrapped.seconds_per_step, result.wrapped.steps, result.wrapped.loss = rate, reached, loss
    if args.no_direct:
        return result
    command = json.loads((run_dir / "command.json").read_text(encoding="utf-8"))
    clear_cached_latents(root)
    direct_env = child_env({**command["env"], "HF_HUB_OFFLINE": "1"})
    log = root / "direct.log"
    result.direct = launch(command["argv"], Path(command["cwd"]), direct_env, log, args.run_timeout)
    rate, reached, loss = progress_of(parse_log(log))
    result.direct.seconds_per_step, result.direct.steps, result.direct.loss = rate, reached, loss
    if result.direct.exit_code != 0:
        result.error = f"the direct command exited {result.direct.exit_code}; see {log}"
    return result


def dry_run(configs: list[Config], work: Path, models: dict, args) -> None:
    """Each config's project, the `kohya-wrap run` command and the launch command it will run; what `check`
    says about it on this machine."""
    from kohya_wrap.check import check_project
    from kohya_wrap.launch.command import build_launch_command, command_line
    from kohya_wrap.spec.load import load_project

    for config in configs:
        root = work / config.name
        write_project(root, config, *models[config.family], args)
        report = check_project(load_project(root))
        loaded = report.loaded
        argv = build_launch_command(loaded.spec.launch, loaded.settings, loaded.layout, report.sd_scripts)
        say(f"{config.name}:")
        say(f"  kohya-wrap: {command_line([sys.executable, '-m', 'kohya_wrap', 'run', str(root), '--plain'])}")
        say(f"  direct:     {command_line(list(argv))}")
        for finding in report.errors:
            say(f"  check here: {finding.line()}")


def facts(probe: dict, sd, args, caps: Capabilities) -> list[str]:
    torch = probe.get("torch") or {}
    smi = query(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]).strip()
    described = query(["git", "-C", str(sd.root), "describe", "--tags", "--always"]).strip()
    versions = ", ".join(
        f"{part} {(probe.get(part) or {}).get('version') or 'not installed'}" for part in ("xformers", "bitsandbytes")
    )
    return [
        f"date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"GPU (name, driver, memory): {smi}" if smi else f"GPU: {caps.device or 'none'}",
        f"host: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()} {platform.release()}",
        f"sd-scripts {described or '?'}; torch {torch.get('version')} (CUDA {torch.get('cuda')}); {versions}",
        f"{args.steps} steps, batch {args.batch}, the demo models (full-size random U-Net) at "
        + (f"{args.resolution} px" if args.resolution else "512 px (SD 1.5) and 1024 px (SDXL)")
        + "; cache_latents_to_disk, gradient_checkpointing, network_dim 16",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--resolution", type=int, help="one size for both families (default 512 / 1024)")
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--only", help="only the configs whose name contains this (e.g. sdxl-bf16)")
    parser.add_argument("--no-direct", action="store_true", help="only through kohya-wrap (half the time)")
    parser.add_argument("--run-timeout", type=float, default=600, help="seconds one launch may take")
    parser.add_argument("--work", type=Path, help="folder for the projects (default: a temporary one, removed)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--markdown", type=Path, help="write the table for docs/BENCHMARKS.md here")
    parser.add_argument("--require-gpu", action="store_true", help="exit 2, not 0, when there is no CUDA device")
    parser.add_argument("--dry-run", action="store_true", help="print the configs and commands; train nothing")
    parser.add_argument(
        "--assume-gpu",
        action="store_true",
        help="train without a CUDA device too (a test of this script: e.g. --only sd15-bf16-sdpa --resolution 64)",
    )
    args = parser.parse_args(argv)

    from kohya_wrap.demo import demo_model_dirs, ensure_demo_model
    from kohya_wrap.errors import KohyaWrapError
    from kohya_wrap.sdscripts.locate import locate_sd_scripts
    from kohya_wrap.sdscripts.preflight import ProbeError, probe_environment

    sd = locate_sd_scripts()
    if not sd.usable:
        say(
            f"no sd-scripts at {sd.root}: set KOHYA_WRAP_SD_SCRIPTS and KOHYA_WRAP_SD_PYTHON, or run "
            "`kohya-wrap vendor install`"
        )
        return 2
    try:
        probe = probe_environment(sd, PROBE_PARTS)
    except ProbeError as exc:
        say(f"sd-scripts' venv could not be probed: {exc}")
        return 2
    caps = Capabilities.from_probe(probe)
    missing = (
        "no CUDA device in sd-scripts' venv" if not caps.cuda else "" if shutil.which("nvidia-smi") else "no nvidia-smi"
    )
    if missing and not (args.dry_run or args.assume_gpu):
        say(f"no CUDA device: nothing measured ({missing}; {sd.python})")
        return 2 if args.require_gpu else 0
    if missing:  # a dry run: what a GPU with everything would train; --assume-gpu: CUDA with bf16, the rest probed
        what = "bf16, xformers and bitsandbytes" if args.dry_run else "bf16 (xformers and bitsandbytes as probed)"
        say(f"without a CUDA device ({missing}): the configs of a GPU with {what}")
        caps = Capabilities(
            cuda=True,
            device="(assumed)",
            bf16=True,
            xformers=args.dry_run or caps.xformers,
            bitsandbytes=args.dry_run or caps.bitsandbytes,
            why_not=caps.why_not,
        )
    configs, notes = matrix(caps, args.families)
    configs = [c for c in configs if not args.only or args.only in c.name]
    for note in notes:
        say(f"note: {note}")
    work = args.work or Path(tempfile.mkdtemp(prefix="kw-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.dry_run:
            dry_run(configs, work, {f: demo_model_dirs(f) for f in args.families}, args)
            return 0
        models = {}
        for family in dict.fromkeys(c.family for c in configs):
            models[family] = ensure_demo_model(sd, say, family)
            warm_page_cache(models[family][0])
        results = []
        for number, config in enumerate(configs, 1):
            say(f"[{number}/{len(configs)}] {config.name} …")
            root = work / config.name
            write_project(root, config, *models[config.family], args)
            results.append(measure(config, root, args))
            if results[-1].error:
                say(f"  failed: {results[-1].error}")
    except KohyaWrapError as exc:
        for line in exc.lines():
            say(line)
        return 2
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    say("")
    say(table(results))
    for failed in (r for r in results if r.error):
        say(f"{failed.config.name} failed: {failed.error}")
    told = facts(probe, sd, args, caps) + [f"note: {n}" for n in notes]
    for fact in told:
        say(fact)
    if args.json:
        data = {"facts": told, "results": [r.as_dict() for r in results]}
        args.json.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if args.markdown:
        args.markdown.write_text(markdown(results, told), encoding="utf-8")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
