"""Issue 14, captions and tag edits: nothing lost, nothing hung. Two edits at once never lose one; an edit
never overwrites a caption another program changed after it was read; a user's --regex cannot hang;
a caption extension that is an image extension, and a token with a comma, are refused; `tags undo`
after an edit killed by SIGKILL recognises the files it never reached and removes its temporary file;
a full disk during an edit ends in one line that names `kohya-wrap tags undo`. Every case checks the
exit code, the message, and every caption's bytes (hashes)."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDER = ("image", "10_mytoken woman")
BUSY = "another kohya-wrap command is changing this project's images or captions"


@functools.cache
def tiny_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 90, 160)).save(buffer, "PNG")
    return buffer.getvalue()


def project(root: Path, base: Path, count: int, caption=lambda n: f"mytoken, 1girl, photo {n}", extra: str = ""):
    folder = root.joinpath(*FOLDER)
    folder.mkdir(parents=True)
    (root / "kohya-wrap.toml").write_text(
        f'name = "t"\n[model]\nbase = "{base.as_posix()}"\n[[concepts]]\ntoken = "mytoken"\nclass = "woman"\n'
        f'repeats = 10\n[dataset]\nresolution = 512\ncaption_extension = ".txt"\n[training]\nmax_train_epochs = 1\n'
        + extra,
        encoding="utf-8",
    )
    for n in range(count):
        (folder / f"img{n:05d}.png").write_bytes(tiny_png())
        text = caption(n)
        if text is not None:
            (folder / f"img{n:05d}.txt").write_bytes(text if isinstance(text, bytes) else text.encode())
    return root


def hashes(root: Path) -> dict[str, str]:
    """Every file of the project but kohya-wrap's own records, by SHA-256."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".kohya-wrap" not in p.relative_to(root).parts
    }


def temporaries(root: Path) -> list[str]:
    return sorted(p.name for p in root.joinpath(*FOLDER).iterdir() if p.name.endswith(".tmp"))


def snapshots(root: Path) -> list[str]:
    folder = root / ".kohya-wrap" / "caption-history"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def kohya_wrap(*args, **kwargs) -> subprocess.Popen:
    """`kohya-wrap ARGS` as a process of its own, running this checkout's code."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "kohya_wrap", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,
    )


# ---------------------------------------------------------------------------------------------- two edits at once


def test_two_tag_adds_at_once_never_lose_an_edit(tmp_path, base_model, cli):
    root = project(tmp_path / "p", base_model, 150)
    first, second = kohya_wrap("tags", "add", root, "alpha"), kohya_wrap("tags", "add", root, "beta")
    results = {tag: (p, *p.communicate(timeout=120)) for tag, p in (("alpha", first), ("beta", second))}
    done = [tag for tag, (p, _, _) in results.items() if p.returncode == 0]
    assert done, results
    for p, _, err in results.values():
        assert p.returncode in (0, 2), err
        if p.returncode == 2:  # refused at once, naming the other one
            assert BUSY in err and "pid " in err and "Traceback" not in err
    captions = [p.read_text(encoding="utf-8") for p in root.joinpath(*FOLDER).glob("*.txt")]
    for tag in done:  # every edit that said it was done is in every caption
        assert all(c.split(", ").count(tag) == 1 for c in captions), tag
    for tag in set(results) - set(done):
        assert cli("tags", "add", root, tag).code == 0
    assert all(
        text.endswith(("alpha, beta", "beta, alpha"))
        for text in (p.read_text(encoding="utf-8") for p in root.joinpath(*FOLDER).glob("*.txt"))
    )


def test_an_edit_leaves_a_caption_another_program_changed_after_it_was_read(tmp_path, base_model, cli, monkeypatch):
    from kohya_wrap.tags import edit

    root = project(tmp_path / "p", base_model, 5)
    folder = root.joinpath(*FOLDER)
    real, saves = edit.apply_changes, []

    def editor_saves_meanwhile(*args, **kwargs):  # between reading the captions and rewriting them
        saves.append(f"saved by an editor, time {len(saves) + 1}".encode())
        (folder / "img00001.txt").write_bytes(saves[-1])
        return real(*args, **kwargs)

    monkeypatch.setattr(edit, "apply_changes", editor_saves_meanwhile)
    result = cli("tags", "add", root, "zzz", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["changed_meanwhile"] == ["image/10_mytoken woman/img00001.txt"] and data["files_changed"] == 4
    assert (folder / "img00001.txt").read_bytes() == saves[0]
    assert all((folder / f"img{n:05d}.txt").read_text().endswith(", zzz") for n in (0, 2, 3, 4))
    text = cli("tags", "add", root, "yyy")  # the warning the user sees
    monkeypatch.setattr(edit, "apply_changes", real)
    assert "1 caption file(s) changed by another program after they were read, left as they are" in text.out
    assert "img00001.txt" in text.out and "4 file(s) changed" in text.out
    for _ in range(2):
        assert cli("tags", "undo", root).code == 0
    assert (folder / "img00001.txt").read_bytes() == saves[1]  # undo never overwrites it
    assert (folder / "img00000.txt").read_bytes() == b"mytoken, 1girl, photo 0"


HOLD_THE_LOCK_WITHOUT_A_RECORD = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1], timeout=0, thread_local=False)
lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_the_dataset_lock_of_a_killed_holder_is_free_and_its_record_is_not_shown(tmp_path, base_model, cli):
    from kohya_wrap.fsutil import dataset_lock

    root = project(tmp_path / "p", base_model, 3)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time\nfrom pathlib import Path\nfrom kohya_wrap.fsutil import dataset_lock\n"
            "with dataset_lock(Path(sys.argv[1]), 'prep'):\n    print('held', flush=True)\n    time.sleep(60)\n",
            str(root),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    refused = cli("tags", "add", root, "zzz")
    assert refused.code == 2 and BUSY in refused.err and f"pid {holder.pid}" in refused.err
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    record = root / ".kohya-wrap" / "dataset.lock.owner"
    assert record.read_text().startswith(f"pid {holder.pid}:")  # SIGKILL left its record behind…
    added = cli("tags", "add", root, "zzz")  # …but the OS freed its lock: no stale lock
    assert added.code == 0, added.err
    with dataset_lock(root, "prep"):
        pass

    # A holder that has not written its record yet, while a killed one's record is still there: the
    # message must not send the user after a process that is gone.
    record.write_text(f"pid {holder.pid}: kohya-wrap prep\n", encoding="utf-8")
    quiet = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK_WITHOUT_A_RECORD, str(root / ".kohya-wrap" / "dataset.lock")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert quiet.stdout is not None and quiet.stdout.readline().strip() == "held"
        busy = cli("tags", "add", root, "yyy")
        assert busy.code == 2 and BUSY in busy.err and f"pid {holder.pid}" not in busy.err, busy.err
    finally:
        quiet.kill()
        quiet.wait()


# ---------------------------------------------------------------------------------------------- --regex


@pytest.mark.parametrize(
    "pattern, code, said",
    [
        ("(a+)+$", 2, "matching took over 1 s on the tag 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!'"),
        ("(a|aa)+$", 2, "matching took over 1 s on the tag 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!'"),
        ("(a|a)*$", 2, "the pattern backtracks without end"),
        ("a+!", 0, "3 file(s) changed"),  # a sane pattern on the same tag answers at once
    ],
)
def test_a_regex_that_backtracks_without_end_is_bounded(tmp_path, base_model, pattern, code, said):
    root = project(tmp_path / "p", base_model, 3, caption=lambda n: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!, 1girl")
    before = hashes(root)
    start = time.monotonic()
    process = kohya_wrap("tags", "remove", root, "--regex", pattern)
    try:
        out, err = process.communicate(timeout=60)  # today's code: hours
    finally:
        process.kill()
    took = time.monotonic() - start
    assert process.returncode == code, err
    assert said in (out if code == 0 else err) and "Traceback" not in err
    assert took < 15, took
    if code:
        assert hashes(root) == before and snapshots(root) == []
        assert "nothing was changed" in err and "write it without nested or overlapping repeats" in err
    else:
        assert all(p.read_bytes() == b"1girl" for p in root.joinpath(*FOLDER).glob("*.txt"))


def test_a_regex_is_bounded_in_total_and_off_the_main_thread_still_matches(monkeypatch):
    from kohya_wrap.tags import pattern

    slow = pattern.TagPattern("(a|aa)+$")
    monkeypatch.setattr(pattern, "REGEX_TOTAL_SECONDS", 0.3)
    with pytest.raises(Exception, match=r"matching took over 0.3 s in all"):
        for n in range(30, 40):  # each tag under the per-tag second, all of them over the total
            slow.fullmatch("a" * n + "!")
    found = []
    worker = threading.Thread(target=lambda: found.append(pattern.TagPattern(r"(\w+) eyes").fullmatch("blue eyes")))
    worker.start()
    worker.join()
    assert found[0] is not None and found[0].group(1) == "blue"
    import signal as signals

    assert signals.getsignal(signals.SIGALRM) == signals.SIG_DFL  # the timer's handler never stays behind


def test_regex_tags_still_match_and_replace(tmp_path, base_model, cli):
    root = project(tmp_path / "p", base_model, 2, caption=lambda n: "1girl, long hair, blue eyes, short hair")
    assert cli("tags", "replace", root, "--regex", r"(?P<c>\w+) eyes", r"\g<c>_eyes").code == 0
    assert cli("tags", "remove", root, "--regex", r".* hair").code == 0
    assert root.joinpath(*FOLDER, "img00000.txt").read_bytes() == b"1girl, blue_eyes"
    bad = cli("tags", "replace", root, "--regex", r"(\w+)_eyes", r"\3")
    assert bad.code == 2 and "invalid group reference" in bad.err and "Traceback" not in bad.err


# ---------------------------------------------------------------------------------------------- spec values


@pytest.mark.parametrize(
    "dataset_value, concept_value, said",
    [
        (".jpg", None, "dataset.caption_extension: '.jpg' is an image extension"),
        (".PNG", None, "dataset.caption_extension: '.PNG' is an image extension"),
        (".tags.webp", None, "is an image extension"),
        ("txt", None, "dataset.caption_extension: 'txt' is not a file extension"),
        (".txt", ".jpeg", "concepts[0].caption_extension: '.jpeg' is an image extension"),
        (".txt", "png", "concepts[0].caption_extension: 'png' is not a file extension"),
        (".npz", None, "dataset.caption_extension: '.npz' is the extension of sd-scripts' latent cache files"),
    ],
)
def test_a_caption_extension_that_names_images_is_refused(
    tmp_path, base_model, cli, dataset_value, concept_value, said
):
    root = project(tmp_path / "p", base_model, 3, caption=lambda n: None)
    spec = root / "kohya-wrap.toml"
    text = spec.read_text().replace('caption_extension = ".txt"', f'caption_extension = "{dataset_value}"')
    if concept_value is not None:
        text = text.replace("repeats = 10\n", f'repeats = 10\ncaption_extension = "{concept_value}"\n')
    spec.write_text(text)
    before = hashes(root)
    for args in [("check", root), ("tags", "add", root, "zzz", "--create"), ("lint", root)]:
        result = cli(*args)
        assert result.code == 2, (args, result.out)
        assert said in result.err and "Traceback" not in result.err, (args, result.err)
        assert "UTF-8" not in result.out + result.err  # no advice to re-save a photo as text
    assert hashes(root) == before  # no text file named *.jpg written among the photos


def test_the_kohya_ss_importer_reports_an_image_caption_extension():
    from kohya_wrap.interop.kohya_ss import spec_from_kohya_ss

    for value in (".jpg", ".WEBP", "txt"):
        result = spec_from_kohya_ss({"caption_extension": value})
        assert "caption_extension" not in result.spec.get("dataset", {}), value
        (item,) = [u for u in result.unmapped if u.key == "caption_extension"]
        assert item.value == value
        assert ("is an image extension" if value != "txt" else "is not a file extension") in item.reason
    assert spec_from_kohya_ss({"caption_extension": ".txt"}).spec["dataset"]["caption_extension"] == ".txt"
    assert spec_from_kohya_ss({"caption_extension": ""}).spec["dataset"]["caption_extension"] == ".caption"


def test_a_token_with_a_comma_is_refused(tmp_path, base_model, cli):
    photos = tmp_path / "photos"
    photos.mkdir()
    from PIL import Image

    Image.new("RGB", (600, 600), (200, 30, 40)).save(photos / "a.jpg")
    made = cli(
        "init", tmp_path / "new", "--token", "a, b", "--class", "woman", "--images", photos, "--base-model", base_model
    )
    assert made.code == 2 and "Traceback" not in made.err
    assert "concepts[0].token: 'a, b' contains a comma, which separates caption tags" in made.err
    assert not (tmp_path / "new" / "kohya-wrap.toml").exists() and not (tmp_path / "new" / "image").exists()

    root = project(tmp_path / "p", base_model, 2)
    spec = root / "kohya-wrap.toml"
    spec.write_text(spec.read_text().replace('token = "mytoken"', 'token = "a,b"'))
    for args in [("check", root), ("tags", "trigger", root, "a")]:
        result = cli(*args)
        assert result.code == 2 and "'a,b' contains a comma" in result.err, (args, result.err)
    trigger = cli("tags", "trigger", project(tmp_path / "q", base_model, 1), "a, b")
    assert trigger.code == 2 and "contains a comma, which separates tags" in trigger.err

    # the class word too: an image without a caption file is captioned "<token> <class>" by sd-scripts
    spec.write_text(spec.read_text().replace('token = "a,b"', 'token = "mytoken"').replace("woman", "woman, photo"))
    klass = cli("check", root)
    assert klass.code == 2 and "concepts[0].class: 'woman, photo' contains a comma" in klass.err, klass.err


# ---------------------------------------------------------------------------------------------- SIGKILL, full disk


PAUSE_MID_EDIT = r"""
import os, sys, tempfile, time
from kohya_wrap.cli import main
from kohya_wrap.tags import history

real, after, count = history.write_bytes_atomic, int(sys.argv[1]), 0

def pausing(path, data):
    global count
    count += 1
    if count > after:  # this file's rewrite is half done: its temporary file written, not yet renamed
        fd, _ = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.write(fd, data[: len(data) // 2])
        print("paused", flush=True)
        time.sleep(300)
    real(path, data)

history.write_bytes_atomic = pausing
main(sys.argv[2:])
"""


@pytest.mark.parametrize("count", [200, pytest.param(2000, marks=pytest.mark.slow)])
def test_undo_after_an_edit_killed_mid_way_restores_everything(tmp_path, base_model, cli, count):
    root = project(tmp_path / "p", base_model, count)
    before = hashes(root)
    stop_at = count // 3
    edit = subprocess.Popen(
        [sys.executable, "-c", PAUSE_MID_EDIT, str(stop_at), "tags", "add", str(root), "white background"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    watchdog = threading.Timer(240, edit.kill)
    watchdog.start()
    try:
        assert edit.stdout is not None and edit.stdout.readline().strip() == "paused", edit.stderr
        os.kill(edit.pid, signal.SIGKILL)
        edit.wait()
    finally:
        watchdog.cancel()
    assert edit.returncode == -signal.SIGKILL
    now = hashes(root)
    assert sum(now[k] != before[k] for k in before) == stop_at and len(temporaries(root)) == 1

    undone = cli("tags", "undo", root)
    assert undone.code == 0, undone.err
    assert f"{stop_at} file(s) restored" in undone.out
    assert f"{count - stop_at} file(s) the edit had not rewritten yet" in undone.out
    assert "edited since" not in undone.out and "removed 1 temporary file(s)" in undone.out
    assert hashes(root) == before and temporaries(root) == [] and snapshots(root) == []


@pytest.mark.parametrize("count", [400, pytest.param(3000, marks=pytest.mark.slow)])
def test_undo_after_a_real_sigkill_mid_edit_restores_the_bytes(tmp_path, base_model, cli, count):
    """No hook in the edit: a plain `tags add` on many captions, SIGKILLed once it is rewriting them."""
    root = project(tmp_path / "p", base_model, count)
    before = hashes(root)
    watched = root.joinpath(*FOLDER, "img00005.txt")
    edit = kohya_wrap("tags", "add", root, "white background")
    deadline = time.monotonic() + 120
    while b"white background" not in watched.read_bytes() and edit.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    edit.kill()
    edit.communicate()
    now = hashes(root)
    changed = sum(now[k] != v for k, v in before.items())
    assert 5 < changed, changed  # killed while rewriting, not before

    undone = cli("tags", "undo", root)
    assert undone.code == 0, undone.err
    assert f"{changed} file(s) restored" in undone.out and "edited since" not in undone.out
    if changed < count:
        assert f"{count - changed} file(s) the edit had not rewritten yet" in undone.out
    assert hashes(root) == before and temporaries(root) == [] and snapshots(root) == []


def _mount_tmpfs(where: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")


def _fill(disk: Path, leave_pages: int) -> Path:
    """Fill the file system, then free `leave_pages` pages of 4 KiB."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - 4096 * leave_pages))
    return filler


@pytest.mark.parametrize("leave_pages, stage", [(100 + 8 + 27, "rewrite"), (3, "snapshot")])
def test_a_full_disk_during_an_edit_says_what_undo_does(tmp_path, base_model, cli, leave_pages, stage):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "2m")
    try:
        # 100 captions of one page each that the edit makes two pages long: every rewrite takes a page
        root = project(disk / "p", base_model, 100, caption=lambda n: b"mytoken, " + b"x" * 4085)
        before = hashes(root)
        assert cli("tags", "add", root, "zzz", "--dry-run").code == 0
        filler = _fill(disk, leave_pages)
        result = cli("tags", "add", root, "zzz")
        assert result.code == 2 and "Traceback" not in result.err and "internal error" not in result.err
        assert len(result.err.strip().splitlines()) == 1, result.err
        assert "No space left on device" in result.err
        rewritten = sum(b"zzz" in p.read_bytes() for p in root.joinpath(*FOLDER).glob("*.txt"))
        if stage == "rewrite":
            assert 0 < rewritten < 100, rewritten
            assert f"the edit stopped after rewriting {rewritten} of 100 caption file(s)" in result.err
            assert "free some space there, then `kohya-wrap tags undo " in result.err and str(root) in result.err
            assert f"img{rewritten:05d}.txt: No space left on device" in result.err
        else:
            assert rewritten == 0 and "no caption was changed" in result.err and "run the edit again" in result.err
            assert hashes(root) == before and snapshots(root) == []  # the incomplete snapshot is gone
        assert temporaries(root) == []
        filler.unlink()
        if stage == "rewrite":
            undone = cli("tags", "undo", root)
            assert undone.code == 0, undone.err
            assert f"{rewritten} file(s) restored" in undone.out and "edited since" not in undone.out
        assert hashes(root) == before
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
