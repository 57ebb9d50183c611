"""The bookkeeping of one import (``_Import``) and one export (``_Export``); the steps in
importer, exporter, network and samples fill them."""

from __future__ import annotations

from typing import Any, Callable

from kohya_wrap.interop.kohya_ss.tables import _GUI_BASE, _is_gui_default
from kohya_wrap.interop.kohya_ss.values import _CONVERT, Unmapped, _bad, _BadValue, _blank, _inactive


class _Import:
    """The state of one import; the import steps (importer, network, samples) fill it."""

    def __init__(self, gui: dict, subfolders: Callable[[str], list[str]] | None, gui_defaults: bool = True) -> None:
        self.gui = gui
        self.subfolders = subfolders
        self.gui_defaults = gui_defaults  # fill a needed key the file lacks with the GUI's default
        self.spec: dict[str, Any] = {}
        self.unmapped: list[Unmapped] = []
        self.notes: list[str] = []
        self.consumed: dict[str, None] = {}
        self.reported: set[str] = set()
        self.family: str | None = None
        self.network_module: str | None = None

    # bookkeeping ---------------------------------------------------------
    def raw(self, key: str, default: object = None) -> object:
        return self.gui.get(key, default)

    def take(self, *keys: str) -> None:
        for key in keys:
            if key in self.gui:
                self.consumed[key] = None

    def report(self, key: str, value: object, reason: str) -> None:
        self.unmapped.append(Unmapped(key, value, reason))
        self.reported.add(key)

    def put(self, section: str, key: str, value: object) -> None:
        if section == "name":
            self.spec["name"] = value
        else:
            self.spec.setdefault(section, {})[key] = value

    def done(self, key: str) -> bool:
        return key in self.consumed or key in self.reported

    def value(self, key: str, kind: str, blank: object = None) -> tuple[bool, Any]:
        """(ok, converted value); a value that cannot be read is reported."""
        raw = self.gui.get(key)
        if _blank(raw):
            return True, blank
        try:
            return True, _CONVERT[kind](raw)
        except _BadValue as exc:
            self.report(key, raw, _bad(str(exc)))
            return False, None

    def inactive(self, key: str, why: str) -> None:
        """A key the GUI ignores here: consumed at its default, reported otherwise."""
        if key not in self.gui or self.done(key):
            return
        if _is_gui_default(key, self.gui[key]):
            self.take(key)
        else:
            self.report(key, self.gui[key], _inactive(why))


class _Export:
    def __init__(self, spec: dict, project_dir: str) -> None:
        self.spec = spec
        self.project_dir = project_dir
        self.gui: dict[str, object] = dict(_GUI_BASE)
        self.unmapped: list[Unmapped] = []
        self.done: set[tuple[str, str]] = set()
        self.family: str | None = None

    def section(self, name: str) -> dict:
        value = self.spec.get(name)
        return value if isinstance(value, dict) else {}

    def get(self, section: str, key: str, default: object = None) -> object:
        return self.section(section).get(key, default)

    def has(self, section: str, key: str) -> bool:
        return key in self.section(section)

    def use(self, section: str, *keys: str) -> None:
        self.done.update((section, k) for k in keys)

    def report(self, key: str, value: object, reason: str) -> None:
        self.unmapped.append(Unmapped(key, value, reason))
