"""What training will find in sd-scripts' venv, probed inside that venv (run by `preflight.py` as
`python envprobe.py PART...`; standard library plus what that venv has installed, nothing of kohya-wrap).

Parts: `torch` (its version and build, transformers' version, the device training gets: CUDA, MPS,
XPU or the CPU, and the CUDA devices with their memory and native bf16 support), `xformers` (one
memory-efficient attention call on the device training uses) and `bitsandbytes` (one AdamW8bit step
on that device): each is tried the way sd-scripts uses it, so an install that imports but cannot run
says so. A CPU-only torch build (its version.py names neither CUDA, ROCm nor XPU) has no CUDA device,
so torch is not imported for the `torch` part then.

Prints one line `KOHYA_WRAP_PROBE {json}` (whatever the imports print comes before it).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import sys

MARKER = "KOHYA_WRAP_PROBE "
HERE = os.path.dirname(os.path.abspath(__file__))
# not kohya-wrap's own modules (this folder) where torch, xformers or bitsandbytes look for theirs
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]


def version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:400] if text else type(exc).__name__


def torch_build() -> dict:
    """torch's build (CUDA/ROCm version or None) from its version.py, without importing it."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return {"installed": False}
    build: dict = {"installed": True, "version": version("torch")}
    try:
        with open(os.path.join(list(spec.submodule_search_locations)[0], "version.py"), encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        return build
    for key in ("cuda", "hip", "xpu"):
        found = re.search(rf"(?m)^{key}\s*(?::[^=]*)?=\s*(?:'([^']*)'|None)", text)
        build[key] = found.group(1) if found else None
    return build


def probe_torch() -> dict:
    info = torch_build()
    info["transformers"] = version("transformers")
    info["devices"] = []
    info["accelerator"] = "cpu"
    if not info["installed"]:
        return info
    if "cuda" in info and not (info["cuda"] or info["hip"] or info["xpu"]) and sys.platform != "darwin":
        info["imported"] = False  # a CPU build: no CUDA device whatever the machine has
        return info
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - whatever breaks the import is the finding
        info["error"] = describe(exc)
        return info
    info["imported"] = True
    info["version"] = torch.__version__
    info["cuda"], info["hip"] = torch.version.cuda, getattr(torch.version, "hip", None)
    try:
        info["accelerator"] = training_device()
        for index in range(torch.cuda.device_count() if info["accelerator"] == "cuda" else 0):
            props = torch.cuda.get_device_properties(index)
            if info["hip"]:  # ROCm: ask torch (gfx90a and newer have it)
                with torch.cuda.device(index):
                    bf16 = bool(torch.cuda.is_bf16_supported())
            else:  # CUDA: bf16 tensor cores from Ampere (compute capability 8.0) on; older GPUs only emulate it
                bf16 = props.major >= 8
            info["devices"].append(
                {
                    "name": props.name,
                    "memory": int(props.total_memory),
                    "capability": [props.major, props.minor],
                    "bf16": bf16,
                }
            )
    except Exception as exc:  # noqa: BLE001 - a CUDA that fails to initialise is reported, not raised
        info["cuda_error"] = describe(exc)
    return info


def training_device() -> str:
    """The device accelerate gives sd-scripts: CUDA (or ROCm), else Apple's MPS, else Intel's XPU, else the CPU."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    xpu = getattr(torch, "xpu", None)
    return "xpu" if xpu is not None and xpu.is_available() else "cpu"


def probe_xformers() -> dict:
    """`--xformers`: sd-scripts calls xformers.ops.memory_efficient_attention in the U-Net's attention."""
    if importlib.util.find_spec("xformers") is None:
        return {"installed": False}
    info: dict = {"installed": True, "version": version("xformers")}
    try:
        import torch
        import xformers.ops

        device = info["device"] = training_device()
        dtype = torch.float16 if device == "cuda" else torch.float32
        q = torch.zeros(1, 8, 1, 64, device=device, dtype=dtype)
        xformers.ops.memory_efficient_attention(q, q, q)
        info["ok"] = True
    except Exception as exc:  # noqa: BLE001
        info["ok"] = False
        info["error"] = describe(exc)
    return info


def probe_bitsandbytes() -> dict:
    """sd-scripts' 8-bit optimizers (AdamW8bit, Lion8bit, Paged…): one AdamW8bit step on the training
    device, on a tensor large enough (4096 values) for bitsandbytes to use its 8-bit state."""
    if importlib.util.find_spec("bitsandbytes") is None:
        return {"installed": False}
    info: dict = {"installed": True, "version": version("bitsandbytes")}
    try:
        import bitsandbytes as bnb
        import torch

        device = info["device"] = training_device()
        weight = torch.nn.Parameter(torch.zeros(4096, device=device))
        optimizer = bnb.optim.AdamW8bit([weight], lr=1e-3)
        weight.grad = torch.ones_like(weight)
        optimizer.step()
        info["ok"] = True
    except Exception as exc:  # noqa: BLE001
        info["ok"] = False
        info["error"] = describe(exc)
    return info


PROBES = {"torch": probe_torch, "xformers": probe_xformers, "bitsandbytes": probe_bitsandbytes}


def main(parts: list[str]) -> None:
    result = {"python": sys.version.split()[0]}
    for part in parts:
        result[part] = PROBES[part]()
    sys.stdout.flush()
    print(MARKER + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or list(PROBES))
