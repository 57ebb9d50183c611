"""The `kohya-wrap vendor` commands' work, put together from the lock, the git checkout and the venv:
install (clone, check out the pin, build the venv, read the options), upgrade (move to another ref and
reinstall only what changed), status, and the options of any ref without touching the checkout."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.fsutil import write_text_atomic
from kohya_wrap.sdscripts.families import scripts_without_family
from kohya_wrap.sdscripts.schema import OptionSchema, live_schema, parse_schema, run_introspection, schema_cache_dir
from kohya_wrap.sdscripts.vendor.compat import Known, known_constraints, retry_constraint
from kohya_wrap.sdscripts.vendor.layout import Vendor, write_state
from kohya_wrap.sdscripts.vendor.lock import DEFAULT_SOURCE, SHIPPED_LOCK, Lock, shipped_lock
from kohya_wrap.sdscripts.vendor.phases import PhaseFailed, PhaseLog, new_log
from kohya_wrap.sdscripts.vendor.repo import (
    archive_tree,
    checkout_commit,
    describe,
    dirty_files,
    fetch_or_clone,
    never_checked_out,
    open_repo,
    resolve_commit,
    resolve_or_fetch,
)
from kohya_wrap.sdscripts.vendor.venv import (
    DEFAULT_TORCH,
    create_venv,
    file_sha256,
    install_requirements,
    install_torch,
    torch_info,
)

# Windows-only DLLs (several MB each, absent from some mirrors): never needed elsewhere.
PLATFORM_EXCLUDES: tuple[str, ...] = () if sys.platform == "win32" else ("bitsandbytes_windows/",)


def refuse_local_changes(vendor: Vendor, exclude: tuple[str, ...], force: bool) -> None:
    if never_checked_out(vendor.checkout):
        return  # an install that stopped before its checkout: nothing of the user's to keep
    changed = dirty_files(vendor.checkout, ignore=exclude)
    if changed and not force:
        raise KohyaWrapError(
            f"{vendor.checkout} has local changes ({', '.join(changed[:3])})",
            "commit or discard them, or pass --force to overwrite them",
        )


def option_count(schema: OptionSchema) -> str:
    """What the "read options" phase reports: the options read, and the scripts no family names yet."""
    count = f"{sum(len(o) for o in schema.scripts.values())} options in {len(schema.scripts)} scripts"
    untabled = scripts_without_family(schema.scripts)
    if untabled:
        count += f"; not yet a model.family in kohya-wrap: {', '.join(untabled)}"
    return count


def release_constraints(vendor: Vendor, recorded: tuple[str, ...] = ()) -> list[Known]:
    """kohya-wrap's constraints for the checked-out release: the table's for its requirements.txt, and
    those a lock recorded for this very commit (e.g. found by a retry on another machine)."""
    known = known_constraints(vendor.checkout / "requirements.txt")
    have = {k.constraint for k in known}
    return [*known, *(Known(c, "recorded in the lock for this commit") for c in recorded if c not in have)]


def read_options(vendor: Vendor, torch: str, user: tuple[str, ...], compat: list[Known], log: PhaseLog) -> str:
    """The options phase. Where the probe fails with a known signature (a package built against NumPy 1
    under today's NumPy 2), the requirements are installed once more with the matching constraint (added
    to `compat`, so it goes into the lock) and the options read again."""
    try:
        return option_count(live_schema(vendor.sd_scripts()))
    except KohyaWrapError as exc:
        extra = retry_constraint(exc.message, (*user, *(k.constraint for k in compat)))
        if extra is None:
            raise
        log.write(f"the options probe failed: {exc.message}")
        compat.append(extra)
        log.note(
            f"read options: {extra.reason}; installing the requirements again with {extra.constraint}",
            then=f"install requirements with {extra.constraint}, read options",
        )
        install_requirements(vendor, torch, user, log, tuple(compat))
    return f"{option_count(live_schema(vendor.sd_scripts()))}; {extra.constraint} pinned and kept in the lock"


def normalise_excludes(exclude: tuple[str, ...], previous: tuple[str, ...] = ()) -> tuple[str, ...]:
    merged = [*PLATFORM_EXCLUDES, *previous, *exclude]
    return tuple(dict.fromkeys(p.strip().lstrip("/") for p in merged if p.strip()))


@dataclass(frozen=True)
class InstallOptions:
    ref: str | None = None
    source: str | None = None
    exclude: tuple[str, ...] = ()
    torch: str = DEFAULT_TORCH
    torch_index_url: str | None = None
    python: str = sys.executable
    force: bool = False
    constraints: tuple[str, ...] | None = None  # None: the lock's (else those the venv was installed with)


def install(vendor: Vendor, options: InstallOptions, report: Callable[[str], None]) -> Lock:
    """Clone or fetch, check out the pinned (or given) ref, build the venv, read the options; then write
    the vendor dir's own lock (the pin kohya-wrap ships is never rewritten)."""
    pinned = vendor.lock()
    source = options.source or (pinned.source if pinned else DEFAULT_SOURCE)
    ref = options.ref or (pinned.ref if pinned else None)
    if ref is None:
        raise KohyaWrapError("no sd-scripts version is pinned here", "pass --ref TAG, e.g. --ref v0.10.1")
    exclude = normalise_excludes(options.exclude, pinned.exclude if pinned else ())
    if vendor.installed:
        refuse_local_changes(vendor, exclude, options.force)
    user = options.constraints
    if user is None:
        user = (
            pinned.pip_constraints
            if pinned and pinned.pip_constraints
            else tuple(vendor.state().get("constraints", ()))
        )
    compat: list[Known] = []
    lock = Lock(source, ref, "", exclude, user)
    with PhaseLog(new_log(vendor, "install"), report, total=6) as log, _unfinished_clone_removed(vendor) as checked_out:
        log.phase("fetch sd-scripts", lambda: fetch_or_clone(vendor, source, log))

        def pick_commit() -> str:
            nonlocal lock
            commit = resolve_commit(open_repo(vendor.checkout), ref)
            if pinned and not options.ref and pinned.commit and commit != pinned.commit:
                raise KohyaWrapError(
                    f"{ref} resolves to {commit[:12]} in {source}, but the lock pins {pinned.commit[:12]}",
                    "the tag moved or the source differs: pass --ref to pin the new commit deliberately",
                )
            lock = replace(lock, commit=commit)
            return checkout_commit(vendor, commit, exclude, log)

        log.phase(f"check out {ref}", pick_commit)
        checked_out()
        log.phase("create venv", lambda: create_venv(vendor, options.python, log))
        log.phase("install torch", lambda: install_torch(vendor, options.torch, options.torch_index_url, log))

        def requirements() -> str:
            same_commit = pinned is not None and pinned.commit == lock.commit
            compat.extend(release_constraints(vendor, pinned.compat_constraints if same_commit else ()))
            return install_requirements(vendor, options.torch, user, log, tuple(compat))

        log.phase("install requirements", requirements)
        log.phase("read options", lambda: read_options(vendor, options.torch, user, compat, log))
    lock = replace(lock, compat_constraints=tuple(k.constraint for k in compat))
    write_text_atomic(vendor.lock_path, lock.text())
    write_state(
        vendor, commit=lock.commit, torch=options.torch, torch_index_url=options.torch_index_url, python=options.python
    )
    return lock


@contextmanager
def _unfinished_clone_removed(vendor: Vendor) -> Iterator[Callable[[], None]]:
    """A first install that fails (or is stopped) before its checkout is done removes the clone it made,
    so the next install starts afresh instead of finding a checkout without files ("local changes").
    Call the function it gives once the checkout is done: a later failure (the venv, pip) keeps it."""
    fresh = not os.path.lexists(vendor.checkout)
    done = []
    try:
        yield lambda: done.append(True)
    except BaseException:
        if fresh and not done:
            shutil.rmtree(vendor.checkout, ignore_errors=True)
        raise


@dataclass(frozen=True)
class UpgradeResult:
    old: Lock
    new: Lock
    requirements_reinstalled: bool


def upgrade(
    vendor: Vendor,
    ref: str,
    source: str | None,
    exclude: tuple[str, ...],
    force: bool,
    constraints: tuple[str, ...] | None,
    report: Callable[[str], None],
) -> UpgradeResult:
    """`constraints` None keeps the installed pins; a tuple replaces them (and reinstalls)."""
    old = vendor.lock()
    if old is None or not vendor.installed or not vendor.python.is_file():
        raise KohyaWrapError("sd-scripts is not installed here", "run `kohya-wrap vendor install` first")
    refuse_local_changes(vendor, normalise_excludes(exclude, old.exclude), force)
    state = vendor.state()
    if constraints is None:
        constraints = old.pip_constraints or tuple(state.get("constraints", ()))
    pins = constraints
    torch = state.get("torch", DEFAULT_TORCH)
    compat: list[Known] = []
    new = Lock(source or old.source, ref, "", normalise_excludes(exclude, old.exclude), pins)
    reinstalled = False
    with PhaseLog(new_log(vendor, "upgrade"), report, total=4) as log, _rollback_hint(old, ref):
        log.phase("fetch sd-scripts", lambda: fetch_or_clone(vendor, new.source, log))

        def move() -> str:
            nonlocal new
            new = replace(new, commit=resolve_commit(open_repo(vendor.checkout), ref))
            return checkout_commit(vendor, new.commit, new.exclude, log)

        log.phase(f"check out {ref}", move)

        def requirements() -> str:
            nonlocal reinstalled
            compat.extend(release_constraints(vendor, old.compat_constraints if old.commit == new.commit else ()))
            same_file = file_sha256(vendor.checkout / "requirements.txt") == state.get("requirements_sha256")
            same_pins = pins == tuple(state.get("constraints", ())) and [k.constraint for k in compat] == list(
                state.get("compat_constraints", ())
            )
            if same_file and same_pins:
                return "requirements.txt unchanged: nothing to install"
            reinstalled = True
            return install_requirements(vendor, torch, pins, log, tuple(compat))

        def options() -> str:
            nonlocal reinstalled
            before = len(compat)
            detail = read_options(vendor, torch, pins, compat, log)
            reinstalled = reinstalled or len(compat) > before
            return detail

        log.phase("update requirements", requirements)
        log.phase("read options", options)
    new = replace(new, compat_constraints=tuple(k.constraint for k in compat))
    write_text_atomic(vendor.lock_path, new.text())
    write_state(vendor, commit=new.commit)
    return UpgradeResult(old, new, reinstalled)


@contextmanager
def _rollback_hint(old: Lock, ref: str) -> Iterator[None]:
    """A failed upgrade leaves the checkout where it got to and the lock on the old version: say so."""
    try:
        yield
    except PhaseFailed as exc:
        exc.hint = (
            f"{exc.hint}\nthe lock still pins {old.ref} ({old.commit[:12]}); "
            f"`kohya-wrap vendor upgrade --ref {old.ref}` goes back, "
            f"or retry {ref} with --pip-constraint SPEC for a package the log shows it needs older"
        )
        raise


def status(vendor: Vendor, with_torch: bool = True) -> dict[str, Any]:
    """Where everything is and whether it agrees: the lock in use (the vendor dir's own, else the
    shipped pin) and the pin kohya-wrap ships, the checkout's commit and changes, the venv, torch."""
    lock = vendor.lock()
    pin = shipped_lock()
    info: dict[str, Any] = {
        "vendor_dir": str(vendor.root),
        "lock": asdict(lock) if lock else None,
        "lock_file": str(vendor.lock_path if vendor.lock_path.is_file() else SHIPPED_LOCK) if lock else None,
        "pin": asdict(pin) if pin else None,
        "matches_pin": bool(pin and pin.same_version(lock)),
        "checkout": str(vendor.checkout),
        "installed": vendor.installed,
    }
    if info["installed"]:
        repo = open_repo(vendor.checkout)
        head = repo.head.commit.hexsha
        info.update(
            commit=head,
            describe=describe(vendor.checkout),
            dirty=dirty_files(vendor.checkout),
            matches_lock=bool(lock and lock.commit == head),
            source=next((r.url for r in repo.remotes if r.name == "origin"), None),
        )
    info["python"] = str(vendor.python)
    info["python_present"] = vendor.python.is_file()
    if with_torch and info["python_present"]:
        info["torch"] = torch_info(vendor.python)
    return info


def schema_at_ref(vendor: Vendor, ref: str) -> OptionSchema:
    """The options of any ref of the vendored repository, read from its sources with the venv's Python
    (cached per commit), without touching the checkout."""
    if not vendor.python.is_file():
        raise KohyaWrapError("sd-scripts is not installed here", "run `kohya-wrap vendor install` first")
    commit = resolve_or_fetch(open_repo(vendor.checkout), ref)
    path = schema_cache_dir() / f"commit-{commit}.json"
    if not path.is_file():
        with tempfile.TemporaryDirectory(prefix="kohya-wrap-ref-") as temp:
            archive_tree(vendor, commit, Path(temp))
            run_introspection(vendor.python, Path(temp) / "tree", path)
    data = json.loads(path.read_text(encoding="utf-8"))
    return parse_schema(data, f"sd-scripts {ref} ({commit[:12]})")
