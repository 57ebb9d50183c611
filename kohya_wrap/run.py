"""`run`: supervise one training run of sd-scripts and keep a complete record of it.

runs/<UTC id>/ holds command.json, spec.json (the resolved spec), the rendered configs, train.log (raw
child output), events.jsonl, metrics.csv and manifest.json. The verdict is ours, not sd-scripts' exit
code: it exits 0 having trained nothing ("No data found"), so success means the final LoRA file exists.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kohya_wrap import __version__
from kohya_wrap.check import CheckReport
from kohya_wrap.errors import ExitCode, KohyaWrapError
from kohya_wrap.fsutil import sha256_file, write_text_atomic
from kohya_wrap.launch.events import CheckpointSaved, Event, EventParser, Progress, SampleSaved, event_dict
from kohya_wrap.launch.process import Child, Exited, Output, child_env
from kohya_wrap.plan import TrainingPlan
from kohya_wrap.resume import Resume, settle, true_name

# Rich wraps every log record at 80 columns when not on a terminal, splitting paths; a wide virtual
# terminal keeps one record per line *with* its level (--console_log_simple would drop the level).
CHILD_ENV = {"PYTHONUNBUFFERED": "1", "COLUMNS": "250"}

DIAGNOSES: list[tuple[str, str, str]] = [
    # (text to look for in the exception or error lines, what happened, what to do)
    ("out of memory", "the GPU ran out of memory", "lighter settings: gradient_checkpointing = true, cache_latents = true, train_batch_size = 1, optimizer_type = \"AdamW8bit\", or the sdxl-low-vram preset"),
    ("no data found", "sd-scripts found no training images", "check the concept folders and caption_extension (`kohya-wrap check`)"),
    ("image file is truncated", "an image is truncated or corrupt", "re-export or remove the image named in the log"),
    ("cannot identify image file", "a file is not a readable image", "re-export or remove the image named in the log"),
    ("neither a valid local path nor a valid repo id", "the base model was not found", "fix model.base, or download it while online"),
    ("modulenotfounderror", "a Python module is missing from sd-scripts' venv", "reinstall it: `kohya-wrap vendor install` (or pip install the named module into its venv)"),
    ("no space left on device", "the disk is full", "free space where the project (model/, log/) lives"),
    ("loss is nan", "the loss became NaN", "lower learning_rate, or use mixed_precision = \"bf16\" instead of fp16"),
]


@dataclass
class Outcome:
    run_id: str
    run_dir: Path
    exit_code: int
    verdict: str
    child_exit: int | None
    final: Path | None
    checkpoints: list[Path] = field(default_factory=list)
    diagnosis: list[str] = field(default_factory=list)


def new_run_id(runs_dir: Path) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_id, n = stamp, 1
    while (runs_dir / run_id).exists():
        n += 1
        run_id = f"{stamp}-{n}"
    return run_id


class RunLock:
    """runs/.lock with the pid of the running `kohya-wrap run`; a lock whose process is gone is stale."""

    def __init__(self, runs_dir: Path) -> None:
        self.path = runs_dir / ".lock"

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            owner = int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            owner = None
        if owner is not None and owner != os.getpid() and _alive(owner):
            raise KohyaWrapError(f"{self.path.parent.parent}: a run is already in progress (pid {owner})", "wait for it, or stop it first")
        write_text_atomic(self.path, f"{os.getpid()}\n")
        return self

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rpartition(")")[2].split()[:1] == ["Z"])


def _snapshot(folder: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.glob("*") if p.is_file()} if folder.is_dir() else {}


def dataset_files(report: CheckReport) -> list[dict[str, Any]]:
    files = []
    for item in report.concepts:
        for image in item.scan.images:
            files.append({"path": str(image.path.relative_to(report.loaded.layout.root)), "bytes": image.path.stat().st_size, "sha256": sha256_file(image.path)})
    return files


class SampleWatcher:
    """sd-scripts saves sample images without a log line: look for new files in <output_dir>/sample at
    most once a second (one directory listing)."""

    def __init__(self, folder: Path, interval_s: float = 1.0) -> None:
        self.folder, self.interval_s = folder, interval_s
        self.seen = set(os.listdir(folder)) if folder.is_dir() else set()
        self._next = 0.0

    def poll(self, now: float, force: bool = False) -> list[str]:
        if not force and now < self._next:
            return []
        self._next = now + self.interval_s
        try:
            names = set(os.listdir(self.folder))
        except OSError:
            return []
        new = sorted(n for n in names - self.seen if n.endswith((".png", ".jpg", ".jpeg", ".webp")))
        self.seen |= names
        return new


@dataclass
class Numbering:
    """sd-scripts' numbers → true ones. Without a resume they are the same; after one, its step bar
    counts from the resumed state and its files sit in a staging folder under too-small step numbers."""

    resume: Resume | None
    output_dir: Path
    bar_total: int | None = None

    def event(self, event: Event) -> Event:
        if self.resume is None:
            return event
        if isinstance(event, Progress):
            if self.bar_total is None:
                self.bar_total = event.total
            return Progress(event.step + self.resume.state.step, self.resume.total_steps, event.elapsed_s, event.remaining_s, event.seconds_per_step, event.loss)
        if isinstance(event, CheckpointSaved):
            return CheckpointSaved(str(self.output_dir / true_name(Path(event.path).name, self.offset)))
        return event

    def sample(self, name: str) -> str:
        return str(self.output_dir / "sample" / true_name(name, self.offset, sample=True))

    @property
    def offset(self) -> int:
        return self.resume.offset(self.bar_total) if self.resume else 0


def environment(python: Path, sd_root: Path) -> dict[str, Any]:
    """Versions without importing torch (seconds): package metadata and torch/version.py in
    sd-scripts' venv, GPU names from nvidia-smi where there is one, the checkout's commit and changes."""
    import subprocess

    from kohya_wrap.sdscripts.vendor import dirty_files

    code = (
        "import importlib.metadata as m, importlib.util as u, json, os, re\n"
        "v = {}\n"
        "for p in ('torch', 'torchvision', 'accelerate', 'diffusers', 'transformers', 'xformers', 'bitsandbytes'):\n"
        "    try: v[p] = m.version(p)\n"
        "    except m.PackageNotFoundError: pass\n"
        "spec = u.find_spec('torch')\n"
        "if spec and spec.submodule_search_locations:\n"
        "    t = open(os.path.join(list(spec.submodule_search_locations)[0], 'version.py')).read()\n"
        "    for k in ('cuda', 'hip'):\n"
        "        f = re.search(k + r\"\\s*(?::[^=]*)?=\\s*'([^']*)'\", t)\n"
        "        v['torch_' + k] = f.group(1) if f else None\n"
        "print(json.dumps(v))\n"
    )
    info: dict[str, Any] = {}
    try:
        result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60, env=child_env({}))
        info["packages"] = json.loads(result.stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired) as exc:
        info["packages"] = {"error": str(exc) or type(exc).__name__}
    smi = shutil.which("nvidia-smi")
    gpus: list[str] = []
    if smi:
        try:
            result = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
            gpus = [line.strip() for line in result.stdout.splitlines() if line.strip()]
        except (OSError, subprocess.TimeoutExpired):
            pass
    info["gpus"] = gpus
    if (sd_root / ".git").exists():
        result = subprocess.run(["git", "-C", str(sd_root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
        info["sd_scripts_commit"] = result.stdout.strip() or None
        info["sd_scripts_changed_files"] = dirty_files(sd_root)
    return info


def diagnose(exception: str | None, errors: list[str], verdict: str) -> list[str]:
    text = " ".join([exception or "", *errors]).lower()
    for needle, what, fix in DIAGNOSES:
        if needle in text:
            return [f"{what}: {exception or errors[0]}", f"fix: {fix}"]
    if exception:
        return [f"sd-scripts failed: {exception}", "see train.log in the run folder for the whole traceback"]
    return [verdict]


def supervise(report: CheckReport, plan: TrainingPlan, renderer, grace_s: float, resume: Resume | None = None) -> Outcome:
    """Launch, stream, record; Ctrl-C stops the child's whole group (SIGINT, then after `grace_s`
    SIGTERM and SIGKILL; a second Ctrl-C skips the grace). With `resume`, sd-scripts writes into its
    staging folder and the files move to the output folder under true step numbers at the end."""
    import time

    from kohya_wrap.dashboard import RunState
    from kohya_wrap.sdscripts.lrsched import schedule

    loaded = report.loaded
    layout = loaded.layout
    with RunLock(layout.runs_dir):
        run_id = new_run_id(layout.runs_dir)
        run_dir = layout.runs_dir / run_id
        run_dir.mkdir(parents=True)
        argv = list(plan.command) + (resume.args() if resume else [])
        overrides = dict(CHILD_ENV)
        write_text_atomic(run_dir / "command.json", json.dumps({"argv": argv, "cwd": str(report.sd_scripts.root), "env": overrides}, indent=2, ensure_ascii=False) + "\n")
        write_text_atomic(run_dir / "spec.json", json.dumps(loaded.spec.model_dump(mode="json", by_alias=True, exclude_none=True), indent=2, ensure_ascii=False) + "\n")
        for path in (layout.train_config, layout.dataset_config, layout.sample_prompts):
            if path.is_file():
                shutil.copyfile(path, run_dir / path.name)
        started = datetime.now(timezone.utc)
        before = _snapshot(layout.model_dir)  # a file counts as this run's output only if it changed
        numbering = Numbering(resume, layout.model_dir)
        written_dir = resume.staging if resume else layout.model_dir
        samples = SampleWatcher(written_dir / "sample")
        schema = loaded.schema
        state = RunState(lr_at=schedule(plan.rendered.train_args, plan.math.total_steps, plan.num_processes, lambda key: schema.default(plan.script, key)))
        parsers = {"stdout": EventParser(), "stderr": EventParser()}
        interrupted = False
        child_exit: int | None = None
        with open(run_dir / "train.log", "wb") as log, open(run_dir / "events.jsonl", "w", encoding="utf-8") as events_file, \
                open(run_dir / "metrics.csv", "w", newline="", encoding="utf-8") as metrics_file:
            metrics = csv.writer(metrics_file)
            metrics.writerow(["step", "epoch", "loss", "lr", "seconds_per_step", "elapsed_s"])
            # one row per step, its last report: sd-scripts' bar shows a step first with the previous
            # step's loss, then with its own, so a row is written once the next step begins
            pending: list[list] = []

            def flush_metrics() -> None:
                if pending:
                    metrics.writerow(pending.pop())

            def consume(events) -> None:
                for event in events:
                    event = numbering.event(event)
                    state.update(event)
                    events_file.write(json.dumps(event_dict(event), ensure_ascii=False) + "\n")
                    if isinstance(event, Progress) and event.loss is not None:
                        if pending and pending[0][0] != event.step:
                            flush_metrics()
                        pending[:] = [[event.step, state.epoch, event.loss, state.lr, event.seconds_per_step, event.elapsed_s]]
                    renderer.handle(event, state)

            def look_for_samples(force: bool = False) -> None:
                consume(SampleSaved(numbering.sample(name)) for name in samples.poll(time.monotonic(), force))

            child = Child(argv, child_env(overrides), report.sd_scripts.root, log)
            try:
                while child_exit is None:
                    try:
                        item = child.poll()
                        if isinstance(item, Output):
                            consume(parsers[item.stream].feed(item.text))
                        elif isinstance(item, Exited):
                            child_exit = item.returncode
                        else:
                            renderer.tick(state)
                        look_for_samples()
                    except KeyboardInterrupt:
                        interrupted = True
                        renderer.note(f"stopping: SIGINT sent to the training processes, waiting up to {grace_s:.0f} s (Ctrl-C again to stop now)")
                        try:
                            child.stop(grace_s)
                        except KeyboardInterrupt:
                            child.stop(0.0, escalate_s=2.0)
                for parser in parsers.values():
                    consume(parser.close())
                look_for_samples(force=True)
            finally:  # whatever goes wrong here, no training process outlives `run`, and the terminal is restored
                flush_metrics()
                if child.process.poll() is None or child.group_alive():
                    child.stop(0.0, escalate_s=2.0)
                renderer.close(state)
                if resume is not None:  # what the resumed run saved moves out of staging, however it ended
                    settle(resume.staging, layout.model_dir, numbering.offset)
        ended = datetime.now(timezone.utc)

        extension = "." + (loaded.spec.training.save_model_as or "safetensors")
        final = layout.model_dir / f"{plan.name}{extension}"
        after = _snapshot(layout.model_dir)
        written = {p for p, stamp in after.items() if before.get(p) != stamp}
        checkpoints = sorted((p for p in written if p.name.startswith(plan.name) and p.suffix == extension), key=lambda p: after[p])
        trained = final in written
        if interrupted:
            code, verdict = ExitCode.INTERRUPTED, "interrupted"
        elif trained:
            code, verdict = ExitCode.OK, "trained"
        else:
            code, verdict = ExitCode.FAILED, "failed: no LoRA file was written" + (f" (sd-scripts exited with {child_exit})" if child_exit else " although sd-scripts exited with 0")
        diagnosis = [] if code in (ExitCode.OK, ExitCode.INTERRUPTED) else diagnose(state.exception, state.errors, verdict)
        manifest = {
            "kohya_wrap": __version__,
            "run_id": run_id,
            "started": started.isoformat(), "ended": ended.isoformat(), "duration_s": round((ended - started).total_seconds(), 3),
            "verdict": verdict, "exit_code": int(code), "child_exit_code": child_exit,
            "sd_scripts": {"root": str(report.sd_scripts.root), "python": str(report.sd_scripts.python), "schema": loaded.schema.source, "commit": loaded.schema.commit},
            "python": sys.version.split()[0], "platform": platform.platform(),
            "environment": environment(report.sd_scripts.python, report.sd_scripts.root),
            "resume": None if resume is None else {"state": str(resume.state.path), "from_step": resume.state.step, "skip_until_initial_step": resume.skip, "sd_scripts_step_offset": numbering.offset},
            "seed": loaded.spec.training.seed,
            "steps": {"planned": plan.math.total_steps, "reached": state.step},
            "final_loss": state.loss,
            "final_lr": state.lr,
            "sample_images": state.sample_images,
            "outputs": [{"path": str(p), "bytes": p.stat().st_size} for p in checkpoints],
            "dataset": dataset_files(report),
            "diagnosis": diagnosis,
        }
        write_text_atomic(run_dir / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return Outcome(run_id, run_dir, int(code), verdict, child_exit, final if trained else None, checkpoints, diagnosis)
