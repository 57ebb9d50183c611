"""`prep`: each concept's source photos → its training folder, one consistent size, on every core.

Per concept: list the sources (recursively, hidden files and the project's own folder left out), name
the outputs deterministically and without collisions, skip sources unchanged since the last run
(prep.json), prepare the rest in a thread pool (the image work is in dataset/images.py; libvips, Pillow
and hashlib release the GIL), copy caption sidecars, reject exact and near-duplicates, and record
everything in prep.json — as it goes, every few seconds and when stopped, so an interrupted run
resumes where it stopped. Sources are never modified. A photo that cannot be read is rejected with its
reason; a training image that cannot be written (disk full, no permission) stops prep: it is the
folder's problem, never recorded against the photo.
"""

from __future__ import annotations

import errno
import os
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from kohya_wrap.dataset.dhash import hamming
from kohya_wrap.dataset.images import (
    CAPTION_SUFFIXES,
    OUTPUT_SUFFIX,
    PrepResult,
    PrepSettings,
    WriteError,
    prepare_job,
    reject,
    vips,
)
from kohya_wrap.dataset.manifest import (
    MANIFEST,
    UNREADABLE,
    from_entry,
    is_duplicate,
    is_retried,
    progress_entries,
    read_manifest,
    settings_key,
    write_manifest,
)
from kohya_wrap.dataset.names import list_sources, output_names
from kohya_wrap.errors import ExitCode, KohyaWrapError, os_error
from kohya_wrap.fsutil import copy_file_atomic, dataset_lock, sha256_file
from kohya_wrap.spec.edit import set_concept_source
from kohya_wrap.spec.load import LoadedSpec
from kohya_wrap.workers import Progress, no_progress, worker_count

# ---------------------------------------------------------------------------------------------- a concept


SAVE_EVERY = 2.0  # seconds between saves of prep.json while images are prepared (at least 10× a save's time)


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
    excluded: Path | None = None  # the project folder, inside the source: left out
    pending: int = 0  # sources still to prepare when prep stopped (Ctrl-C, a write error)

    @property
    def rejected(self) -> list[PrepResult]:
        return [r for r in self.results if r.status == "rejected"]


def color(value: str | None, default: tuple[int, int, int]) -> tuple[int, int, int]:
    return default if value is None else tuple(int(value[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


Save = Callable[[ConceptPrep, "list[dict[str, Any]]"], None]


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
    save: Save | None = None,
) -> ConceptPrep:
    """Prepare every new or changed source of one concept (`sources`: list_sources(source), if the
    caller has it already); `previous` is the concept's last manifest entry (as read_manifest cleans
    it). `save(report, entries)` records progress: every SAVE_EVERY seconds, and once more when prep
    stops (Ctrl-C, a write error), before the exception goes on."""
    report = ConceptPrep(label, source, target)
    sources = list_sources(source) if sources is None else sources
    names = output_names(source, sources, OUTPUT_SUFFIX[settings.out_format])
    same_settings = previous.get("settings") == settings_key(settings)
    earlier_images = previous.get("images", [])
    known = {e["source"]: e for e in earlier_images if not e.get("stale")} if same_settings else {}
    claimed: dict[str, int] = {}  # earlier outputs by name: two sources once shared a name (a collision)
    for entry in earlier_images:
        if entry["output"]:
            name = Path(entry["output"]).name.casefold()
            claimed[name] = claimed.get(name, 0) + 1
    jobs, results, undecided = [], [], []
    decided: dict[str, PrepResult] = {}  # this run's results, recorded as they come
    for path in sources:
        output = target / names[path]
        try:
            stat = path.stat()
        except OSError as exc:  # a dangling symbolic link, a link loop, a file gone since the listing
            results.append(reject(PrepResult(source=str(path)), unreachable(path, exc)))
            decided[str(path)] = results[-1]
            continue
        entry = known.get(str(path))
        if entry and entry["bytes"] == stat.st_size and entry["mtime_ns"] == stat.st_mtime_ns:
            if entry["status"] == "rejected" and is_duplicate(entry):
                # decided again below: the photo it duplicated may be gone
                result = from_entry(entry)
                result.status, result.reason, result.output = "ok", "", str(output)
                undecided.append(result)
                results.append(result)
                report.skipped += 1
                continue
            if (entry["status"] == "rejected" and not is_retried(entry)) or (
                entry["status"] == "ok"
                and Path(entry["output"]).name == output.name
                and claimed.get(output.name.casefold()) == 1
                and output.is_file()
            ):
                results.append(from_entry(entry))
                decided[str(path)] = results[-1]
                report.skipped += 1
                continue
        jobs.append((str(path), str(output), settings))
    report.pending = len(jobs)
    saved_at = [time.monotonic(), 0.0]  # when, and how long it took

    def checkpoint(final: bool) -> None:
        if save is None or not (final or time.monotonic() - saved_at[0] >= max(SAVE_EVERY, 10 * saved_at[1])):
            return
        started = time.monotonic()
        report.results = sorted(decided.values(), key=lambda r: r.source)
        save(report, progress_entries(decided, earlier_images, same_settings))
        saved_at[:] = [time.monotonic(), time.monotonic() - started]

    def arrived(result: PrepResult) -> None:
        """A prepared image: its captions copied beside it, then it counts as done (a caption that
        cannot be copied leaves it undone, so a resumed run prepares it again)."""
        if result.status == "ok":
            report.captions += _copy_captions(result)
            report.fresh += 1
        decided[result.source] = result
        report.pending = max(0, report.pending - 1)

    def progressed(result: PrepResult) -> None:
        arrived(result)
        checkpoint(False)
        if on_done:
            on_done(result)

    try:
        target.mkdir(parents=True, exist_ok=True)
        fresh = _run_jobs(jobs, workers, progressed, arrived)
        report.results = sorted(results + fresh, key=lambda r: Path(r.source).relative_to(source).as_posix())
        _dedupe(report.results, near_distance)
        for result in undecided:
            if result.status == "rejected":
                result.output = ""  # still a duplicate: nothing was or is written for it
        winners = [(r.source, r.output, settings) for r in undecided if r.status == "ok"]
        if winners:  # no longer a duplicate (the photo it duplicated is gone): prepare it now
            report.pending += len(winners)
            again = {r.source: r for r in _run_jobs(winners, workers, progressed, arrived)}
            report.results = [again.get(r.source, r) for r in report.results]
            report.skipped -= len(winners)
            fresh += list(again.values())
        written = {id(r) for r in fresh}
        kept = {Path(r.output).name.casefold() for r in report.results if r.status == "ok" and r.output}
        for result in report.results:
            # written (now, or by a prep stopped before it compared them), then found to be a duplicate
            if result.status == "rejected" and result.output:
                if Path(result.output).name.casefold() not in kept:
                    removed = _remove_output(Path(result.output), result.source)
                    if id(result) in written:
                        report.captions -= removed
                if id(result) in written:
                    report.fresh -= 1
                result.output = ""
        report.removed = _remove_stale_copies(
            target, report.results, previous, {str(p): target / n for p, n in names.items()}
        )
    except (KeyboardInterrupt, WriteError, OSError):
        try:
            checkpoint(True)
        except OSError:
            pass  # the disk that stopped prep may not take prep.json either: what was written stays
        raise
    listed = {str(p) for p in sources}
    report.orphans = [
        Path(e["output"])
        for e in earlier_images
        if e.get("output") and e.get("source") not in listed and Path(e["output"]).is_file()
    ]
    return report


def _run_jobs(jobs: list[tuple[str, str, PrepSettings]], workers: int, progressed, arrived) -> list[PrepResult]:
    """Prepare `jobs`, each result handed to `progressed` as it comes. When something stops the work
    (Ctrl-C, a training image that cannot be written) no new image starts, the ones in hand finish and
    are handed to `arrived` (recorded, nothing else), and the exception goes on."""
    results: list[PrepResult] = []
    if not jobs:
        return results
    # threads, not processes: libvips, Pillow (decode, resize, encode) and hashlib release the GIL for all
    # their heavy work, and threads start in no time where a spawned process pool costs ~0.15 s to start
    # and import (measured 6 % faster over 100 photos; docs/BENCHMARKS.md). A pool even for one worker:
    # the main thread only waits, so Ctrl-C always lands there (in the image work it could land inside
    # pyvips' log callback, where cffi prints and drops it, and prep went on to the end)
    pool = ThreadPoolExecutor(max(1, min(workers, len(jobs))), thread_name_prefix="prep")
    futures = [pool.submit(prepare_job, job) for job in jobs]
    handed: set[int] = set()
    try:
        for future in as_completed(futures):
            handed.add(id(future))
            results.append(future.result())
            progressed(results[-1])
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # finish the images in hand, start no more
        for future in futures:  # those finished meanwhile are real results: record them
            if id(future) not in handed and not future.cancelled() and future.exception() is None:
                try:
                    arrived(future.result())
                except OSError:
                    pass  # its caption could not be copied: left undone, prepared again next time
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def _copy_captions(result: PrepResult) -> int:
    """Copy the caption sidecars of a prepared source beside its training image."""
    copied = 0
    for suffix in CAPTION_SUFFIXES:
        caption = Path(result.source).with_suffix(suffix)
        if caption.is_file():
            copy_file_atomic(caption, Path(result.output).with_suffix(suffix))
            copied += 1
    return copied


def _remove_output(output: Path, source: str) -> int:
    """Remove prep's own training image of `source` and the captions copied beside it (only those still
    byte for byte the source's sidecar: nothing edited since is lost); the number of captions removed."""
    output.unlink(missing_ok=True)
    removed = 0
    for suffix in CAPTION_SUFFIXES:
        copy, original = output.with_suffix(suffix), Path(source).with_suffix(suffix)
        try:
            if copy.is_file() and original.is_file() and copy.read_bytes() == original.read_bytes():
                copy.unlink()
                removed += 1
        except OSError:
            continue  # unreadable: left where it is
    return removed


# a file another tool (or `init --no-prep`) copied in verbatim: these extensions, the source's own bytes
_COPY_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def _remove_stale_copies(
    target: Path, results: list[PrepResult], previous: dict[str, Any], outputs: dict[str, Path]
) -> list[Path]:
    """A source prepared again must leave one training image, not two: remove this source's earlier
    output when its name changed (another format) or it is now rejected, and any verbatim copy of the
    source under its own or its output's stem (byte for byte the source: `init --no-prep`'s copies). Only
    files recorded as prep's own outputs or identical to a source that is still there are removed, and
    never one that is a training image of this run (an earlier run's names could collide)."""
    earlier = {e["source"]: Path(e["output"]) for e in previous.get("images", []) if e.get("output")}
    kept = {Path(r.output).name.casefold() for r in results if r.status == "ok" and r.output}
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
            if path != keep and path.name.casefold() not in kept and path.parent == target and path.is_file():
                path.unlink()
                removed.append(path)
    return removed


def unreachable(path: Path, exc: OSError) -> str:
    """Why a listed source cannot even be looked at, as a rejection reason."""
    if path.is_symlink():
        if exc.errno == errno.ELOOP:
            return f"{UNREADABLE}a loop of symbolic links"
        try:
            return f"{UNREADABLE}a symbolic link to {os.readlink(path)}, which does not exist"
        except OSError:
            pass
    return f"{UNREADABLE}{exc.strerror or exc}"


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


class _Recorder:
    """prep.json for one prep: each concept recorded as it goes (prep_concept's `save`) and when done,
    and what was done so far, for the message when prep stops."""

    def __init__(self, root: Path, settings: PrepSettings) -> None:
        self.root, self.settings = root, settings
        self.manifest = read_manifest(root)
        self.done: list[ConceptPrep] = []
        self.current: ConceptPrep | None = None
        self.saved = False

    def save(self, report: ConceptPrep, entries: list[dict[str, Any]]) -> None:
        self.current, self.saved = report, False
        write_manifest(self.root, self.manifest, report.label, (report.source, report.target), self.settings, entries)
        self.saved = True

    def finish(self, report: ConceptPrep) -> None:
        self.save(report, [r.as_dict() for r in report.results])
        self.done.append(report)
        self.current = None


class PrepInterrupted(KohyaWrapError):
    """Ctrl-C during prep: what was prepared is kept and recorded; exit 130."""

    exit_code = ExitCode.INTERRUPTED


def _stopped(exc: OSError, where: str | os.PathLike[str], record: _Recorder) -> KohyaWrapError:
    """A file prep must write (or read beside its outputs) failed: one line naming it and what to do (as
    the error boundary says it: errors.os_error). What was prepared stays, recorded, so the next prep
    goes on from there."""
    error = os_error(exc, where)
    return KohyaWrapError(
        f"prep stopped: {error.message} ({_kept(record)})",
        error.hint.removesuffix(", then run the command again")
        + ", then run `kohya-wrap prep` again: it goes on where it stopped",
    )


def _interrupted(record: _Recorder) -> PrepInterrupted:
    return PrepInterrupted(f"interrupted ({_kept(record)})", "run `kohya-wrap prep` again to go on where it stopped")


def _kept(record: _Recorder) -> str:
    """What a stopped prep leaves: per concept, what it wrote and where, and whether prep.json says so."""

    def folder(report: ConceptPrep) -> str:
        try:
            return report.target.relative_to(record.root).as_posix()
        except ValueError:
            return str(report.target)

    parts = [f"{r.label}: {r.fresh} image(s) written to {folder(r)}" for r in record.done]
    current = record.current
    if current is not None:
        parts.append(
            f"{current.label}: {current.fresh} image(s) written to {folder(current)}, {current.pending} source(s) left"
        )
    if not parts:
        return "nothing was written"
    kept = "; ".join(parts) + ", kept"
    return (
        f"{kept} and recorded in {MANIFEST}"
        if record.saved
        else f"{kept} but not recorded ({MANIFEST} could not be written)"
    )


def source_folder(loaded: LoadedSpec, item, given: Path | None) -> tuple[Path, Path | None]:
    """The concept's source folder (absolute), and the project folder when it lies inside it (left out
    of the listing: prep would read its own outputs back in, and grow the training set on every run)."""
    layout = loaded.layout
    concept = item.concept
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
    real, root = folder.resolve(), layout.root.resolve()
    if real == item.folder.resolve():
        raise KohyaWrapError(
            f"concept {concept.label!r}: the source is the training folder itself",
            "keep originals in a folder of their own and point source at it",
        )
    held = [
        c.folder for c in loaded.settings.concepts if real == c.folder.resolve() or real in c.folder.resolve().parents
    ]
    if held and (real == root or root in real.parents):
        raise KohyaWrapError(
            f"concept {concept.label!r}: the source {folder} holds the project's own training folder "
            f"{held[0].relative_to(layout.root)}: prep would read its outputs back in as new photos",
            "keep originals in a folder of their own (outside image/ and reg/) and point source at it",
        )
    return folder.absolute(), root if real in root.parents else None


def prep_project(loaded: LoadedSpec, options: PrepOptions, progress: Progress = no_progress) -> list[ConceptPrep]:
    """Prepare the chosen concepts (all by default), each recorded in prep.json as it goes and when it is
    done. `progress(label, total)` gives a context manager whose `advance()` is called per image."""
    layout = loaded.layout
    concepts = loaded.settings.select_concepts(options.concept, layout.spec_file)
    if options.source is not None and len(concepts) > 1:
        raise KohyaWrapError("--source: the project has several concepts", "say which one with --concept")
    settings, distance = project_settings(
        loaded, {"mode": options.mode, "format": options.format, "focus": options.focus, "engine": options.engine}
    )
    with dataset_lock(layout.root, "prep"):
        record = _Recorder(layout.root, settings)
        for item in concepts:
            concept = item.concept
            given = options.source.expanduser().absolute() if options.source is not None else None  # from the cwd
            folder, excluded = source_folder(loaded, item, given)
            previous = record.manifest.get("concepts", {}).get(concept.label, {})
            started = time.monotonic()
            try:
                sources = list_sources(folder, excluded)
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
                        save=record.save,
                    )
                report.seconds = time.monotonic() - started
                report.excluded = excluded
                record.finish(report)
                if given is not None and (not concept.source or Path(concept.source).expanduser() != folder):
                    report.source_saved = set_concept_source(layout.spec_file, item.label, str(folder))
            except KeyboardInterrupt:
                raise _interrupted(record) from None
            except WriteError as exc:
                raise _stopped(exc.error, exc.error.filename or exc.path, record) from None
            except OSError as exc:  # a caption copied, prep.json written, an earlier copy removed
                raise _stopped(exc, exc.filename or item.folder, record) from None
    return record.done
