"""What changed between two sd-scripts versions' options, and what that breaks in a project. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kohya_wrap.sdscripts.schema import OptionInfo, OptionSchema

COMPARED = ("type", "action", "nargs", "default", "choices")


@dataclass(frozen=True)
class ScriptDiff:
    script: str
    added: tuple[OptionInfo, ...] = ()
    removed: tuple[OptionInfo, ...] = ()
    changed: tuple[tuple[str, dict[str, tuple[Any, Any]]], ...] = ()  # (option, {field: (a, b)})
    status: str = "changed"  # changed | added | removed

    @property
    def empty(self) -> bool:
        return self.status == "changed" and not (self.added or self.removed or self.changed)


@dataclass(frozen=True)
class SchemaDiff:
    a: str
    b: str
    scripts: tuple[ScriptDiff, ...]
    dataset_added: dict[str, tuple[str, ...]] = field(default_factory=dict)
    dataset_removed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    dataset_changed: dict[str, tuple[tuple[str, str, str], ...]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return all(s.empty for s in self.scripts) and not any(
            (*self.dataset_added.values(), *self.dataset_removed.values(), *self.dataset_changed.values())
        )

    def as_dict(self) -> dict[str, Any]:
        def option(o: OptionInfo) -> dict[str, Any]:
            return {
                "name": o.name,
                "type": o.type,
                "nargs": o.nargs,
                "default": o.default,
                "choices": list(o.choices) if o.choices else None,
            }

        return {
            "a": self.a,
            "b": self.b,
            "scripts": [
                {
                    "script": s.script,
                    "status": s.status,
                    "added": [option(o) for o in s.added],
                    "removed": [option(o) for o in s.removed],
                    "changed": {name: {k: list(v) for k, v in fields.items()} for name, fields in s.changed},
                }
                for s in self.scripts
            ],
            "dataset_config": {
                "added": self.dataset_added,
                "removed": self.dataset_removed,
                "changed": self.dataset_changed,
            },
        }


def _fields(option: OptionInfo) -> dict[str, Any]:
    return {name: getattr(option, name) for name in COMPARED}


def diff_schemas(a: OptionSchema, b: OptionSchema) -> SchemaDiff:
    scripts = []
    for script in sorted(set(a.scripts) | set(b.scripts)):
        old, new = a.scripts.get(script), b.scripts.get(script)
        if old is None:
            scripts.append(ScriptDiff(script, added=tuple(new[k] for k in sorted(new)), status="added"))
            continue
        if new is None:
            scripts.append(ScriptDiff(script, removed=tuple(old[k] for k in sorted(old)), status="removed"))
            continue
        changed = []
        for name in sorted(set(old) & set(new)):
            before, after = _fields(old[name]), _fields(new[name])
            delta = {k: (before[k], after[k]) for k in COMPARED if before[k] != after[k]}
            if delta:
                changed.append((name, delta))
        scripts.append(
            ScriptDiff(
                script,
                added=tuple(new[k] for k in sorted(set(new) - set(old))),
                removed=tuple(old[k] for k in sorted(set(old) - set(new))),
                changed=tuple(changed),
            )
        )
    added, removed, changed_keys = {}, {}, {}
    for level in sorted(set(a.dataset_keys) | set(b.dataset_keys)):
        old_keys, new_keys = a.dataset_keys.get(level, {}), b.dataset_keys.get(level, {})
        added[level] = tuple(sorted(set(new_keys) - set(old_keys)))
        removed[level] = tuple(sorted(set(old_keys) - set(new_keys)))
        changed_keys[level] = tuple(
            (k, old_keys[k], new_keys[k]) for k in sorted(set(old_keys) & set(new_keys)) if old_keys[k] != new_keys[k]
        )
    return SchemaDiff(a.source, b.source, tuple(scripts), added, removed, changed_keys)
