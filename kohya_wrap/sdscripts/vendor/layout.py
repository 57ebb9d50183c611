"""The vendor dir and what is in it (`paths.vendor_dir()`), named in one place so the git, venv and
command modules agree on where the checkout, the venv, the lock, the install state and the logs are."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kohya_wrap.fsutil import write_text_atomic
from kohya_wrap.paths import vendor_dir
from kohya_wrap.sdscripts.locate import SdScripts, venv_python
from kohya_wrap.sdscripts.vendor.lock import LOCK_NAME, Lock, read_lock, shipped_lock


@dataclass(frozen=True)
class Vendor:
    """The vendor dir and what is in it."""

    root: Path

    @classmethod
    def default(cls) -> "Vendor":
        return cls(vendor_dir())

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_NAME

    @property
    def checkout(self) -> Path:
        return self.root / "sd-scripts"

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def python(self) -> Path:
        return venv_python(self.venv)

    @property
    def state_path(self) -> Path:
        return self.root / "install-state.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def installed(self) -> bool:
        return (self.checkout / ".git").exists()

    def sd_scripts(self) -> SdScripts:
        return SdScripts(self.checkout, self.python)

    def lock(self) -> Lock | None:
        """This vendor dir's lock, else the pin shipped with kohya-wrap, else none."""
        if self.lock_path.is_file():
            return read_lock(self.lock_path)
        return shipped_lock()

    def state(self) -> dict[str, Any]:
        """What was installed into the venv (install-state.json; empty before the first install, and where
        the file is damaged: not JSON, or not a JSON object)."""
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return {}
        return data if isinstance(data, dict) else {}


def write_state(vendor: Vendor, **values: Any) -> None:
    state = vendor.state() | values
    write_text_atomic(vendor.state_path, json.dumps(state, indent=2, sort_keys=True) + "\n")
