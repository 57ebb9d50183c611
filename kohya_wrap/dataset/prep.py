"""`prep`: each concept's source photos → its training folder, one consistent size, on every core.

Per concept: list the sources (recursively, hidden files left out), name the outputs deterministically,
skip sources unchanged since the last run (prep.json), prepare the rest in a thread pool (the image work
is in dataset/images.py; libvips, Pillow and hashlib release the GIL), reject exact and near-duplicates,
copy caption sidecars, and record everything in prep.json. Sources are never modified.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kohya_wrap.dataset.dhash import hamming
from kohya_wrap.dataset.images import (
    CAPTION_SUFFIXES,
    OUTPUT_SUFFIX,
    SOURCE_SUFFIXES,
    PrepResult,
    PrepSettings,
    prepare_job,
    reject,
    vips,
)
from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.fsutil import copy_file_atomic, dataset_lock, sha256_file, write_text_atomic
from kohya_wrap.spec.edit import set_concept_source
from kohya_wrap.spec.load import LoadedSpec
from kohya_wrap.workers import Progress, no_progress, worker_count

# ---------------------------------------------------------------------------------------------- a concept


MANIFEST = "prep.json"


@dataclass
class ConceptPrep:
    label: str
    source: Path
    target: Path
    results: list[PrepResult] = field(default_factory=list)
    skipped: int = 0  # unchanged since the last prep
    fresh: int = 0  # images written this time
    captions: int = 0
    seconds: float = 0.0
    removed: list[Path] = field(default_factory=list)  # earlier copies replaced (see _remove_stale_copies)
    orphans: list[Path] = field(default_factory=list)  # prepared earlier from sources that are gone: kept
    source_saved: bool = False  # --source was written into the spec

    @property
    def rejected(self) -> list[PrepResult]:
        return [r for r in self.results if r.status == "rejected"]


def color(value: str | None, default: tuple[int, int, int]) -> tuple[int, int, int]:
    return default if value is None else tuple(int(value[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def list_sources(source: Path) -> list[Path]:
    """Images under `source`, recursively, hidden files and folders left out, in a stable order."""
    found = []
    for folder, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [
            Path(folder) / f for f in files if not f.startswith(".") and Path(f).suffix.lower() in SOURCE_SUFFIXES
        ]
    return sorted(found, key=lambda p: p.relative_to(source).as_posix())


def output_names(source: Path, sources: list[Path], suffix: str) -> dict[Path, str]:
    """Deterministic names: the path below the source folder with / → _, the source's own extension
    added only where two sources would otherwise share a name (a.jpg and a.png)."""
    stems = {p: p.relative_to(source).with_suffix("").as_posix().replace("/", "_") for p in sources}
    counts: dict[str, int] = {}
    for stem in stems.values():
        counts[stem] = counts.get(stem, 0) + 1
    return {
        p: (stem if counts[stem] == 1 else f"{stem}_{p.suffix.lstrip('.').lower()}") + suffix
        for p, stem in stems.items()
    }


def prep_concept(
    label: str,
    source: Path,
    target: Path,
    settings: PrepSettings,
    previous: dict[str, Any],
    near_distance: int,
    workers: int,
    on_done=None,
    sources: list[Path] | None = None,
) -> ConceptPrep:
    """Prepare every new or changed source of one concept (`sources`: list_sources(source), if the
    caller has it already); `previous` is the concept's last manifest entry."""
    report = ConceptPrep(label, source, target)
    sources = list_sources(source) if sources is None else sources
    names = output_names(source, sources, OUTPUT_SUFFIX[settings.out_format])
    same_settings = previous.get("settings") == settings_key(settings)
    known = {entry["source"]: entry for entry in previous.get("images", [])} if same_settings else {}
    jobs, results, undecided = [], [], []
    for path in sources:
        stat = path.stat()
        entry = known.get(str(path))
        output = target / names[path]
        if entry and entry.get("bytes") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
            if entry["status"] == "rejected" and is_duplicate(entry):
                # decided again below: the photo it duplicated may be gone
                result = _from_entry(entry)
                result.status, result.reason, result.output = "ok", "", str(output)
                undecided.append(result)
                results.append(result)
                report.skipped += 1
                continue
            if entry["status"] == "rejected" or output.is_file():
                results.append(_from_entry(entry))
                report.skipped += 1
                continue
        jobs.append((str(path), str(output), settings))
    target.mkdir(parents=True, exist_ok=True)
    fresh = _run_jobs(jobs, workers, on_done)
    report.results = sorted(results + fresh, key=lambda r: Path(r.source).relative_to(source).as_posix())
    _dedupe(report.results, near_distance)
    for result in undecided:
        if result.status == "rejected":
            result.output = ""  # still a duplicate: nothing was or is written for it
    winners = [(r.source, r.output, settings) for r in undecided if r.status == "ok"]
    if winners:  # no longer a duplicate (the photo it duplicated is gone): prepare it now
        again = {r.source: r for r in _run_jobs(winners, workers, on_done)}
        report.results = [again.get(r.source, r) for r in report.results]
        report.skipped -= len(winners)
        fresh += list(again.values())
    for result in fresh:
        if result.status == "rejected" and result.output:
            Path(result.output).unlink(missing_ok=True)  # our own output of a duplicate
            result.output = ""
        elif result.status == "ok":
            report.fresh += 1
            for suffix in CAPTION_SUFFIXES:
                caption = Path(result.source).with_suffix(suffix)
                if caption.is_file():
                    copy_file_atomic(caption, Path(result.output).with_suffix(suffix))
                    report.captions += 1
    report.removed = _remove_stale_copies(
        target, report.results, previous, {str(p): target / n for p, n in names.items()}
    )
    listed = {str(p) for p in sources}
    report.orphans = [
        Path(e["output"])
        for e in previous.get("images", [])
        if e.get("output") and e.get("source") not in listed and Path(e["output"]).is_file()
    ]
    return report


def _run_jobs(jobs: list[tuple[str, str, PrepSettings]], workers: int, on_done=None) -> list[PrepResult]:
    results: list[PrepResult] = []
    if len(jobs) <= 1 or workers <= 1:
        for job in jobs:
            results.append(prepare_job(job))
            if on_done:
                on_done(results[-1])
        return results
    # threads, not processes: libvips, Pillow (decode, resize, encode) and hashlib release the GIL for all
    # their heavy work, and threads start in no time where a spawned process pool costs ~0.15 s to start
    # and import (measured 6 % faster over 100 photos; docs/BENCHMARKS.md)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="prep")
    try:
        for future in as_completed([pool.submit(prepare_job, job) for job in jobs]):
            results.append(future.result())
            if on_done:
                on_done(results[-1])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C: finish the images in hand, start no more
    return results


# a file another tool (or `init --no-prep`) copied in verbatim: these extensions, the source's own bytes
_COPY_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def _remove_stale_copies(
    target: Path, results: list[PrepResult], previous: dict[str, Any], outputs: dict[str, Path]
) -> list[Path]:
    """A source prepared again must leave one training image, not two: remove this source's earlier
    output when its name changed (another format) or it is now rejected, and any verbatim copy of the
    source under its own or its output's stem (byte for byte the source: `init --no-prep`'s copies). Only
    files recorded as prep's own outputs or identical to a source that is still there are removed."""
    earlier = {e["source"]: Path(e["output"]) for e in previous.get("images", []) if e.get("output")}
    removed = []
    for result in results:
        keep = Path(result.output) if result.status == "ok" and result.output else None
        candidates = set()
        if result.source in earlier:
            candidates.add(earlier[result.source])
        own = outputs.get(result.source)
        if result.sha256 and own is not None:
            for stem in {own.stem, Path(result.source).stem}:
                for suffix in _COPY_SUFFIXES:
                    copy = target / f"{stem}{suffix}"
                    if copy.is_file() and copy.stat().st_size == result.bytes and sha256_file(copy) == result.sha256:
                        candidates.add(copy)
        for path in sorted(candidates):
            if path != keep and path.parent == target and path.is_file():
                path.unlink()
                removed.append(path)
    return removed


def settings_key(settings: PrepSettings) -> dict[str, Any]:
    """The settings as stored in prep.json: other settings make every output stale."""
    return json.loads(json.dumps(asdict(settings)))


def _from_entry(entry: dict[str, Any]) -> PrepResult:
    fields = dict(entry)
    fields["dhash"] = int(entry["dhash"], 16) if entry.get("dhash") else None
    for key in ("source_size", "output_size"):
        fields[key] = tuple(entry[key]) if entry.get(key) else None
    return PrepResult(**fields)


DUPLICATE_REASONS = ("exact duplicate of ", "near-duplicate of ")


def is_duplicate(entry: dict[str, Any]) -> bool:
    """Rejected as a duplicate: decided again on every prep, since it depends on the other sources (the
    photo it duplicated may be gone)."""
    return entry.get("reason", "").startswith(DUPLICATE_REASONS)


def _dedupe(results: list[PrepResult], near_distance: int) -> None:
    """Exact duplicates (same bytes): the first by path stays. Near-duplicates (difference hashes
    within `near_distance` bits): the larger image stays, of two of one size the larger file (less compressed)."""
    first_by_hash: dict[str, PrepResult] = {}
    for result in results:
        if result.status != "ok":
            continue
        first = first_by_hash.setdefault(result.sha256, result)
        if first is not result:
            reject(result, f"exact duplicate of {Path(first.source).name}")
    if not near_distance:
        return
    alive = [r for r in results if r.status == "ok" and r.dhash is not None]
    for i, a in enumerate(alive):
        if a.status != "ok":
            continue
        for b in alive[i + 1 :]:
            if b.status == "ok" and hamming(a.dhash, b.dhash) <= near_distance:  # type: ignore[arg-type]
                loser, winner = (b, a) if (a.pixels, a.bytes) >= (b.pixels, b.bytes) else (a, b)
                reject(
                    loser,
                    f"near-duplicate of {Path(winner.source).name} (difference hash within "
                    f"{hamming(a.dhash, b.dhash)} bits; the larger is kept)",
                )  # type: ignore[arg-type]
                if loser is a:
                    break


# ---------------------------------------------------------------------------------------------- a project


def project_settings(loaded: LoadedSpec, overrides: dict[str, Any]) -> tuple[PrepSettings, int]:
    """The spec's [prep] (with CLI overrides) and its derived resolution and buckets → settings, and
    the near-duplicate distance."""
    prep = loaded.spec.prep.model_dump() | {k: v for k, v in overrides.items() if v is not None}
    size = loaded.settings.resolution
    buckets = loaded.settings.bucket
    aspect = buckets.max_reso / buckets.min_reso if buckets.enable_bucket and buckets.min_reso else 4.0
    mode = prep.get("mode") or ("bucket" if buckets.enable_bucket else "crop")  # the size sd-scripts trains at
    settings = PrepSettings(
        mode=mode,
        size=size,
        out_format=prep.get("format") or "png",
        quality=prep.get("quality") or 95,
        focus=prep.get("focus") or "center",
        background=color(prep.get("background"), (255, 255, 255)),
        pad_color=color(prep.get("pad_color"), (0, 0, 0)),
        min_size=prep["min_size"] if prep.get("min_size") is not None else min(size) // 2,
        max_aspect=max(aspect, 1.0),
        buckets=buckets if mode == "bucket" else None,
        engine=prep.get("engine") or "auto",
    )
    if settings.engine == "vips" and vips() is None:
        raise KohyaWrapError(
            '[prep] engine = "vips": pyvips (libvips) is not installed or cannot load',
            'pip install pyvips pyvips-binary, or set engine = "auto"',
        )
    return settings, loaded.settings.near_duplicate_distance


def read_manifest(root: Path) -> dict[str, Any]:
    try:
        return json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_manifest(root: Path, manifest: dict[str, Any], concept: ConceptPrep, settings: PrepSettings) -> None:
    """Record one prepared concept in `manifest` (as read by read_manifest) and write it atomically,
    so an interruption later keeps what was already prepared."""
    manifest.setdefault("concepts", {})[concept.label] = {
        "source": str(concept.source),
        "target": str(concept.target),
        "settings": settings_key(settings),
        "images": [r.as_dict() for r in concept.results],
    }
    write_text_atomic(root / MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")


@dataclass(frozen=True)
class PrepOptions:
    """`kohya-wrap prep`'s options: a concept, another source folder, and [prep] overrides."""

    concept: str | None = None
    source: Path | None = None
    mode: str | None = None
    format: str | None = None
    focus: str | None = None
    engine: str | None = None
    workers: int | None = None


def prep_project(loaded: LoadedSpec, options: PrepOptions, progress: Progress = no_progress) -> list[ConceptPrep]:
    """Prepare the chosen concepts (all by default), each recorded in prep.json as soon as it is done.
    `progress(label, total)` gives a context manager whose `advance()` is called per image."""
    layout = loaded.layout
    concepts = loaded.settings.select_concepts(options.concept, layout.spec_file)
    if options.source is not None and len(concepts) > 1:
        raise KohyaWrapError("--source: the project has several concepts", "say which one with --concept")
    settings, distance = project_settings(
        loaded, {"mode": options.mode, "format": options.format, "focus": options.focus, "engine": options.engine}
    )
    reports = []
    with dataset_lock(layout.root, "prep"):
        manifest = read_manifest(layout.root)
        for item in concepts:
            concept = item.concept
            given = options.source.expanduser().absolute() if options.source is not None else None  # from the cwd
            folder = given if given is not None else Path(concept.source).expanduser() if concept.source else None
            if folder is None:
                raise KohyaWrapError(
                    f"{layout.spec_file.name}: concept {concept.label!r} has no source folder",
                    f'set source = "…" on it, or pass --concept {concept.label} --source FOLDER',
                )
            folder = folder if folder.is_absolute() else layout.root / folder
            if not folder.is_dir():
                raise KohyaWrapError(
                    f"{layout.spec_file.name}: concept {concept.label!r}: source {folder} is not a folder",
                    "fix source, or pass --source",
                )
            if folder.resolve() == item.folder.resolve():
                raise KohyaWrapError(
                    f"concept {concept.label!r}: the source is the training folder itself",
                    "keep originals in a folder of their own and point source at it",
                )
            previous = manifest.get("concepts", {}).get(concept.label, {})
            started = time.monotonic()
            folder = folder.absolute()
            sources = list_sources(folder)
            with progress(concept.label, len(sources)) as bar:
                report = prep_concept(
                    concept.label,
                    folder,
                    item.folder,
                    settings,
                    previous,
                    distance,
                    options.workers or worker_count(len(sources)),
                    on_done=bar.advance,
                    sources=sources,
                )
            report.seconds = time.monotonic() - started
            reports.append(report)
            write_manifest(layout.root, manifest, report, settings)
            if given is not None and (not concept.source or Path(concept.source).expanduser() != folder):
                report.source_saved = set_concept_source(layout.spec_file, item.label, str(folder))
    return reports
