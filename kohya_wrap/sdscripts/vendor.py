"""sd-scripts under the vendor dir: a pinned git checkout (gitpython) and its own virtual environment.

Layout of the vendor dir (`paths.vendor_dir()`): `sd-scripts.lock` (source, ref, commit, excluded
paths; committed in a source checkout of kohya-wrap), `sd-scripts/` (the checkout), `venv/` (sd-scripts'
own Python: its requirements pin transformers, diffusers, accelerate … versions that must not share an
environment with kohya-wrap), `install-state.json` (what was installed into the venv) and `logs/`.

Every phase writes what it runs and prints to one log; a failing phase names itself and the log.
git and pip always get argument lists, never a shell.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from kohya_wrap.errors import ExitCode, KohyaWrapError
from kohya_wrap.fsutil import write_text_atomic
from kohya_wrap.sdscripts.locate import SdScripts, venv_python
from kohya_wrap.sdscripts.schema import OptionSchema, live_schema, parse_schema, run_introspection, schema_cache_dir
from kohya_wrap.launch.process import child_env
from kohya_wrap.paths import PACKAGE_DIR, vendor_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LOCK_NAME = "sd-scripts.lock"
DEFAULT_SOURCE = "https://github.com/kohya-ss/sd-scripts"
# PyPI's torch wheels for Linux are CUDA builds that also run on the CPU; sd-scripts imports
# torchvision without listing it, and a torchvision must match its torch exactly.
DEFAULT_TORCH = "torch==2.14.1 torchvision==0.29.1"
# Windows-only DLLs (several MB each, absent from some mirrors): never needed elsewhere.
PLATFORM_EXCLUDES: tuple[str, ...] = () if sys.platform == "win32" else ("bitsandbytes_windows/",)
MISSING_BLOB = re.compile(r"unable to read sha1 file of (.+?) \(([0-9a-f]{7,64})\)")


class PhaseFailed(KohyaWrapError):
    exit_code = ExitCode.FAILED


@dataclass(frozen=True)
class Lock:
    source: str
    ref: str
    commit: str
    exclude: tuple[str, ...] = ()

    def text(self) -> str:
        import tomli_w

        body = {"source": self.source, "ref": self.ref, "commit": self.commit}
        if self.exclude:
            body["exclude"] = list(self.exclude)
        return (
            "# The sd-scripts version kohya-wrap uses: written by `kohya-wrap vendor install/upgrade`.\n"
            "# The checkout and its venv live beside this file (git-ignored).\n" + tomli_w.dumps(body)
        )


def read_lock(path: Path) -> Lock:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return Lock(str(data["source"]), str(data["ref"]), str(data["commit"]), tuple(data.get("exclude", ())))
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise KohyaWrapError(f"{path}: not a readable sd-scripts lock ({exc})", "restore it from git, or run `kohya-wrap vendor install --ref TAG`") from None


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

    def sd_scripts(self) -> SdScripts:
        return SdScripts(self.checkout, self.python)

    def lock(self) -> Lock | None:
        """This vendor dir's lock, else the pin shipped with kohya-wrap, else none."""
        if self.lock_path.is_file():
            return read_lock(self.lock_path)
        shipped = PACKAGE_DIR / "data" / LOCK_NAME
        if shipped.is_file():
            return read_lock(shipped)
        return None

    def state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}


# ---------------------------------------------------------------------------------------------- phases


@dataclass
class PhaseLog:
    """Runs named phases, writes everything to one log file, reports progress through `report`."""

    path: Path
    report: Callable[[str], None]
    total: int
    done: int = 0
    handle: IO[str] | None = field(default=None, repr=False)

    def __enter__(self) -> "PhaseLog":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a", encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.handle is not None
        self.handle.close()

    def write(self, text: str) -> None:
        assert self.handle is not None
        self.handle.write(text if text.endswith("\n") else text + "\n")
        self.handle.flush()

    def phase(self, name: str, work: Callable[[], str | None]) -> None:
        self.done += 1
        self.report(f"[{self.done}/{self.total}] {name} …")
        self.write(f"\n==== {name} ({time.strftime('%Y-%m-%d %H:%M:%S')})")
        start = time.monotonic()
        try:
            detail = work()
        except PhaseFailed:
            raise
        except KohyaWrapError as exc:
            self.write(f"FAILED: {exc.message}")
            raise PhaseFailed(f"{name} failed: {exc.message}", exc.hint or f"the log is {self.path}") from None
        except subprocess.CalledProcessError as exc:
            raise PhaseFailed(f"{name} failed: `{shlex.join(map(str, exc.cmd))}` exited with {exc.returncode}", f"see {self.path}:\n{self.tail()}") from None
        except Exception as exc:  # git errors and the like: keep the log, name the phase
            self.write(f"FAILED: {type(exc).__name__}: {exc}")
            raise PhaseFailed(f"{name} failed: {type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}", f"the log is {self.path}") from None
        self.report(f"[{self.done}/{self.total}] {name}: {detail or 'done'} ({time.monotonic() - start:.1f} s)")

    def run(self, argv: list[str], cwd: Path | None = None) -> None:
        """A child process writing straight into the log file (no pipe to fill up)."""
        self.write("$ " + shlex.join(argv))
        assert self.handle is not None
        self.handle.flush()
        subprocess.run(argv, cwd=cwd, stdout=self.handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=True, env=_child_env())

    def tail(self, lines: int = 12) -> str:
        text = self.path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        return "\n".join("    " + line for line in text)


def _child_env() -> dict[str, str]:
    return child_env({"PIP_DISABLE_PIP_VERSION_CHECK": "1"})


def _new_log(vendor: Vendor, action: str) -> Path:
    return vendor.logs / f"{action}-{time.strftime('%Y%m%d-%H%M%S')}.log"


# ---------------------------------------------------------------------------------------------- git


def open_repo(path: Path):
    import git

    return git.Repo(path)


def sparse_patterns(exclude: tuple[str, ...]) -> str:
    lines = ["/*"] + [f"!/{p.strip('/')}" + ("/" if p.endswith("/") else "") for p in exclude]
    return "\n".join(lines) + "\n"


def _set_sparse(repo, exclude: tuple[str, ...]) -> None:
    """Sparse checkout by config and pattern file, without touching the work tree: `git sparse-checkout
    set` would first check out the current HEAD, which may hold the very blobs that are missing."""
    with repo.config_writer() as config:
        config.set_value("core", "sparseCheckout", "true")
        config.set_value("core", "sparseCheckoutCone", "false")
    info = Path(repo.git_dir) / "info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "sparse-checkout").write_text(sparse_patterns(exclude), encoding="utf-8")


def fetch_or_clone(vendor: Vendor, source: str, log: PhaseLog) -> str:
    import git

    if (vendor.checkout / ".git").exists():
        repo = git.Repo(vendor.checkout)
        origin = repo.remotes.origin if "origin" in [r.name for r in repo.remotes] else repo.create_remote("origin", source)
        if origin.url != source:
            origin.set_url(source)
        log.write(repo.git.fetch("origin", "--tags", "--force", "--prune"))
        return f"fetched {source}"
    vendor.checkout.parent.mkdir(parents=True, exist_ok=True)
    git.Repo.clone_from(source, vendor.checkout, no_checkout=True)
    return f"cloned {source}"


def resolve_or_fetch(repo, ref: str) -> str:
    """A ref's commit, fetching from the source once when the checkout does not know it yet."""
    try:
        return resolve_commit(repo, ref)
    except KohyaWrapError:
        repo.git.fetch("origin", "--tags", "--force")
        return resolve_commit(repo, ref)


def resolve_commit(repo, ref: str) -> str:
    import git

    for candidate in (ref, f"origin/{ref}"):
        try:
            return repo.commit(candidate).hexsha
        except (git.BadName, ValueError):
            continue
    raise KohyaWrapError(f"'{ref}' is not a tag, branch or commit of the source", "list tags with `git -C <vendor>/sd-scripts tag`")


def is_excluded(path: str, exclude: tuple[str, ...]) -> bool:
    return any(path == p.rstrip("/") or path.startswith(p.rstrip("/") + "/") for p in exclude)


def dirty_files(checkout: Path, ignore: tuple[str, ...] = ()) -> list[str]:
    """Changed tracked files (stdout of git status only: sparse-excluded blobs make git warn on stderr);
    paths under `ignore` (being excluded from the checkout anyway) are not counted."""
    result = subprocess.run(
        ["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True, check=False,
    )
    paths = [line[3:] for line in result.stdout.splitlines() if line.strip()]
    return [p for p in paths if not is_excluded(p, ignore)]


def checkout_commit(vendor: Vendor, commit: str, exclude: tuple[str, ...], log: PhaseLog) -> str:
    repo = open_repo(vendor.checkout)
    _set_sparse(repo, exclude)
    status, stdout, stderr = repo.git.checkout("--force", "--detach", commit, with_extended_output=True, with_exceptions=False)
    log.write(stdout + "\n" + stderr)
    missing = MISSING_BLOB.findall(stderr)
    if missing:
        path = missing[0][0]
        raise KohyaWrapError(
            f"{path} is missing from the source (the mirror lacks that file's content)"
            + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""),
            f"leave it out of the checkout: add --exclude {shlex.quote(path)}",
        )
    if status != 0:
        raise KohyaWrapError(f"git checkout {commit[:12]} failed: {stderr.strip().splitlines()[-1] if stderr.strip() else status}", f"see {log.path}")
    repo.git.read_tree("-mu", "HEAD")  # apply changed exclusions to an existing work tree
    head = repo.head.commit.hexsha
    if head != commit:
        raise KohyaWrapError(f"the checkout is at {head[:12]}, not {commit[:12]}", f"see {log.path}")
    deleted = dirty_files(vendor.checkout)
    if deleted:
        raise KohyaWrapError(f"after checkout, {deleted[0]} differs from the commit", f"leave it out with --exclude {shlex.quote(deleted[0])}, or see {log.path}")
    return f"at {commit[:12]}"


# ---------------------------------------------------------------------------------------------- venv


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


def install_requirements(vendor: Vendor, torch: str, constraints: tuple[str, ...], log: PhaseLog) -> str:
    """sd-scripts' requirements.txt, with the chosen torch held (requirements such as diffusers[torch]
    must not replace it) and the user's extra pins (e.g. numpy<2 for an older release)."""
    requirements = vendor.checkout / "requirements.txt"
    if not requirements.is_file():
        return "no requirements.txt"
    # --upgrade: an unpinned requirement (e.g. `bitsandbytes`) left over from an older release must move
    # too, or the venv keeps a version the new code cannot import; torch stays held by the constraint.
    argv = [str(vendor.python), "-m", "pip", "install", "--upgrade", "-r", "requirements.txt"]
    pins = [*torch_requirements(torch), *constraints]
    if pins:
        path = vendor.root / "constraints.txt"
        write_text_atomic(path, "\n".join(pins) + "\n")
        argv += ["-c", str(path)]
    log.run(argv, cwd=vendor.checkout)
    # recorded at once: the venv now holds these, even if a later phase fails
    write_state(vendor, requirements_sha256=file_sha256(requirements), constraints=list(constraints))
    return "requirements.txt installed" + (f" (pinned: {', '.join(constraints)})" if constraints else "")


def torch_info(python: Path) -> dict[str, Any]:
    """torch version and device as seen by sd-scripts' Python (imports torch: a few seconds)."""
    code = (
        "import json\n"
        "try:\n import torch\nexcept Exception as e:\n print(json.dumps({'error': f'{type(e).__name__}: {e}'}))\n"
        "else:\n cuda = torch.cuda.is_available()\n"
        " print(json.dumps({'torch': torch.__version__, 'cuda': cuda, 'device': torch.cuda.get_device_name(0) if cuda else 'cpu'}))\n"
    )
    try:
        result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=300, env=_child_env())
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired) as exc:
        return {"error": str(exc) or type(exc).__name__}


# ---------------------------------------------------------------------------------------------- commands


def write_state(vendor: Vendor, **values: Any) -> None:
    state = vendor.state() | values
    write_text_atomic(vendor.state_path, json.dumps(state, indent=2, sort_keys=True) + "\n")


def refuse_local_changes(vendor: Vendor, exclude: tuple[str, ...], force: bool) -> None:
    changed = dirty_files(vendor.checkout, ignore=exclude)
    if changed and not force:
        raise KohyaWrapError(f"{vendor.checkout} has local changes ({', '.join(changed[:3])})", "commit or discard them, or pass --force to overwrite them")


def option_count(schema) -> str:
    return f"{sum(len(o) for o in schema.scripts.values())} options in {len(schema.scripts)} scripts"


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
    constraints: tuple[str, ...] = ()


def install(vendor: Vendor, options: InstallOptions, report: Callable[[str], None]) -> Lock:
    """Clone or fetch, check out the pinned (or given) ref, build the venv, read the options."""
    pinned = vendor.lock()
    source = options.source or (pinned.source if pinned else DEFAULT_SOURCE)
    ref = options.ref or (pinned.ref if pinned else None)
    if ref is None:
        raise KohyaWrapError("no sd-scripts version is pinned here", "pass --ref TAG, e.g. --ref v0.10.1")
    exclude = normalise_excludes(options.exclude, pinned.exclude if pinned else ())
    if (vendor.checkout / ".git").exists():
        refuse_local_changes(vendor, exclude, options.force)
    lock = Lock(source, ref, "", exclude)
    with PhaseLog(_new_log(vendor, "install"), report, total=6) as log:
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
        log.phase("create venv", lambda: create_venv(vendor, options.python, log))
        log.phase("install torch", lambda: install_torch(vendor, options.torch, options.torch_index_url, log))
        log.phase("install requirements", lambda: install_requirements(vendor, options.torch, options.constraints, log))
        log.phase("read options", lambda: option_count(live_schema(vendor.sd_scripts())))
    write_text_atomic(vendor.lock_path, lock.text())
    write_state(vendor, commit=lock.commit, torch=options.torch, torch_index_url=options.torch_index_url, python=options.python)
    return lock


@dataclass(frozen=True)
class UpgradeResult:
    old: Lock
    new: Lock
    requirements_reinstalled: bool


def upgrade(
    vendor: Vendor, ref: str, source: str | None, exclude: tuple[str, ...], force: bool,
    constraints: tuple[str, ...] | None, report: Callable[[str], None],
) -> UpgradeResult:
    """`constraints` None keeps the installed pins; a tuple replaces them (and reinstalls)."""
    old = vendor.lock()
    if old is None or not (vendor.checkout / ".git").exists() or not vendor.python.is_file():
        raise KohyaWrapError("sd-scripts is not installed here", "run `kohya-wrap vendor install` first")
    refuse_local_changes(vendor, normalise_excludes(exclude, old.exclude), force)
    state = vendor.state()
    pins = tuple(state.get("constraints", ())) if constraints is None else constraints
    new = Lock(source or old.source, ref, "", normalise_excludes(exclude, old.exclude))
    reinstalled = False
    with PhaseLog(_new_log(vendor, "upgrade"), report, total=4) as log, _rollback_hint(old, ref):
        log.phase("fetch sd-scripts", lambda: fetch_or_clone(vendor, new.source, log))

        def move() -> str:
            nonlocal new
            new = replace(new, commit=resolve_commit(open_repo(vendor.checkout), ref))
            return checkout_commit(vendor, new.commit, new.exclude, log)

        log.phase(f"check out {ref}", move)

        def requirements() -> str:
            nonlocal reinstalled
            same_file = file_sha256(vendor.checkout / "requirements.txt") == state.get("requirements_sha256")
            if same_file and pins == tuple(state.get("constraints", ())):
                return "requirements.txt unchanged: nothing to install"
            reinstalled = True
            return install_requirements(vendor, state.get("torch", DEFAULT_TORCH), pins, log)

        log.phase("update requirements", requirements)
        log.phase("read options", lambda: option_count(live_schema(vendor.sd_scripts())))
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
            f"{exc.hint}\nthe lock still pins {old.ref} ({old.commit[:12]}); `kohya-wrap vendor upgrade --ref {old.ref}` "
            f"goes back, or retry {ref} with --pip-constraint (e.g. \"numpy<2\" for releases built against NumPy 1)"
        )
        raise


def status(vendor: Vendor, with_torch: bool = True) -> dict[str, Any]:
    lock = vendor.lock()
    info: dict[str, Any] = {
        "vendor_dir": str(vendor.root),
        "lock": asdict(lock) if lock else None,
        "checkout": str(vendor.checkout),
        "installed": (vendor.checkout / ".git").exists(),
    }
    if info["installed"]:
        repo = open_repo(vendor.checkout)
        head = repo.head.commit.hexsha
        describe = subprocess.run(["git", "-C", str(vendor.checkout), "describe", "--tags", "--always"], capture_output=True, text=True).stdout.strip()
        info.update(
            commit=head, describe=describe, dirty=dirty_files(vendor.checkout),
            matches_lock=bool(lock and lock.commit == head), source=next((r.url for r in repo.remotes if r.name == "origin"), None),
        )
    info["python"] = str(vendor.python)
    info["python_present"] = vendor.python.is_file()
    if with_torch and info["python_present"]:
        info["torch"] = torch_info(vendor.python)
    return info


def archive_tree(vendor: Vendor, ref: str, target: Path) -> str:
    """The Python sources of another ref, for reading its options without touching the checkout."""
    import tarfile

    repo = open_repo(vendor.checkout)
    commit = resolve_commit(repo, ref)
    names = repo.git.ls_tree("--name-only", commit).splitlines()
    paths = [n for n in names if n.endswith(".py") or n in ("library", "networks")]
    archive = target / "tree.tar"
    with open(archive, "wb") as handle:
        repo.archive(handle, commit, path=paths)
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):  # Python ≥ 3.12 and patched 3.10/3.11: refuse odd members
            tar.extractall(target / "tree", filter="data")
        else:
            tar.extractall(target / "tree")
    archive.unlink()
    return commit


def schema_at_ref(vendor: Vendor, ref: str) -> OptionSchema:
    """The options of any ref of the vendored repository, read from its sources with the venv's Python
    (cached per commit), without touching the checkout."""
    import tempfile

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
