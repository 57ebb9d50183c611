"""sd-scripts under the vendor dir: a pinned git checkout (gitpython) and its own virtual environment.

Layout of the vendor dir (`paths.vendor_dir()`): `sd-scripts.lock` (source, ref, commit, excluded paths,
the pip constraints the venv was installed with;
written by install/upgrade, git-ignored in a source checkout; until there is one, the pin kohya-wrap
ships in `kohya_wrap/data/sd-scripts.lock` applies), `sd-scripts/` (the checkout), `venv/` (sd-scripts'
own Python: its requirements pin transformers, diffusers, accelerate … versions that must not share an
environment with kohya-wrap), `install-state.json` (what was installed into the venv) and `logs/`.

Every phase writes what it runs and prints to one log; a failing phase names itself and the log.
git and pip always get argument lists, never a shell, and every child process goes through
launch.process.

The parts: `lock` (the lock file and the shipped pin), `layout` (the vendor dir), `phases` (the phase
log), `repo` (git), `venv` (the venv and torch), `compat` (known incompatibilities of older releases with
today's PyPI), `manage` (install, upgrade, status, options of a ref).
"""

from __future__ import annotations

from kohya_wrap.sdscripts.vendor.layout import Vendor, write_state
from kohya_wrap.sdscripts.vendor.lock import DEFAULT_SOURCE, LOCK_NAME, SHIPPED_LOCK, Lock, read_lock, shipped_lock
from kohya_wrap.sdscripts.vendor.manage import (
    PLATFORM_EXCLUDES,
    InstallOptions,
    UpgradeResult,
    install,
    normalise_excludes,
    schema_at_ref,
    status,
    upgrade,
)
from kohya_wrap.sdscripts.vendor.phases import PhaseFailed, PhaseLog
from kohya_wrap.sdscripts.vendor.repo import archive_tree, dirty_files, resolve_commit
from kohya_wrap.sdscripts.vendor.venv import DEFAULT_TORCH, torch_info

__all__ = [
    "DEFAULT_SOURCE",
    "DEFAULT_TORCH",
    "LOCK_NAME",
    "PLATFORM_EXCLUDES",
    "SHIPPED_LOCK",
    "InstallOptions",
    "Lock",
    "PhaseFailed",
    "PhaseLog",
    "UpgradeResult",
    "Vendor",
    "archive_tree",
    "dirty_files",
    "install",
    "normalise_excludes",
    "read_lock",
    "resolve_commit",
    "schema_at_ref",
    "shipped_lock",
    "status",
    "torch_info",
    "upgrade",
    "write_state",
]
