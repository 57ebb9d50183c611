"""sd-scripts' own virtual environment: its requirements pin transformers, diffusers, accelerate … versions
that must not share an environment with kohya-wrap. Created with the chosen base Python, torch first
(the build decides CPU or CUDA), then requirements.txt with torch held; what went in is recorded in
install-state.json so an upgrade reinstalls only when it must."""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

from kohya_wrap.fsutil import write_text_atomic
from kohya_wrap.launch.process import run
from kohya_wrap.sdscripts.vendor.compat import Known, merge
from kohya_wrap.sdscripts.vendor.layout import Vendor, write_state
from kohya_wrap.sdscripts.vendor.phases import PhaseLog, pip_env

# PyPI's torch wheels for Linux are CUDA builds that also run on the CPU; sd-scripts imports
# torchvision without listing it, and a torchvision must match its torch exactly.
DEFAULT_TORCH = "torch==2.14.1 torchvision==0.29.1"


def file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def torch_requirements(torch: str) -> list[str]:
    return [] if torch.strip().lower() == "none" else shlex.split(torch)


def create_venv(vendor: Vendor, base_python: str, log: PhaseLog) -> str:
    if vendor.python.is_file():
        return f"kept {vendor.venv}"
    log.run([base_python, "-m", "venv", str(vendor.venv)])
    return f"created {vendor.venv}"


def install_torch(vendor: Vendor, torch: str, index_url: str | None, log: PhaseLog) -> str:
    packages = torch_requirements(torch)
    if not packages:
        return "skipped (--torch none)"
    argv = [str(vendor.python), "-m", "pip", "install", *packages]
    if index_url:
        argv += ["--index-url", index_url]
    log.run(argv)
    return " ".join(packages)


def install_requirements(
    vendor: Vendor, torch: str, constraints: tuple[str, ...], log: PhaseLog, compat: tuple[Known, ...] = ()
) -> str:
    """sd-scripts' requirements.txt, with the chosen torch held (requirements such as diffusers[torch]
    must not replace it), the user's extra pins and kohya-wrap's for the release's known
    incompatibilities (compat.py: e.g. numpy<2 for a release whose opencv-python was built against NumPy 1;
    the user's pin on the same package wins)."""
    requirements = vendor.checkout / "requirements.txt"
    if not requirements.is_file():
        return "no requirements.txt"
    # --upgrade: an unpinned requirement (e.g. `bitsandbytes`) left over from an older release must move
    # too, or the venv keeps a version the new code cannot import; torch stays held by the constraint.
    argv = [str(vendor.python), "-m", "pip", "install", "--upgrade", "-r", "requirements.txt"]
    applied = merge(constraints, tuple(k.constraint for k in compat))
    added = [k for k in compat if k.constraint in applied and k.constraint not in constraints]
    for known in added:
        log.write(f"kohya-wrap pins {known.constraint}: {known.reason}")
    pins = [*torch_requirements(torch), *applied]
    if pins:
        path = vendor.root / "constraints.txt"
        write_text_atomic(path, "\n".join(pins) + "\n")
        argv += ["-c", str(path)]
    log.run(argv, cwd=vendor.checkout)
    # recorded at once: the venv now holds these, even if a later phase fails
    write_state(
        vendor,
        requirements_sha256=file_sha256(requirements),
        constraints=list(constraints),
        compat_constraints=[k.constraint for k in compat],
    )
    detail = "requirements.txt installed"
    if constraints:
        detail += f" (pinned: {', '.join(constraints)})"
    if added:
        detail += "; kohya-wrap pinned " + ", ".join(f"{k.constraint} ({k.reason})" for k in added)
    return detail


TORCH_PROBE = (
    "import json\n"
    "try:\n import torch\nexcept Exception as e:\n print(json.dumps({'error': f'{type(e).__name__}: {e}'}))\n"
    "else:\n cuda = torch.cuda.is_available()\n"
    " print(json.dumps({'torch': torch.__version__, 'cuda': cuda,"
    " 'device': torch.cuda.get_device_name(0) if cuda else 'cpu'}))\n"
)


def torch_info(python: Path) -> dict[str, Any]:
    """torch version and device as seen by sd-scripts' Python (imports torch: a few seconds)."""
    try:
        result = run([str(python), "-c", TORCH_PROBE], timeout=300, env=pip_env())
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired) as exc:
        return {"error": str(exc) or type(exc).__name__}
