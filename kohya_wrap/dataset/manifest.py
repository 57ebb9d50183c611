"""prep.json: what `prep` recorded about each source (size, time, hash, status, output), read back so
that whatever shape the file has — damaged, hand-edited, from another version — costs at most a
re-prepare of what it no longer describes, never a crash; and written while a concept is in progress,
so an interrupted prep resumes where it stopped."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from kohya_wrap.dataset.images import PrepResult, PrepSettings
from kohya_wrap.fsutil import write_text_atomic

MANIFEST = "prep.json"


def settings_key(settings: PrepSettings) -> dict[str, Any]:
    """The settings as stored in prep.json: other settings make every output stale."""
    return json.loads(json.dumps(asdict(settings)))


_RESULT_FIELDS = {f.name for f in fields(PrepResult)}


def from_entry(entry: dict[str, Any]) -> PrepResult:
    values = {k: v for k, v in entry.items() if k in _RESULT_FIELDS}
    values["dhash"] = int(entry["dhash"], 16) if entry.get("dhash") else None
    for key in ("source_size", "output_size"):
        values[key] = tuple(entry[key]) if entry.get(key) else None
    values["ops"] = list(entry.get("ops", []))
    return PrepResult(**values)


DUPLICATE_REASONS = ("exact duplicate of ", "near-duplicate of ")
UNREADABLE = "unreadable: "  # the file could not be read (permissions, a broken link, an I/O error)


def is_duplicate(entry: dict[str, Any]) -> bool:
    """Rejected as a duplicate: decided again on every prep, since it depends on the other sources (the
    photo it duplicated may be gone)."""
    return entry.get("reason", "").startswith(DUPLICATE_REASONS)


def is_retried(entry: dict[str, Any]) -> bool:
    """Rejected because the file could not be read: tried again on every prep, since fixing that (chmod,
    mounting the disk again) changes neither its size nor its time."""
    return entry.get("reason", "").startswith(UNREADABLE)


def progress_entries(
    decided: dict[str, PrepResult], earlier: list[dict[str, Any]], same_settings: bool
) -> list[dict[str, Any]]:
    """What prep.json records while a concept is in progress: this run's results so far, and the last
    run's entries of every other source — marked stale when the settings changed, so a resumed run
    prepares them again but still knows (and replaces) their earlier outputs."""
    entries = [decided[key].as_dict() for key in sorted(decided)]
    for entry in earlier:
        if entry["source"] not in decided:
            entries.append(entry if same_settings else {**entry, "stale": True})
    return entries


_ENTRY_TYPES: dict[str, tuple[type, Any]] = {  # field: (type, default when missing)
    "source": (str, None),
    "status": (str, None),
    "bytes": (int, None),
    "mtime_ns": (int, None),
    "sha256": (str, ""),
    "reason": (str, ""),
    "output": (str, ""),
    "pixels": (int, 0),
}


def _size(value: object) -> bool:
    return value is None or (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    )


def _clean_entry(entry: object) -> dict[str, Any] | None:
    """One image's record as prep wrote it, or None when it is not of that shape (then the source is
    simply prepared again)."""
    if not isinstance(entry, dict):
        return None
    clean: dict[str, Any] = {}
    for key, (kind, default) in _ENTRY_TYPES.items():
        value = entry.get(key, default)
        if not isinstance(value, kind) or isinstance(value, bool):
            return None
        clean[key] = value
    dhash, ops = entry.get("dhash"), entry.get("ops", [])
    if clean["status"] not in ("ok", "rejected") or not (
        _size(entry.get("source_size")) and _size(entry.get("output_size"))
    ):
        return None
    if dhash is not None and not (isinstance(dhash, str) and 0 < len(dhash) <= 16 and _is_hex(dhash)):
        return None
    if not isinstance(ops, list) or not all(isinstance(op, str) for op in ops):
        return None
    clean.update(dhash=dhash, ops=ops, source_size=entry.get("source_size"), output_size=entry.get("output_size"))
    if entry.get("stale") is True:
        clean["stale"] = True
    return clean


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


def read_manifest(root: Path) -> dict[str, Any]:
    """prep.json, keeping only what has the shape prep writes."""
    try:
        data = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    concepts = data.get("concepts") if isinstance(data, dict) else None
    if not isinstance(concepts, dict):
        return {}
    clean: dict[str, Any] = {}
    for label, concept in concepts.items():
        if not isinstance(concept, dict):
            continue
        images = concept.get("images")
        clean[label] = {k: concept[k] for k in ("source", "target", "settings") if k in concept} | {
            "images": [e for e in map(_clean_entry, images if isinstance(images, list) else []) if e is not None]
        }
    return {"concepts": clean}


def write_manifest(
    root: Path,
    manifest: dict[str, Any],
    label: str,
    where: tuple[Path, Path],
    settings: PrepSettings,
    entries: list[dict[str, Any]],
) -> None:
    """Record one concept (`where`: its source and training folders; `entries`: its images) in `manifest`
    (as read by read_manifest) and write the file atomically."""
    manifest.setdefault("concepts", {})[label] = {
        "source": str(where[0]),
        "target": str(where[1]),
        "settings": settings_key(settings),
        "images": entries,
    }
    write_text_atomic(root / MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
