"""What a run ran on, for its record: package versions in sd-scripts' venv, the GPUs, and the
sd-scripts checkout's commit and local changes; read in seconds, without importing torch."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from kohya_wrap.launch.process import run
from kohya_wrap.sdscripts.vendor import dirty_files
from kohya_wrap.training.record import EnvironmentInfo


def environment(python: Path, sd_root: Path) -> EnvironmentInfo:
    """Versions without importing torch (seconds): package metadata and torch/version.py in
    sd-scripts' venv, GPU names from nvidia-smi where there is one, the checkout's commit and changes."""
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
    try:
        packages = json.loads(run([str(python), "-c", code], timeout=60).stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired) as exc:
        packages = {"error": str(exc) or type(exc).__name__}
    smi = shutil.which("nvidia-smi")
    gpus: list[str] = []
    if smi:
        try:
            result = run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"], timeout=20)
            gpus = [line.strip() for line in result.stdout.splitlines() if line.strip()]
        except (OSError, subprocess.TimeoutExpired):
            pass
    commit, changed = None, []
    if (sd_root / ".git").exists():
        try:
            commit = run(["git", "-C", str(sd_root), "rev-parse", "HEAD"], timeout=30).stdout.strip() or None
        except (OSError, subprocess.TimeoutExpired):
            commit = None
        changed = dirty_files(sd_root)
    return EnvironmentInfo(packages=packages, gpus=gpus, sd_scripts_commit=commit, sd_scripts_changed_files=changed)
