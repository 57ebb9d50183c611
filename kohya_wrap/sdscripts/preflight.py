"""Pre-flight: what sd-scripts' venv and the network would make fail only after the model loads, found
before launch (`check`, and so `plan` and `run`).

The venv is probed once in a child process (`envprobe.py`: torch's build and devices, their memory and
bf16 support, whether xformers and bitsandbytes run) and the answer cached per venv and driver under
the user cache dir, so a later check reads one small file. The cache key is made of file stats only:
the Python, the torch/xformers/bitsandbytes/transformers installs in its site-packages (dist-info
names carry the versions, their mtimes change on reinstall), the GPU driver's version and device
nodes, and the *_VISIBLE_DEVICES variables.

The hub files sd-scripts fetches at start-up (its tokenizers, an hf:// base model) are checked by
`hubfiles.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Iterable

from kohya_wrap.errors import Finding
from kohya_wrap.launch.process import child_env, run
from kohya_wrap.paths import user_cache_dir
from kohya_wrap.sdscripts.hubfiles import Network, base_model_checks, tokenizer_checks
from kohya_wrap.sdscripts.locate import SdScripts
from kohya_wrap.spec.models import ProjectSpec
from kohya_wrap.spec.settings import Settings

PROBE_SCRIPT = Path(__file__).with_name("envprobe.py")
PROBE_MARKER = "KOHYA_WRAP_PROBE "
PROBE_TIMEOUT_S = 300  # importing torch and bitsandbytes cold, and initialising CUDA, takes seconds to a minute
WATCHED_PACKAGES = ("torch", "xformers", "bitsandbytes", "transformers")
VISIBLE_DEVICES = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")


class ProbeError(Exception):
    """The venv could not be probed (the message says why); nothing is cached."""


# ---------------------------------------------------------------------------------------------- the probe


def probe_cache_dir() -> Path:
    return user_cache_dir() / "environment"


def _site_packages(python: Path) -> list[Path]:
    prefix = python.parent.parent  # <venv>/bin/python, <venv>/Scripts/python.exe, <conda env>/bin/python
    candidates = [
        *prefix.glob("lib/python3*/site-packages"),
        *prefix.glob("lib64/python3*/site-packages"),
        prefix / "Lib" / "site-packages",
    ]
    return [path for path in candidates if path.is_dir()]


def _stat(path: Path) -> str:
    try:
        stat = path.stat()
    except OSError:
        return f"{path.name}:-"
    return f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"


def _driver() -> list[str]:
    """The GPU driver's version (NVIDIA, AMD) and the device nodes: a driver update or a GPU added or
    removed is a new key."""
    found = []
    for path in ("/proc/driver/nvidia/version", "/sys/module/amdgpu/version"):
        try:
            found.append(Path(path).read_text(encoding="utf-8", errors="replace")[:400])
        except OSError:
            pass
    dev = Path("/dev")
    if dev.is_dir():
        found += sorted(p.name for p in dev.glob("nvidia[0-9]*"))
        found += ["kfd"] if (dev / "kfd").exists() else []
    return found


def probe_key(python: Path) -> str:
    parts = [str(python), str(python.resolve()), _stat(python), _stat(PROBE_SCRIPT)]
    for site in _site_packages(python):
        parts.append(str(site))
        for name in WATCHED_PACKAGES:
            parts += [_stat(p) for p in sorted(site.glob(f"{name}-*.dist-info"))]
            parts.append(_stat(site / name))
    parts += _driver()
    parts += [f"{name}={os.environ.get(name, '')}" for name in VISIBLE_DEVICES]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def run_probe(python: Path, parts: list[str], cwd: Path | None = None) -> dict[str, Any]:
    """Run envprobe.py for `parts` in the venv of `python`; its JSON, or ProbeError."""
    try:
        result = run(
            [str(python), str(PROBE_SCRIPT), *parts],
            cwd=cwd,
            env=child_env({"PYTHONUNBUFFERED": "1"}),
            timeout=PROBE_TIMEOUT_S,
        )
    except OSError as exc:
        raise ProbeError(f"cannot run {python} ({exc.strerror})") from None
    except subprocess.TimeoutExpired:
        raise ProbeError(f"probing it with {python} took over {PROBE_TIMEOUT_S} s and was stopped") from None
    for line in reversed(result.stdout.splitlines()):
        if line.startswith(PROBE_MARKER):
            try:
                return json.loads(line[len(PROBE_MARKER) :])
            except ValueError:
                break
    tail = [line for line in result.stderr.splitlines() if line.strip()][-1:] or [f"exit code {result.returncode}"]
    raise ProbeError(f"probing it with {python} failed: {tail[0].strip()}")


def probe_environment(sd: SdScripts, parts: Iterable[str]) -> dict[str, Any]:
    """The probe's answers for `parts`, from the cache where it has them; the missing parts are probed
    in one child process and added to the cache. Never for an sd-scripts the user has not trusted, not
    even from the cache (its Python is a program a project names)."""
    if not sd.trusted:
        raise ProbeError(f"{sd.python} is named by the spec and not trusted, so it is not run")
    path = probe_cache_dir() / f"{probe_key(sd.python)}.json"
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cached = {}
    missing = [part for part in dict.fromkeys(parts) if part not in cached]
    if missing:
        cached.update(run_probe(sd.python, missing, sd.root if sd.root.is_dir() else None))
        cached["python_path"] = str(sd.python)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps(cached, indent=1), encoding="utf-8")
        partial.replace(path)
    return cached


# ---------------------------------------------------------------------------------------------- what is needed


def _training(spec: ProjectSpec) -> dict[str, Any]:
    return spec.training.set_fields()


def needs_bitsandbytes(optimizer_type: str | None) -> bool:
    """sd-scripts' get_optimizer (library/train_util.py): every type ending in "8bit" (AdamW8bit,
    SGDNesterov8bit, Lion8bit, PagedAdamW8bit, PagedLion8bit, AdEMAMix8bit, …), PagedAdamW and
    PagedAdamW32bit import bitsandbytes, as does a class named by its module path in it."""
    value = (optimizer_type or "").strip().lower()
    return value.endswith("8bit") or value in ("pagedadamw", "pagedadamw32bit") or value.startswith("bitsandbytes.")


def probe_parts(spec: ProjectSpec) -> list[str]:
    training = _training(spec)
    parts = ["torch"]
    if training.get("xformers"):
        parts.append("xformers")
    if needs_bitsandbytes(training.get("optimizer_type")):
        parts.append("bitsandbytes")
    return parts


# ---------------------------------------------------------------------------------------------- findings: the venv


def _gib(size: int) -> str:
    return f"{size / 2**30:.0f} GiB"


def _torch_label(torch: dict[str, Any]) -> str:
    build = next(
        (
            f"a {name} {torch[key]} build"
            for key, name in (("cuda", "CUDA"), ("hip", "ROCm"), ("xpu", "XPU"))
            if torch.get(key)
        ),
        "a CPU-only build",
    )
    return f"torch {torch.get('version') or '?'}, {build}"


def summary(torch: dict[str, Any]) -> str:
    devices = torch.get("devices") or []
    if devices:
        shown = "; ".join(
            f"GPU {i} {d['name']} ({_gib(d['memory'])}{', bf16' if d.get('bf16') else ', no bf16'})"
            for i, d in enumerate(devices)
        )
        return f"sd-scripts' venv: {_torch_label(torch)} · {shown}"
    device = torch.get("accelerator", "cpu")
    if device == "cpu":
        return f"sd-scripts' venv: {_torch_label(torch)} · no CUDA device: sd-scripts trains on the CPU"
    return f"sd-scripts' venv: {_torch_label(torch)} · trains on {device.upper()}"


def precision_checks(settings: Settings, spec: ProjectSpec, torch: dict[str, Any]) -> list[Finding]:
    """fp16 without a CUDA device (the CPU has no half-precision matmul: sd-scripts stops at the first
    step with "expected m1 and m2 to have the same dtype … Half != float"); bf16 on a GPU without it;
    full_fp16/full_bf16 against mixed_precision (sd-scripts asserts it after loading the model).
    bf16 on the CPU trains (torch autocasts to bfloat16 there), so it is not a finding."""
    training = _training(spec)
    found: list[Finding] = []
    precision = settings.mixed_precision
    if spec.training.mixed_precision is not None or spec.launch.mixed_precision is None:
        where = "training.mixed_precision"
    else:
        where = "launch.mixed_precision"
    full = [key for key in ("full_fp16", "full_bf16") if training.get(key)]
    for key in full:
        wanted = key.removeprefix("full_")
        if precision != wanted:
            found.append(
                Finding(
                    f"training.{key}",
                    f'needs mixed_precision = "{wanted}" but it is "{precision}"; sd-scripts stops on it after '
                    "loading the model",
                    f'set {where} = "{wanted}", or remove {key}',
                    "error",
                )
            )
    accelerator = torch.get("accelerator", "cpu")
    devices = torch.get("devices") or []
    if accelerator == "cpu" and not devices and precision == "fp16":
        removal = " and remove full_fp16" if "full_fp16" in full else ""
        found.append(
            Finding(
                where,
                f"fp16 needs a CUDA device, and sd-scripts' venv sees none ({_torch_label(torch)}): sd-scripts "
                'would load the model, then fail at the first step ("expected m1 and m2 to have the same dtype … '
                'Half != float")',
                f'set {where} = "no"{removal} to train on the CPU (or "bf16", which the CPU runs too)',
                "error",
            )
        )
    if accelerator == "cuda" and (precision == "bf16" or "full_bf16" in full):
        used = devices[: max(1, settings.num_processes)]
        lacking = [f"GPU {i} {d['name']}" for i, d in enumerate(used) if not d.get("bf16")]
        if lacking:
            capability = used[0].get("capability") or []
            cc = f" (compute capability {'.'.join(map(str, capability))})" if capability else ""
            removal = " (and full_fp16 for full_bf16)" if "full_bf16" in full else ""
            found.append(
                Finding(
                    where if precision == "bf16" else "training.full_bf16",
                    f"bf16 needs a GPU with bf16 support (NVIDIA Ampere or newer); {', '.join(lacking)}{cc} has "
                    "none: torch emulates it at best, much slower, and some kernels fail",
                    f'set {where} = "fp16"{removal}',
                    "error",
                )
            )
    return found


def xformers_checks(sd: SdScripts, torch: dict[str, Any], xformers: dict[str, Any] | None) -> list[Finding]:
    if xformers is None:
        return []
    fix = "set sdpa = true instead (PyTorch's own attention) and remove xformers, or install an xformers built for "
    fix += f"torch {torch.get('version') or '?'} into sd-scripts' venv ({sd.python} -m pip install xformers)"
    if not xformers.get("installed"):
        return [
            Finding("training.xformers", f"xformers is not installed in sd-scripts' venv ({sd.python})", fix, "error")
        ]
    if not xformers.get("ok"):
        device = xformers.get("device", "cpu")
        why = xformers.get("error") or "unknown error"
        return [
            Finding(
                "training.xformers",
                f"xformers {xformers.get('version') or '?'} cannot run its attention on this machine's {device}: {why}",
                fix,
                "error",
            )
        ]
    return []


def bitsandbytes_checks(sd: SdScripts, spec: ProjectSpec, bnb: dict[str, Any] | None) -> list[Finding]:
    if bnb is None:
        return []
    optimizer = _training(spec).get("optimizer_type")
    fix = 'set optimizer_type = "AdamW" (no bitsandbytes needed), or install a bitsandbytes that runs here: '
    fix += f"{sd.python} -m pip install -U bitsandbytes"
    if not bnb.get("installed"):
        what = f'"{optimizer}" needs bitsandbytes, which is not installed in sd-scripts\' venv ({sd.python})'
        return [Finding("training.optimizer_type", what, fix, "error")]
    if not bnb.get("ok"):
        device = bnb.get("device", "cpu")
        why = bnb.get("error") or "unknown error"
        what = f'"{optimizer}" needs bitsandbytes, and bitsandbytes {bnb.get("version") or "?"} cannot run an 8-bit '
        what += f"optimizer step on this machine's {device}: {why}"
        return [Finding("training.optimizer_type", what, fix, "error")]
    return []


# ---------------------------------------------------------------------------------------------- all of it


def preflight(sd: SdScripts, settings: Settings, spec: ProjectSpec) -> list[Finding]:
    """Every pre-flight finding for this project with the installed sd-scripts (`sd.usable`). An
    sd-scripts the spec names and the user has not trusted is neither probed nor read (the tokenizers it
    names would come from the project): only the base model is checked."""
    network = Network()
    if not sd.trusted:
        untrusted = Finding(
            "environment",
            "not probed: sd-scripts' venv is named by the spec's [sd_scripts] and you have not trusted it, and "
            "kohya-wrap runs no program a project names; its CUDA devices and mixed precision, xformers, "
            "bitsandbytes and the tokenizers it downloads are checked once you do",
            "see sd_scripts.path above for the command that trusts it",
            "info",
        )
        return [untrusted, *base_model_checks(spec, network)]
    found: list[Finding] = []
    parts = probe_parts(spec)
    try:
        probe = probe_environment(sd, parts)
    except ProbeError as exc:
        found.append(
            Finding(
                "sd-scripts",
                f"its venv could not be probed for CUDA, xformers and bitsandbytes: {exc}",
                "check the venv (`kohya-wrap vendor status`); a run may fail after loading the model",
                "warning",
            )
        )
        probe = {}
    torch = probe.get("torch")
    if torch is not None:
        if not torch.get("installed") or torch.get("error"):
            found.append(
                Finding(
                    "sd-scripts",
                    f"torch does not import in sd-scripts' venv ({sd.python}): "
                    + (torch.get("error") or "it is not installed")
                    + "; training would fail, and CUDA and mixed precision are not checked",
                    "reinstall it: `kohya-wrap vendor install` (or `kohya-wrap vendor use PATH --python PY`)",
                    "warning",
                )
            )
        else:
            found.append(Finding("environment", summary(torch), "", "info"))
            if torch.get("cuda_error"):
                found.append(
                    Finding(
                        "environment",
                        f"CUDA did not initialise in sd-scripts' venv: {torch['cuda_error']}",
                        "check the NVIDIA driver (`nvidia-smi`) and CUDA_VISIBLE_DEVICES",
                        "warning",
                    )
                )
            found += precision_checks(settings, spec, torch)
            found += xformers_checks(sd, torch, probe.get("xformers") if "xformers" in parts else None)
            found += bitsandbytes_checks(sd, spec, probe.get("bitsandbytes") if "bitsandbytes" in parts else None)
    found += tokenizer_checks(sd, settings, (torch or {}).get("transformers"), network)
    found += base_model_checks(spec, network)
    return found
