"""The sd-scripts checkout as a git repository: clone or fetch, a sparse checkout that leaves out paths a
mirror lacks, refs resolved to commits, local changes, and the sources of another ref read without
touching the work tree. gitpython does the git work (imported where used: it is slow to import); the one
plain `git status` goes through launch.process like every other child."""

from __future__ import annotations

import re
import shlex
import tarfile
from pathlib import Path

from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.launch.process import run
from kohya_wrap.sdscripts.vendor.layout import Vendor
from kohya_wrap.sdscripts.vendor.phases import PhaseLog

MISSING_BLOB = re.compile(r"unable to read sha1 file of (.+?) \(([0-9a-f]{7,64})\)")


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

    if vendor.installed:
        repo = git.Repo(vendor.checkout)
        remotes = [r.name for r in repo.remotes]
        origin = repo.remotes.origin if "origin" in remotes else repo.create_remote("origin", source)
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
    raise KohyaWrapError(
        f"'{ref}' is not a tag, branch or commit of the source",
        "list its tags with `git ls-remote --tags SOURCE` (SOURCE: the --source, or the lock's)",
    )


def is_excluded(path: str, exclude: tuple[str, ...]) -> bool:
    return any(path == p.rstrip("/") or path.startswith(p.rstrip("/") + "/") for p in exclude)


def dirty_files(checkout: Path, ignore: tuple[str, ...] = ()) -> list[str]:
    """Changed tracked files (stdout of git status only: sparse-excluded blobs make git warn on stderr);
    paths under `ignore` (being excluded from the checkout anyway) are not counted."""
    result = run(["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no"])
    paths = [line[3:] for line in result.stdout.splitlines() if line.strip()]
    return [p for p in paths if not is_excluded(p, ignore)]


def never_checked_out(checkout: Path) -> bool:
    """A clone whose files were never checked out (an install that stopped between `git clone
    --no-checkout` and the checkout: a ref that does not exist, Ctrl-C): its index is empty, so git lists
    every file as deleted, yet nothing in it can be a change of the user's."""
    result = run(["git", "-C", str(checkout), "ls-files"])
    return result.returncode == 0 and not result.stdout.strip()


def describe(checkout: Path) -> str:
    """The nearest tag (and the commits since), else the short commit; empty where git cannot say."""
    return run(["git", "-C", str(checkout), "describe", "--tags", "--always"]).stdout.strip()


def checkout_commit(vendor: Vendor, commit: str, exclude: tuple[str, ...], log: PhaseLog) -> str:
    repo = open_repo(vendor.checkout)
    _set_sparse(repo, exclude)
    status, stdout, stderr = repo.git.checkout(
        "--force", "--detach", commit, with_extended_output=True, with_exceptions=False
    )
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
        last = stderr.strip().splitlines()[-1] if stderr.strip() else status
        raise KohyaWrapError(f"git checkout {commit[:12]} failed: {last}", f"see {log.path}")
    repo.git.read_tree("-mu", "HEAD")  # apply changed exclusions to an existing work tree
    head = repo.head.commit.hexsha
    if head != commit:
        raise KohyaWrapError(f"the checkout is at {head[:12]}, not {commit[:12]}", f"see {log.path}")
    deleted = dirty_files(vendor.checkout)
    if deleted:
        raise KohyaWrapError(
            f"after checkout, {deleted[0]} differs from the commit",
            f"leave it out with --exclude {shlex.quote(deleted[0])}, or see {log.path}",
        )
    return f"at {commit[:12]}"


def archive_tree(vendor: Vendor, ref: str, target: Path) -> str:
    """The Python sources of another ref, for reading its options without touching the checkout."""
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
