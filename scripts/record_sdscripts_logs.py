#!/usr/bin/env python3
"""Record real sd-scripts training output as JSON-lines fixtures, for a stand-in that replays them.

Each scenario builds a tiny project in a temporary folder (a hand-written kohya-wrap.toml on the tiny
SD1.5 model, a few 64x64 random-noise PNGs with .txt captions), runs `kohya-wrap plan DIR --json`, and
runs the `command` it prints, recording every chunk of stdout and stderr (or of the pseudo-terminal)
the moment it arrives, with its time since start.

File format (one JSON object per line):
  {"format": 1, "scenario": ..., "argv": [...], "env": {...}, "sd_scripts": "...", "recorded": ..., ...}
      (also: description, env_unset, placeholders, files = {path under the project: bytes} left in model/
      and log/ after the run, pty = {columns, rows} under a terminal, signal = {name, t} when interrupted)
  {"t": 1.234, "stream": "stdout"|"stderr"|"pty", "data": "<text exactly as received, \\r and ANSI kept>"}
  ...
  {"t": 42.5, "exit": <returncode>}

Machine-specific paths are replaced, in argv and in data, by the placeholders listed in the header's
"placeholders" (the project folder by <PROJECT>, the sd-scripts checkout by <SD_SCRIPTS>, ...).
Bytes are decoded as UTF-8 (errors=replace) with an incremental decoder per stream, so a character
split across two reads is kept whole; a chunk ending in what may be the start of a replaced path
keeps that tail for the next chunk, so placeholders are applied even across reads.

Usage (kohya-wrap's venv; Pillow is needed for the images):
  /work/venv/bin/python scripts/record_sdscripts_logs.py [--scenario NAME ...] [--out DIR]
Run scenarios one at a time: each run of the real sd-scripts takes ~7 GB of memory.
"""

from __future__ import annotations

import argparse
import codecs
import datetime as _dt
import errno
import fcntl
import json
import os
import pty
import random
import re
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "tests" / "fixtures" / "sdscripts_logs"

SD_SCRIPTS = Path(os.environ.get("RECORD_SD_SCRIPTS", "/work/sd/sd-scripts"))
SD_PYTHON = Path(os.environ.get("RECORD_SD_PYTHON", "/work/sd/venv/bin/python"))
SD_VENV = SD_PYTHON.parent.parent
MODEL = Path(os.environ.get("RECORD_MODEL", "/work/cache/tiny-sd15"))
TOKENIZERS = Path(os.environ.get("RECORD_TOKENIZERS", "/work/cache/tokenizers"))
KOHYA_WRAP = os.environ.get("RECORD_KOHYA_WRAP") or str(Path(sys.executable).with_name("kohya-wrap"))

PTY_COLUMNS, PTY_ROWS = 120, 40
RUN_TIMEOUT = 900.0  # seconds; a run past this is killed (and recorded as such)
INTERRUPT_GRACE = 90.0  # seconds after SIGINT before SIGTERM, then SIGKILL
# tqdm's progress bar as sd-scripts labels it: "steps:  42%|████▏     | 5/12 [...]"
STEP_RE = re.compile(r"steps:\s*\d+%\|[^|]*\|\s*(\d+)/(\d+)")
# variables that would change how Rich/tqdm format output; never inherited by the recorded run
ENV_UNSET = (
    "COLUMNS",
    "LINES",
    "NO_COLOR",
    "FORCE_COLOR",
    "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
    "TERM",
    "CLICOLOR",
    "CLICOLOR_FORCE",
)


# --------------------------------------------------------------------------- scenarios


@dataclass
class Scenario:
    name: str
    description: str
    images: int = 8
    repeats: int = 1
    training: dict = field(default_factory=dict)  # extra [training] keys
    sample: dict | None = None  # a [sample] section
    pty: bool = False
    interrupt_after_step: int | None = None
    after_plan: Callable[[Path], None] | None = None  # edits to the rendered project before the run
    # what `kohya-wrap check` would stop is set after plan: extra launch options, environment variables
    launch_options: dict[str, str] = field(default_factory=dict)  # accelerate launch's own, e.g. --mixed_precision
    env: dict[str, str] = field(default_factory=dict)  # over the recording's defaults
    unset: tuple[str, ...] = ()  # default variables this scenario leaves out (e.g. HF_HUB_OFFLINE)


def _concept_dir(root: Path) -> Path:
    return root / "image" / "1_mytoken woman"


def truncate_first_image(root: Path) -> None:
    image = sorted(_concept_dir(root).glob("*.png"))[0]
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])


def delete_images(root: Path) -> None:
    for image in _concept_dir(root).glob("*.png"):
        image.unlink()


def point_model_at_missing_folder(root: Path) -> None:
    config = root / "config" / "train.toml"
    text = config.read_text(encoding="utf-8")
    missing = (root / "missing-model").as_posix()
    new, count = re.subn(r"(?m)^(pretrained_model_name_or_path\s*=\s*).*$", lambda m: f'{m.group(1)}"{missing}"', text)
    if count != 1:
        raise SystemExit(f"{config}: expected one pretrained_model_name_or_path line, found {count}")
    config.write_text(new, encoding="utf-8")


def set_training(key: str, value) -> Callable[[Path], None]:
    """Set (or add) one [training] key of the rendered config/train.toml: a setting `check` refuses."""

    def edit(root: Path) -> None:
        config = root / "config" / "train.toml"
        text = config.read_text(encoding="utf-8")
        line = f"{key} = {toml_value(value)}"
        new, count = re.subn(rf"(?m)^{re.escape(key)}\s*=.*$", lambda m: line, text)
        if count == 0:
            new, count = re.subn(r"(?m)^\[training\]$", lambda m: f"[training]\n{line}", text)
        if count != 1:
            raise SystemExit(f"{config}: cannot set {key}")
        config.write_text(new, encoding="utf-8")

    return edit


def drop_tokenizer_cache_dir(root: Path) -> None:
    """sd-scripts then loads the CLIP tokenizer from the hub (the Hugging Face cache of the recording is empty)."""
    config = root / "config" / "train.toml"
    new, count = re.subn(r"(?m)^tokenizer_cache_dir\s*=.*\n", "", config.read_text(encoding="utf-8"))
    if count != 1:
        raise SystemExit(f"{config}: expected one tokenizer_cache_dir line, found {count}")
    config.write_text(new, encoding="utf-8")


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "pipe_epochs_samples",
            "8 images x 1 repeat, batch 4, 2 epochs, a checkpoint every epoch, 2 sample prompts every epoch (ddim, 2 "
            "steps); piped",
            training={"max_train_epochs": 2, "save_every_n_epochs": 1, "train_batch_size": 4},
            sample={
                "prompts": ["mytoken woman, portrait", "mytoken woman, full body"],
                "every_n_epochs": 1,
                "steps": 2,
                "sampler": "ddim",
            },
        ),
        Scenario(
            "pipe_steps",
            "8 images x 1 repeat, batch 2, max_train_steps 6 (2 epochs), a checkpoint every 3 steps; piped",
            training={"max_train_steps": 6, "save_every_n_steps": 3, "train_batch_size": 2},
        ),
        Scenario(
            "console_log_simple",
            "as pipe_steps with max_train_steps 3, console_log_simple = true; piped",
            training={"max_train_steps": 3, "save_every_n_steps": 3, "train_batch_size": 2, "console_log_simple": True},
        ),
        Scenario(
            "pty",
            f"as pipe_steps with max_train_steps 3, under a {PTY_COLUMNS}x{PTY_ROWS} pseudo-terminal "
            "(stdin/stdout/stderr on it)",
            training={"max_train_steps": 3, "save_every_n_steps": 3, "train_batch_size": 2},
            pty=True,
        ),
        Scenario(
            "fail_missing_model",
            "valid project; config/train.toml's pretrained_model_name_or_path edited to a missing folder after plan; "
            "piped",
            training={"max_train_steps": 3, "train_batch_size": 2},
            after_plan=point_model_at_missing_folder,
        ),
        Scenario(
            "fail_truncated_image",
            "one of the 8 PNGs truncated to half its bytes after plan (kohya-wrap's check would stop it); piped",
            training={"max_train_steps": 3, "train_batch_size": 2},
            after_plan=truncate_first_image,
        ),
        Scenario(
            "no_data",
            "valid project; every PNG of the concept folder deleted after plan (captions left); piped",
            training={"max_train_steps": 3, "train_batch_size": 2},
            after_plan=delete_images,
        ),
        Scenario(
            "interrupt",
            "8 images x 1 repeat, batch 1, max_train_steps 20; SIGINT to the process group once tqdm shows step 2; "
            "piped",
            training={"max_train_steps": 20, "train_batch_size": 1},
            interrupt_after_step=2,
        ),
        Scenario(
            "fail_fp16_on_cpu",
            'valid project; mixed_precision = "fp16" set in config/train.toml and the launch command after plan, run '
            "on a machine without a CUDA device (kohya-wrap's check would stop it); piped",
            training={"max_train_steps": 3, "train_batch_size": 2},
            after_plan=set_training("mixed_precision", "fp16"),
            launch_options={"--mixed_precision": "fp16"},
        ),
        Scenario(
            "fail_tokenizer_offline",
            "valid project; tokenizer_cache_dir removed from config/train.toml after plan, an empty Hugging Face "
            "cache, HF_HUB_OFFLINE=1 (kohya-wrap's check would stop it); piped",
            training={"max_train_steps": 3, "train_batch_size": 2},
            after_plan=drop_tokenizer_cache_dir,
            env={"HF_HUB_CACHE": "<EMPTY_HF_CACHE>"},
        ),
        Scenario(
            "fail_tokenizer_no_network",
            "as fail_tokenizer_offline without HF_HUB_OFFLINE, on a machine that cannot resolve huggingface.co (as "
            "a first real run offline: urllib3's NameResolutionError); piped",
            training={"max_train_steps": 3, "train_batch_size": 2},
            after_plan=drop_tokenizer_cache_dir,
            env={"HF_HUB_CACHE": "<EMPTY_HF_CACHE>"},
            unset=("HF_HUB_OFFLINE",),
        ),
    )
}


# --------------------------------------------------------------------------- project


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)


def write_spec(root: Path, scenario: Scenario) -> None:
    training = {
        "mixed_precision": "no",
        "network_dim": 4,
        "tokenizer_cache_dir": TOKENIZERS.as_posix(),
        "max_data_loader_n_workers": 0,
        "sdpa": True,
        "cache_latents": True,
        "seed": 42,
        **scenario.training,
    }
    lines = [
        'name = "rec_lora"',
        "",
        "[model]",
        f"base = {toml_value(MODEL.as_posix())}",
        "",
        "[[concepts]]",
        'token = "mytoken"',
        'class = "woman"',
        f"repeats = {scenario.repeats}",
        "",
        "[dataset]",
        "resolution = 64",
        "enable_bucket = false",
        'caption_extension = ".txt"',
        "",
        "[training]",
        *(f"{key} = {toml_value(value)}" for key, value in training.items()),
    ]
    if scenario.sample:
        lines += ["", "[sample]", *(f"{key} = {toml_value(value)}" for key, value in scenario.sample.items())]
    (root / "kohya-wrap.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_images(folder: Path, count: int, seed: int = 1) -> None:
    from PIL import Image  # kohya-wrap's venv has Pillow

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for index in range(count):
        noise = bytes(rng.getrandbits(8) for _ in range(64 * 64 * 3))
        Image.frombytes("RGB", (64, 64), noise).save(folder / f"img{index:02d}.png")
        (folder / f"img{index:02d}.txt").write_text(f"mytoken woman, photo {index}", encoding="utf-8")


def build_project(root: Path, scenario: Scenario) -> None:
    for sub in ("log", "model", "config"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    write_spec(root, scenario)
    make_images(_concept_dir(root), scenario.images)


def plan_command(root: Path) -> list[str]:
    env = dict(os.environ, KOHYA_WRAP_SD_SCRIPTS=str(SD_SCRIPTS), KOHYA_WRAP_SD_PYTHON=str(SD_PYTHON))
    result = subprocess.run(
        [KOHYA_WRAP, "plan", str(root), "--json"], capture_output=True, text=True, env=env, timeout=300
    )
    if result.returncode != 0:
        raise SystemExit(f"kohya-wrap plan failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return list(json.loads(result.stdout)["command"])


def sd_scripts_version() -> str:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", "-C", str(SD_SCRIPTS), *args], capture_output=True, text=True, timeout=30
            ).stdout.strip()
        except OSError:
            return ""

    describe = git("describe", "--tags", "--always")
    commit = git("rev-parse", "--short=8", "HEAD")
    return " ".join(part for part in (describe, commit) if part) or "unknown"


def sd_python_stdlib() -> str:
    """Where the standard library of sd-scripts' python lives (it shows in tracebacks)."""
    try:
        result = subprocess.run(
            [str(SD_PYTHON), "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except OSError:
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


# --------------------------------------------------------------------------- recording


class Redactor:
    """Replaces machine-specific paths by placeholders, longest path first.

    Under a terminal Rich colours paths in two parts (folder, then file name: ESC[35m/a/b/ESC[0mESC[95mc),
    so a path also matches with SGR escape sequences between its characters; those sequences are kept,
    right after the placeholder."""

    SGR = r"(?:\x1b\[[0-9;]*m)*"

    def __init__(self, pairs: list[tuple[str, str]]):
        seen: dict[str, str] = {}
        for path, placeholder in pairs:
            if path and path not in seen:
                seen[path] = placeholder
        self.pairs = sorted(seen.items(), key=lambda item: -len(item[0]))
        self.patterns = [
            (re.compile(self.SGR.join(re.escape(char) for char in path)), placeholder)
            for path, placeholder in self.pairs
        ]

    def __call__(self, text: str) -> str:
        for pattern, placeholder in self.patterns:
            text = pattern.sub(lambda m, p=placeholder: p + "".join(re.findall(r"\x1b\[[0-9;]*m", m.group(0))), text)
        return text

    def held_tail(self, text: str) -> int:
        """Length of the longest suffix of text that is a proper prefix of a path (may continue next read)."""
        best = 0
        for path, _ in self.pairs:
            for length in range(min(len(path) - 1, len(text)), best, -1):
                if text.endswith(path[:length]):
                    best = length
                    break
        return best


class StreamDecoder:
    def __init__(self, name: str, redact: Redactor):
        self.name = name
        self.redact = redact
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = ""

    def feed(self, data: bytes, final: bool = False) -> str:
        text = self.pending + self.decoder.decode(data, final)
        self.pending = ""
        if not final:
            hold = self.redact.held_tail(text)
            if hold:
                text, self.pending = text[:-hold], text[-hold:]
        return self.redact(text)


@dataclass
class Recording:
    records: list[dict]
    returncode: int
    duration: float
    sigint_at: float | None
    killed: str | None


def record_run(
    argv: list[str], env: dict[str, str], use_pty: bool, redact: Redactor, interrupt_after_step: int | None
) -> Recording:
    records: list[dict] = []
    sel = selectors.DefaultSelector()
    decoders: dict[int, StreamDecoder] = {}
    master = None
    sigint_at: float | None = None
    killed: str | None = None
    watch: dict[int, str] = {}  # recent text per stream, to spot the progress line that triggers SIGINT

    if use_pty:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", PTY_ROWS, PTY_COLUMNS, 0, 0))
        start = time.monotonic()
        process = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True, close_fds=True
        )
        os.close(slave)
        decoders[master] = StreamDecoder("pty", redact)
        sel.register(master, selectors.EVENT_READ)
    else:
        start = time.monotonic()
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        for pipe, name in ((process.stdout, "stdout"), (process.stderr, "stderr")):
            assert pipe is not None
            os.set_blocking(pipe.fileno(), False)
            decoders[pipe.fileno()] = StreamDecoder(name, redact)
            sel.register(pipe.fileno(), selectors.EVENT_READ)

    def now() -> float:
        return round(time.monotonic() - start, 3)

    def emit(fd: int, data: bytes, final: bool = False) -> None:
        text = decoders[fd].feed(data, final)
        if text:
            records.append({"t": now(), "stream": decoders[fd].name, "data": text})
            if interrupt_after_step is not None and sigint_at is None:
                watch[fd] = (watch.get(fd, "") + text)[-2000:]
                if any(int(m.group(1)) >= interrupt_after_step for m in STEP_RE.finditer(watch[fd])):
                    send(signal.SIGINT)

    def send(sig: int) -> None:
        nonlocal sigint_at
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        if sig == signal.SIGINT and sigint_at is None:
            sigint_at = now()

    open_fds = set(decoders)
    while open_fds:
        elapsed = time.monotonic() - start
        if killed is None and elapsed > RUN_TIMEOUT:
            killed = "timeout"
            send(signal.SIGKILL)
        if sigint_at is not None and killed is None and elapsed - sigint_at > INTERRUPT_GRACE:
            killed = "sigterm after sigint"
            send(signal.SIGTERM)
        for key, _ in sel.select(timeout=0.5):
            fd = key.fd
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            except OSError as error:  # a pty master reads EIO once every slave is closed
                if error.errno != errno.EIO:
                    raise
                data = b""
            if data:
                emit(fd, data)
            else:
                emit(fd, b"", final=True)
                sel.unregister(fd)
                open_fds.discard(fd)
        if use_pty and process.poll() is not None and open_fds:
            # the child is gone; drain what is left without blocking forever on a held slave
            for fd in list(open_fds):
                while True:
                    ready = sel.select(timeout=0.2)
                    if not ready:
                        break
                    try:
                        data = os.read(fd, 65536)
                    except OSError:
                        data = b""
                    if not data:
                        break
                    emit(fd, data)
                emit(fd, b"", final=True)
                sel.unregister(fd)
                open_fds.discard(fd)
    try:
        returncode = process.wait(timeout=max(1.0, RUN_TIMEOUT - (time.monotonic() - start)))
    except subprocess.TimeoutExpired:
        killed = killed or "timeout"
        send(signal.SIGKILL)
        returncode = process.wait()
    duration = now()
    if master is not None:
        os.close(master)
    else:
        for pipe in (process.stdout, process.stderr):
            if pipe:
                pipe.close()
    sel.close()
    return Recording(records, returncode, duration, sigint_at, killed)


def run_scenario(scenario: Scenario, out_dir: Path, keep: bool = False) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="kw-rec-")).resolve()
    root = tmp / "project"
    try:
        build_project(root, scenario)
        argv = plan_command(root)
        if scenario.after_plan:
            scenario.after_plan(root)
        for option, value in scenario.launch_options.items():
            argv[argv.index(option) + 1] = value
        empty_cache = tmp / "empty-hf-cache"
        empty_cache.mkdir()

        overrides = {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        if scenario.pty:
            overrides["TERM"] = "xterm-256color"
        else:
            overrides["COLUMNS"] = "250"
        overrides.update({k: v.replace("<EMPTY_HF_CACHE>", empty_cache.as_posix()) for k, v in scenario.env.items()})
        for name in scenario.unset:
            overrides.pop(name, None)
        env = {k: v for k, v in os.environ.items() if k not in (*ENV_UNSET, *scenario.unset)}
        env.update(overrides)

        placeholders = [
            (root.as_posix(), "<PROJECT>"),
            (SD_PYTHON.as_posix(), "<SD_PYTHON>"),
            (SD_SCRIPTS.as_posix(), "<SD_SCRIPTS>"),
            (SD_VENV.as_posix(), "<SD_VENV>"),
            (MODEL.as_posix(), "<MODEL>"),
            (TOKENIZERS.as_posix(), "<TOKENIZERS>"),
            (empty_cache.as_posix(), "<EMPTY_HF_CACHE>"),
        ]
        stdlib = sd_python_stdlib()
        if stdlib:
            placeholders.append((stdlib, "<PY_STDLIB>"))
        for path, placeholder in list(placeholders):
            real = os.path.realpath(path)
            if real != path:
                placeholders.append((real, placeholder))
        redact = Redactor(placeholders)

        print(f"[{scenario.name}] running: {' '.join(redact(a) for a in argv)}", file=sys.stderr, flush=True)
        recording = record_run(argv, env, scenario.pty, redact, scenario.interrupt_after_step)

        header = {
            "format": 1,
            "scenario": scenario.name,
            "description": scenario.description,
            "argv": [redact(a) for a in argv],
            "env": {k: redact(v) for k, v in overrides.items()},
            "env_unset": [*ENV_UNSET, *scenario.unset],
            "sd_scripts": sd_scripts_version(),
            "recorded": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            "placeholders": {
                "<PROJECT>": "the project folder",
                "<SD_SCRIPTS>": "the sd-scripts checkout",
                "<SD_PYTHON>": "the python of sd-scripts' venv",
                "<SD_VENV>": "sd-scripts' venv",
                "<MODEL>": "the tiny SD1.5 diffusers folder",
                "<TOKENIZERS>": "the tokenizer cache dir",
                "<EMPTY_HF_CACHE>": "an empty Hugging Face cache (HF_HUB_CACHE) where a scenario sets one",
                "<PY_STDLIB>": "the standard library of sd-scripts' python",
            },
        }
        if scenario.pty:
            header["pty"] = {"columns": PTY_COLUMNS, "rows": PTY_ROWS}
        if recording.sigint_at is not None:
            header["signal"] = {"name": "SIGINT", "t": recording.sigint_at, "to": "process group"}
        if recording.killed:
            header["killed"] = recording.killed
        # what the run left in model/ (checkpoints, sample/ images) and log/ (tensorboard), for a replay to recreate
        header["files"] = {
            file.relative_to(root).as_posix(): file.stat().st_size
            for sub in ("model", "log")
            for file in sorted((root / sub).rglob("*"))
            if file.is_file()
        }
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{scenario.name}.jsonl"
        partial = path.with_suffix(".jsonl.partial")
        with partial.open("w", encoding="utf-8", newline="\n") as handle:
            for record in [header, *recording.records, {"t": recording.duration, "exit": recording.returncode}]:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        partial.replace(path)
        print(
            f"[{scenario.name}] exit {recording.returncode} in {recording.duration:.1f} s, "
            f"{len(recording.records)} chunks -> {path} ({path.stat().st_size} bytes)",
            file=sys.stderr,
            flush=True,
        )
        return path
    finally:
        if keep:
            print(f"[{scenario.name}] kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- verification


def verify(path: Path) -> dict:
    """Check header + chunks + exit line; return a summary."""
    lines = path.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    header, body, last = records[0], records[1:-1], records[-1]
    problems = []
    if header.get("format") != 1 or "scenario" not in header or "argv" not in header:
        problems.append("bad header")
    if "exit" not in last:
        problems.append("no exit line")
    times = [r["t"] for r in body]
    if any(b < a for a, b in zip(times, times[1:], strict=False)):
        problems.append("times go backwards")
    for record in body:
        if set(record) != {"t", "stream", "data"} or record["stream"] not in ("stdout", "stderr", "pty"):
            problems.append(f"bad chunk {record}")
            break
    text = "".join(r["data"] for r in body)
    leaks = [
        tempfile.gettempdir() + "/kw-rec-",
        SD_SCRIPTS.as_posix(),
        SD_VENV.as_posix(),
        MODEL.as_posix(),
        TOKENIZERS.as_posix(),
    ]
    for leak in leaks + ([sd_python_stdlib()] if "Traceback" in text else []):
        if leak in text or any(leak in a for a in header.get("argv", [])):
            problems.append(f"unreplaced path {leak}")
    return {
        "scenario": header.get("scenario"),
        "exit": last.get("exit"),
        "duration": last.get("t"),
        "chunks": len(body),
        "bytes": path.stat().st_size,
        "problems": problems,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scenario", action="append", choices=sorted(SCENARIOS), help="scenario to record (repeatable; default: all)"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT.relative_to(REPO)})"
    )
    parser.add_argument("--verify-only", action="store_true", help="only verify the fixtures already in --out")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project folders")
    args = parser.parse_args(argv)
    names = args.scenario or list(SCENARIOS)
    status = 0
    for name in names:
        path = args.out / f"{name}.jsonl"
        if not args.verify_only:
            path = run_scenario(SCENARIOS[name], args.out, keep=args.keep)
        if not path.is_file():
            print(f"{name}: missing {path}")
            status = 1
            continue
        summary = verify(path)
        print(
            f"{name}: exit {summary['exit']}, {summary['duration']:.1f} s, {summary['chunks']} chunks, "
            f"{summary['bytes']} bytes" + (f", PROBLEMS: {summary['problems']}" if summary["problems"] else "")
        )
        status |= bool(summary["problems"])
    return status


if __name__ == "__main__":
    sys.exit(main())
