"""`run`: supervise one training run of sd-scripts and keep a complete record of it.

runs/<UTC id>/ holds command.json, spec.json (the resolved spec), the rendered configs, train.log (raw
child output), events.jsonl, metrics.csv and manifest.json (the run record, training/record.py). The
verdict is ours, not sd-scripts' exit code: it exits 0 having trained nothing ("No data found"), so
success means the final LoRA file exists.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from kohya_wrap import __version__
from kohya_wrap.check import CheckReport
from kohya_wrap.errors import ExitCode
from kohya_wrap.fsutil import dataset_lock, exclusive_lock, free_name, sha256_file, utc_stamp, write_text_atomic
from kohya_wrap.launch.diagnose import diagnose
from kohya_wrap.launch.events import CheckpointSaved, Event, EventParser, Progress, SampleSaved, event_dict
from kohya_wrap.launch.process import Child, Exited, Output, child_env
from kohya_wrap.launch.signals import Signalled, StopSignals
from kohya_wrap.paths import relative
from kohya_wrap.plan import TrainingPlan
from kohya_wrap.sdscripts.lrsched import schedule
from kohya_wrap.sdscripts.naming import renumbered
from kohya_wrap.training.dashboard import Resilient
from kohya_wrap.training.environment import environment
from kohya_wrap.training.live import plan_event, write_supervisor
from kohya_wrap.training.record import (
    DatasetFile,
    LaunchedCommand,
    OutputFile,
    ResumeInfo,
    RunFiles,
    RunRecord,
    SdScriptsInfo,
    Steps,
    SweepLabel,
    write_record,
)
from kohya_wrap.training.resume import Resume, settle
from kohya_wrap.training.state import RunState

# Rich wraps every log record at 80 columns when not on a terminal, splitting paths; a wide virtual
# terminal keeps one record per line *with* its level (--console_log_simple would drop the level).
CHILD_ENV = {"PYTHONUNBUFFERED": "1", "COLUMNS": "250"}


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
    stopped_by: str | None = None  # SIGTERM / SIGHUP, when one stopped the run (Ctrl-C: None)


def make_run_dir(runs_dir: Path) -> Path:
    """A new runs/<UTC id> folder, made atomically: runs started in the same second (a sweep's trials side
    by side) get -2, -3…"""
    runs_dir.mkdir(parents=True, exist_ok=True)
    while True:
        run_dir = runs_dir / free_name(runs_dir, utc_stamp())
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue


def run_lock(root: Path):
    """One run per project at a time (a sweep running trials side by side holds it for them)."""
    return exclusive_lock(
        root / "runs" / ".lock", f"{root}: a run is already in progress", "wait for it, or stop it first"
    )


def _snapshot(folder: Path) -> dict[Path, tuple[int, int]]:
    return (
        {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.glob("*") if p.is_file()}
        if folder.is_dir()
        else {}
    )


def dataset_files(report: CheckReport) -> list[DatasetFile]:
    root = report.loaded.layout.root
    return [
        DatasetFile(path=relative(image.path, root), bytes=image.path.stat().st_size, sha256=sha256_file(image.path))
        for item in report.concepts
        for image in item.scan.images
    ]


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
            return Progress(
                event.step + self.resume.state.step,
                self.resume.total_steps,
                event.elapsed_s,
                event.remaining_s,
                event.seconds_per_step,
                event.loss,
            )
        if isinstance(event, CheckpointSaved):
            return CheckpointSaved(str(self.output_dir / renumbered(Path(event.path).name, self.offset)))
        return event

    def sample(self, name: str) -> str:
        return str(self.output_dir / "sample" / renumbered(name, self.offset, sample=True))

    @property
    def offset(self) -> int:
        return self.resume.offset(self.bar_total) if self.resume else 0


def supervise(
    report: CheckReport,
    plan: TrainingPlan,
    renderer,
    grace_s: float,
    resume: Resume | None = None,
    detached: bool = False,
    label: SweepLabel | None = None,
    locks: bool = True,
) -> Outcome:
    """Launch, stream, record; Ctrl-C, SIGTERM or SIGHUP stops the child's whole group (SIGINT, then
    after `grace_s` SIGTERM and SIGKILL; a second one skips the grace), and the record is written
    however it ends. With `resume`, sd-scripts writes into its staging folder and the files move to the
    output folder under true step numbers at the end. The run holds the project's run lock and its
    dataset lock (no prep, caption or tags edit changes the images while they train); `locks=False`: the
    caller holds them (a sweep running trials side by side, one per GPU)."""
    loaded = report.loaded
    layout, settings = loaded.layout, loaded.settings
    signals = StopSignals()  # disarmed until the child runs: a signal before is raised as it starts
    with (
        signals,
        run_lock(layout.root) if locks else nullcontext(),
        dataset_lock(layout.root, "run") if locks else nullcontext(),
    ):
        run_dir = make_run_dir(layout.runs_dir)
        run_id = run_dir.name
        write_supervisor(run_dir, detached)
        argv = list(plan.command) + (resume.args() if resume else [])
        overrides = dict(CHILD_ENV)
        files = RunFiles(run_dir)
        LaunchedCommand(argv, str(report.sd_scripts.root), overrides).write(files.command)
        write_text_atomic(
            files.spec,
            json.dumps(
                loaded.spec.model_dump(mode="json", by_alias=True, exclude_none=True), indent=2, ensure_ascii=False
            )
            + "\n",
        )
        for path in (layout.train_config, layout.dataset_config, layout.sample_prompts):
            if path.is_file():
                shutil.copyfile(path, run_dir / path.name)
        started = datetime.now(timezone.utc)
        before = _snapshot(layout.model_dir)  # a file counts as this run's output only if it changed
        numbering = Numbering(resume, layout.model_dir)
        written_dir = resume.staging if resume else layout.model_dir
        samples = SampleWatcher(written_dir / "sample")
        schema = loaded.schema
        state = RunState(  # the plan's totals from the start: the dashboard shows them while the model loads
            settled_step=resume.state.step if resume else 0,  # a resumed run's steps before it are done
            total=plan.math.total_steps,
            epochs=plan.math.epochs,
            steps_per_epoch=plan.math.steps_per_epoch,
            samples_after_epochs=bool(plan.rendered.train_args.get("sample_every_n_epochs")),
            lr_at=schedule(
                plan.rendered.train_args,
                plan.math.total_steps,
                settings.num_processes,
                lambda key: schema.default(settings.script, key),
            ),
        )
        renderer = Resilient(renderer)  # a terminal that hangs up must not stop the supervising
        renderer.start(state)
        parsers = {"stdout": EventParser(), "stderr": EventParser()}
        interrupted = False
        stopped_by: Signalled | None = None
        child_exit: int | None = None
        with (
            open(files.log, "wb") as log,
            open(files.events, "w", encoding="utf-8") as events_file,
            open(files.metrics, "w", newline="", encoding="utf-8") as metrics_file,
        ):
            metrics = csv.writer(metrics_file)
            metrics.writerow(["step", "epoch", "loss", "lr", "seconds_per_step", "elapsed_s"])
            # the plan first, so `watch` can show the totals from the start (training/live.py)
            events_file.write(json.dumps(plan_event(state, plan)) + "\n")
            events_file.flush()
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
                        pending[:] = [
                            [event.step, state.epoch, event.loss, state.lr, event.seconds_per_step, event.elapsed_s]
                        ]
                    renderer.handle(event, state)
                events_file.flush()  # `watch` follows this file while the run goes on

            def look_for_samples(force: bool = False) -> None:
                consume(SampleSaved(numbering.sample(name)) for name in samples.poll(time.monotonic(), force))

            child = Child(argv, child_env(overrides), report.sd_scripts.root, log)
            write_supervisor(run_dir, detached, child.pgid)
            try:
                while child_exit is None:
                    try:
                        if not signals.armed and not interrupted:
                            signals.arm()  # a signal that came while it started is raised here
                        item = child.poll()
                        if isinstance(item, Output):
                            consume(parsers[item.stream].feed(item.text))
                        elif isinstance(item, Exited):
                            child_exit = item.returncode
                        else:
                            renderer.tick(state)
                        look_for_samples()
                    except KeyboardInterrupt as exc:
                        interrupted = True
                        if isinstance(exc, Signalled):
                            stopped_by = stopped_by or exc
                        what = f"{exc.name} received" if isinstance(exc, Signalled) else "Ctrl-C"
                        renderer.note(
                            f"stopping ({what}): SIGINT sent to the training processes, waiting up to "
                            f"{grace_s:.0f} s (Ctrl-C again to stop now)"
                        )
                        try:
                            child.stop(grace_s)
                        except KeyboardInterrupt:
                            child.stop(0.0, escalate_s=2.0)
                signals.disarm()  # from here on the record is written whatever arrives
                for parser in parsers.values():
                    consume(parser.close())
                look_for_samples(force=True)
            finally:  # whatever goes wrong here, no training process outlives `run`, and the terminal is restored
                signals.disarm()
                flush_metrics()
                if child.process.poll() is None or child.group_alive():
                    child.stop(0.0, escalate_s=2.0)
                renderer.close(state)
                if resume is not None:  # what the resumed run saved moves out of staging, however it ended
                    settle(resume.staging, layout.model_dir, numbering.offset)
        ended = datetime.now(timezone.utc)

        final = layout.model_dir / settings.final_checkpoint
        after = _snapshot(layout.model_dir)
        written = {p for p, stamp in after.items() if before.get(p) != stamp}
        checkpoints = sorted(
            (p for p in written if p.name.startswith(settings.name) and p.suffix == settings.checkpoint_extension),
            key=lambda p: after[p],
        )
        trained = final in written
        if stopped_by is not None:
            code, verdict = stopped_by.exit_code, f"stopped ({stopped_by.name})"
        elif interrupted:
            code, verdict = ExitCode.INTERRUPTED, "interrupted"
        elif trained:
            code, verdict = ExitCode.OK, "trained"
        else:
            code, verdict = (
                ExitCode.FAILED,
                "failed: no LoRA file was written"
                + (f" (sd-scripts exited with {child_exit})" if child_exit else " although sd-scripts exited with 0"),
            )
        diagnosis = (
            []
            if code == ExitCode.OK or interrupted
            else diagnose(state.exception, state.errors, verdict, state.traceback)
        )
        sd = report.sd_scripts
        record = RunRecord(
            kohya_wrap=__version__,
            run_id=run_id,
            started=started.isoformat(),
            ended=ended.isoformat(),
            duration_s=round((ended - started).total_seconds(), 3),
            verdict=verdict,
            exit_code=int(code),
            child_exit_code=child_exit,
            sd_scripts=SdScriptsInfo(
                root=str(sd.root), python=str(sd.python), schema=loaded.schema.source, commit=loaded.schema.commit
            ),
            python=sys.version.split()[0],
            platform=platform.platform(),
            environment=environment(sd.python, sd.root),
            resume=None
            if resume is None
            else ResumeInfo(
                state=str(resume.state.path),
                from_step=resume.state.step,
                skip_until_initial_step=resume.skip,
                sd_scripts_step_offset=numbering.offset,
            ),
            seed=settings.seed,
            steps=Steps(planned=plan.math.total_steps, reached=state.step),
            final_loss=state.loss,
            final_lr=state.lr,
            sample_images=state.sample_images,
            outputs=[OutputFile(path=str(p), bytes=p.stat().st_size) for p in checkpoints],
            dataset=dataset_files(report),
            diagnosis=diagnosis,
            sweep=label,
            settings=settings.as_dict(),
        )
        write_record(run_dir, record)
    return Outcome(
        run_id,
        run_dir,
        int(code),
        verdict,
        child_exit,
        final if trained else None,
        checkpoints,
        diagnosis,
        stopped_by.name if stopped_by else None,
    )
