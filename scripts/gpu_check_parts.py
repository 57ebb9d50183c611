"""The testable parts of scripts/gpu_check.py: what the machine can run (the config matrix), the spec each
config trains with, nvidia-smi's answers parsed and sampled for one process tree, steady s/step from
sd-scripts' progress bar, and the result table (text and Markdown). No torch, no GPU needed to import."""

from __future__ import annotations

import statistics
import subprocess
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

FAMILIES = ("sd15", "sdxl")
RESOLUTION = {"sd15": 512, "sdxl": 1024}  # what users train each family at
COMPUTE_APPS = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]
GPU_MEMORY = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"]


# ---------------------------------------------------------------------------------------------- the matrix


@dataclass(frozen=True)
class Capabilities:
    """What sd-scripts' venv can run, from kohya-wrap's environment probe (sdscripts/envprobe.py)."""

    cuda: bool
    device: str = ""
    bf16: bool = False
    xformers: bool = False
    bitsandbytes: bool = False
    why_not: dict[str, str] = field(default_factory=dict)  # axis → why it is left out

    @classmethod
    def from_probe(cls, probe: dict) -> "Capabilities":
        torch = probe.get("torch") or {}
        devices = torch.get("devices") or []
        cuda = torch.get("accelerator") == "cuda" and bool(devices)
        why: dict[str, str] = {}
        bf16 = cuda and bool(devices[0].get("bf16"))
        if cuda and not bf16:
            why["bf16"] = f"{devices[0].get('name', 'GPU 0')} has no native bf16"
        found = {}
        for part in ("xformers", "bitsandbytes"):
            info = probe.get(part) or {}
            found[part] = bool(info.get("installed") and info.get("ok"))
            if not info.get("installed"):
                why[part] = "not installed in sd-scripts' venv"
            elif not info.get("ok"):
                why[part] = f"does not run: {info.get('error') or 'unknown error'}"
        return cls(
            cuda=cuda,
            device=devices[0].get("name", "") if devices else "",
            bf16=bf16,
            xformers=found["xformers"],
            bitsandbytes=found["bitsandbytes"],
            why_not=why,
        )


@dataclass(frozen=True)
class Config:
    family: str
    precision: str  # fp16 | bf16
    attention: str  # sdpa | xformers
    optimizer: str  # AdamW8bit | AdamW

    @property
    def name(self) -> str:
        return f"{self.family}-{self.precision}-{self.attention}-{self.optimizer}"

    def training(self) -> dict:
        """The [training] keys this config sets over the common ones (SPEC)."""
        keys: dict = {"mixed_precision": self.precision, self.attention: True, "optimizer_type": self.optimizer}
        if self.family == "sdxl":  # as most SDXL LoRAs train: the U-Net on cached text-encoder outputs
            keys |= {"network_train_unet_only": True, "cache_text_encoder_outputs": True}
        return keys


def matrix(caps: Capabilities, families: Iterable[str] = FAMILIES) -> tuple[list[Config], list[str]]:
    """Every config this machine can run, per family: precision × attention, AdamW8bit where bitsandbytes
    runs (else AdamW); and a note for each axis left out, saying why."""
    precisions = ["fp16"] + (["bf16"] if caps.bf16 else [])
    attentions = ["sdpa"] + (["xformers"] if caps.xformers else [])
    optimizer = "AdamW8bit" if caps.bitsandbytes else "AdamW"
    notes = []
    if not caps.bf16:
        notes.append(f"bf16 left out: {caps.why_not.get('bf16', 'no CUDA device with bf16')}")
    if not caps.xformers:
        notes.append(f"xformers left out: {caps.why_not.get('xformers', 'not usable')}")
    if not caps.bitsandbytes:
        notes.append(f"AdamW instead of AdamW8bit: bitsandbytes {caps.why_not.get('bitsandbytes', 'not usable')}")
    configs = [Config(f, p, a, optimizer) for f in families for p in precisions for a in attentions]
    return configs, notes


SPEC = """\
# made by scripts/gpu_check.py: the demo model trained with the settings users run on a GPU
name = "gpucheck"

[model]
base = "{model}"
family = "{family}"

[[concepts]]
token = "kwgpu"
class = "shape"
repeats = 1

[dataset]
resolution = {resolution}
enable_bucket = false
caption_extension = ".txt"

[training]
network_dim = 16
network_alpha = 8
learning_rate = 1e-4
max_train_steps = {steps}
train_batch_size = {batch}
cache_latents = true
cache_latents_to_disk = true
gradient_checkpointing = true
max_data_loader_n_workers = 0
seed = 1
tokenizer_cache_dir = "{tokenizers}"
{extra}
"""


def toml_value(value) -> str:
    return (
        "true"
        if value is True
        else "false"
        if value is False
        else f'"{value}"'
        if isinstance(value, str)
        else str(value)
    )


def spec_text(config: Config, model: Path, tokenizers: Path, steps: int, resolution: int, batch: int) -> str:
    extra = "\n".join(f"{key} = {toml_value(value)}" for key, value in config.training().items())
    return SPEC.format(
        model=model.as_posix(),
        family=config.family,
        resolution=resolution,
        steps=steps,
        batch=batch,
        tokenizers=tokenizers.as_posix(),
        extra=extra,
    )


# ---------------------------------------------------------------------------------------------- nvidia-smi


def _mib(text: str) -> int | None:
    """One memory figure in MiB; None for "[N/A]", "[Not Supported]" and anything else not a number."""
    try:
        return int(float(text.strip()))
    except ValueError:
        return None


def parse_compute_apps(text: str) -> dict[int, int]:
    """`nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits` → {pid: MiB}, summed
    over GPUs. No processes is an empty answer (or "No running processes found"); a process whose memory
    reads "[N/A]" (as in some containers) counts with 0 MiB, so it is still seen."""
    found: dict[int, int] = {}
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) < 2 or not parts[0].isdigit():
            continue
        found[int(parts[0])] = found.get(int(parts[0]), 0) + (_mib(parts[1]) or 0)
    return found


def parse_gpu_memory(text: str) -> int | None:
    """`nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits` → MiB used on all GPUs together."""
    values = [_mib(line) for line in text.splitlines() if line.strip()]
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def process_tree(root: int, proc: Path = Path("/proc")) -> set[int]:
    """`root` and every process descended from it (Linux /proc), whatever process group it is in."""
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) ": state, ppid, …
        if len(fields) > 1 and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo.extend(children.get(pid, []))
    return tree


def query(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


class VramSampler:
    """Samples GPU memory every `interval` s while a process tree runs: the peak summed over the tree's
    processes as nvidia-smi lists them, and the peak of the GPUs' used memory above what was used before
    the start. The tree's figure is the answer; where nvidia-smi shows no process of it (a container
    whose PIDs it cannot map), the device's rise is, and `source` says which."""

    def __init__(self, interval: float = 0.2, ask: Callable[[list[str]], str] = query, proc: Path = Path("/proc")):
        self.interval, self.ask, self.proc = interval, ask, proc
        self.root: int | None = None
        self.baseline = parse_gpu_memory(ask(GPU_MEMORY)) or 0
        self.tree_peak = 0
        self.device_peak = 0
        self.seen_tree = False
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> None:
        if self.root is None:
            return
        tree = process_tree(self.root, self.proc)
        apps = parse_compute_apps(self.ask(COMPUTE_APPS))
        mine = [mib for pid, mib in apps.items() if pid in tree]
        if mine:
            self.seen_tree = True
            self.tree_peak = max(self.tree_peak, sum(mine))
        used = parse_gpu_memory(self.ask(GPU_MEMORY))
        if used is not None:
            self.device_peak = max(self.device_peak, used - self.baseline)
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self, root: int) -> "VramSampler":
        self.root = root
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> int | None:
        if self.seen_tree and self.tree_peak:
            return self.tree_peak
        return self.device_peak or None

    @property
    def source(self) -> str:
        return "processes" if self.seen_tree and self.tree_peak else "device" if self.device_peak else "none"


# ---------------------------------------------------------------------------------------------- results


def steady_seconds_per_step(progress: Iterable[tuple[int, float | None]], warmup: int = 2) -> float | None:
    """The median of sd-scripts' s/step over the steps after the first `warmup` (CUDA kernels picked,
    memory allocated); all steps when the run is shorter. `progress`: (step, seconds_per_step) pairs."""
    rates = [(step, rate) for step, rate in progress if rate]
    later = [rate for step, rate in rates if step > warmup] or [rate for _, rate in rates]
    return statistics.median(later) if later else None


@dataclass
class Measured:
    wall_s: float
    exit_code: int
    seconds_per_step: float | None = None
    peak_vram_mib: int | None = None
    vram_source: str = "none"
    steps: int = 0
    loss: float | None = None


@dataclass
class Result:
    config: Config
    wrapped: Measured | None = None
    direct: Measured | None = None
    error: str | None = None

    @property
    def overhead(self) -> float | None:
        if self.wrapped and self.direct and self.direct.wall_s > 0:
            return self.wrapped.wall_s / self.direct.wall_s
        return None

    def as_dict(self) -> dict:
        return {
            "config": self.config.name,
            **asdict(self.config),
            "kohya_wrap_run": asdict(self.wrapped) if self.wrapped else None,
            "direct": asdict(self.direct) if self.direct else None,
            "overhead_ratio": self.overhead,
            "error": self.error,
        }


def _fmt(value, spec: str, unit: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{unit}"


COLUMNS = ("config", "s/step", "s/step direct", "peak VRAM", "peak VRAM direct", "wall", "wall direct", "run/direct")


def rows(results: list[Result]) -> list[list[str]]:
    out = []
    for r in results:
        w, d = r.wrapped, r.direct
        out.append(
            [
                r.config.name if not r.error else f"{r.config.name} (failed)",
                _fmt(w and w.seconds_per_step, ".3f"),
                _fmt(d and d.seconds_per_step, ".3f"),
                _fmt(w and w.peak_vram_mib, ",", " MiB"),
                _fmt(d and d.peak_vram_mib, ",", " MiB"),
                _fmt(w and w.wall_s, ".1f", " s"),
                _fmt(d and d.wall_s, ".1f", " s"),
                _fmt(r.overhead, ".3f"),
            ]
        )
    return out


def table(results: list[Result]) -> str:
    body = [list(COLUMNS), *rows(results)]
    widths = [max(len(row[i]) for row in body) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in body)


def markdown(results: list[Result], facts: list[str]) -> str:
    lines = [f"- {fact}" for fact in facts] + ["", "| " + " | ".join(COLUMNS) + " |"]
    lines.append("|" + "---|" * len(COLUMNS))
    lines += ["| " + " | ".join(row) + " |" for row in rows(results)]
    lines += [f"\n{r.config.name} failed: {r.error}" for r in results if r.error]
    return "\n".join(lines) + "\n"
