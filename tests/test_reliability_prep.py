"""`prep` when the disk, the folders or the inputs work against it (issue 14): a training folder it cannot
write to and a full disk stop it (exit 2, one line saying what to do) and are never recorded against a
photo; output names never collide; a source that holds the project does not read its outputs back in;
progress is saved as it goes, so Ctrl-C (exit 130, saying what was kept) and even SIGKILL lose nothing
finished; the files it writes get the umask's modes; broken links and damaged caches are handled. Every
case checks that the source photos and captions are byte for byte intact."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

from kohya_wrap.errors import ExitCode

REPO = Path(__file__).resolve().parents[1]
RES = 64
TRAINING = ("image", "2_mytoken woman")


def noise(path: Path, size: tuple[int, int], seed: int) -> Path:
    """A photo no other is a near-duplicate of (random pixels); PNG unless the suffix says otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.frombytes("RGB", size, random.Random(seed).randbytes(size[0] * size[1] * 3)).save(path)
    return path


def photos(folder: Path, names: list[str], size: tuple[int, int] = (96, 96)) -> list[Path]:
    """One photo per name, each with a caption sidecar that says which photo it belongs to."""
    made = []
    for seed, name in enumerate(names):
        path = noise(folder / name, size, seed)
        path.with_suffix(".txt").write_text(f"mytoken woman, {name}", encoding="utf-8")
        made.append(path)
    return made


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file below `folder` (links as where they point): its SHA-256 and modification time."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(folder))] = "-> " + os.readlink(path)
        elif path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path.relative_to(folder))] = f"{digest} {path.stat().st_mtime_ns}"
    return found


def make_project(root: Path, source: Path, base_model: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "kohya-wrap.toml").write_text(
        f'name = "p"\n[model]\nbase = "{base_model.as_posix()}"\n[[concepts]]\ntoken = "mytoken"\n'
        f'class = "woman"\nrepeats = 2\nsource = "{source.as_posix()}"\n[dataset]\nresolution = {RES}\n'
        '[prep]\nmode = "crop"\n[training]\nmax_train_epochs = 1\n',
        encoding="utf-8",
    )
    return root


def training(root: Path) -> Path:
    return root.joinpath(*TRAINING)


def images(root: Path) -> list[str]:
    folder = training(root)
    return sorted(p.name for p in folder.iterdir() if p.suffix != ".txt") if folder.is_dir() else []


def whole_images_only(folder: Path) -> None:
    """Nothing half-written: no temporary file, and every image opens and decodes."""
    for path in folder.iterdir():
        assert not path.name.endswith(".tmp"), path
        if path.suffix == ".png":
            with Image.open(path) as image:
                image.load()


def manifest_images(root: Path) -> list[dict]:
    return json.loads((root / "prep.json").read_text(encoding="utf-8"))["concepts"]["mytoken"]["images"]


@pytest.fixture
def setup(tmp_path, base_model):
    """A project and a source folder of five captioned photos, with a fingerprint of the sources."""
    source = tmp_path / "my photos"
    photos(source, [f"p{i}.png" for i in range(5)])
    root = make_project(tmp_path / "proj", source, base_model)
    return root, source, fingerprint(source)


# ------------------------------------------------------------------------------------------ write errors


def test_a_write_error_stops_prep_and_is_never_recorded_against_the_photos(setup, cli, monkeypatch):
    """No permission in the training folder: exit 2, one line naming the folder and the fix, nothing
    rejected; once the permission is back the photos are prepared (not skipped as "unchanged, rejected")."""
    import kohya_wrap.dataset.images as images_module

    root, source, before = setup
    real = images_module.write_bytes_atomic
    calls = []

    def denied(path, data):
        calls.append(path)
        if len(calls) > 2:  # two images written, then the folder's permission changes
            raise PermissionError(
                errno.EACCES, "Permission denied", str(Path(path).parent / f".{Path(path).name}.k3j_x9q2.tmp")
            )
        real(path, data)

    monkeypatch.setattr(images_module, "write_bytes_atomic", denied)
    result = cli("prep", root, "--workers", "1")
    assert result.code == ExitCode.USAGE, result.out + result.err
    assert "rejected" not in result.out and "internal error" not in result.err
    line = " ".join(result.err.split())
    assert f"{training(root)}: permission denied: cannot create p2.png in it" in line
    assert "make the folder writable for your user" in line
    assert "2 image(s) written to image/2_mytoken woman, 3 source(s) left, kept and recorded in prep.json" in line
    assert "run `kohya-wrap prep` again: it goes on where it stopped" in line
    assert "Traceback" not in result.err
    statuses = [e["status"] for e in manifest_images(root)]
    assert statuses == ["ok", "ok"]  # what was written is kept and recorded; the rest is not recorded at all
    whole_images_only(training(root))

    monkeypatch.setattr(images_module, "write_bytes_atomic", real)
    again = cli("prep", root, "--json")
    assert again.code == 0, again.err
    report = json.loads(again.out)["concepts"][0]
    assert (report["written"], report["unchanged"], report["rejected"]) == (3, 2, [])
    assert images(root) == [f"p{i}.png" for i in range(5)]
    assert fingerprint(source) == before


@contextmanager
def unwritable(folder: Path):
    """`folder` made unwritable for real: read-only tmpfs mounted on it as root (EROFS), else chmod 0555
    (EACCES); undone on leaving."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True
        )
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
        try:
            yield "read-only"
        finally:
            subprocess.run(["umount", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        try:
            yield "writable"
        finally:
            folder.chmod(0o755)


def test_a_training_folder_it_cannot_write_to_for_real(setup, cli):
    root, source, before = setup
    with unwritable(training(root)) as fix:
        result = cli("prep", root)
        assert result.code == ExitCode.USAGE, result.out + result.err
        line = " ".join(result.err.split())
        assert str(training(root)) in line and fix in line and "rejected" not in result.out
        assert "nothing was written" in line or "0 image(s) written" in line
    assert fingerprint(source) == before
    again = cli("prep", root, "--json")
    assert again.code == 0, again.err
    report = json.loads(again.out)["concepts"][0]
    assert (report["written"], report["rejected"]) == (5, [])


@pytest.fixture
def small_disk(tmp_path):
    """A 400 KiB tmpfs (root only: skipped otherwise), unmounted afterwards."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root")
    folder = tmp_path / "small disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_stops_prep_with_exit_2_and_nothing_half_written(tmp_path, base_model, cli, small_disk):
    """The project on a 400 KiB disk, eight 256² photos of random pixels (~190 KiB each as PNG): the disk
    fills after two. Exit 2, the fix (free space), the sources untouched, no partial file; with room again,
    prep goes on from where it stopped."""
    source = tmp_path / "photos"
    photos(source, [f"p{i}.png" for i in range(8)], size=(256, 256))
    before = fingerprint(source)
    root = make_project(small_disk / "proj", source, base_model)
    spec = root / "kohya-wrap.toml"
    spec.write_text(spec.read_text(encoding="utf-8").replace(f"resolution = {RES}", "resolution = 256"), "utf-8")
    result = cli("prep", root, "--workers", "1")
    assert result.code == ExitCode.USAGE, result.out + result.err
    line = " ".join(result.err.split())
    assert f"prep stopped: {training(root)}" in line and "no space left on the device" in line
    assert "free some space there" in line and "run `kohya-wrap prep` again" in line
    assert "rejected" not in result.out and "internal error" not in result.err
    assert fingerprint(source) == before
    whole_images_only(training(root))
    written = images(root)
    assert 1 <= len(written) < 8

    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    again = cli("prep", root, "--json", "--workers", "1")
    assert again.code == 0, again.err
    report = json.loads(again.out)["concepts"][0]
    assert report["rejected"] == [] and report["kept"] == 8
    assert report["unchanged"] >= len(written) - 1  # the last one may have been written but not recorded
    assert images(root) == [f"p{i}.png" for i in range(8)]
    assert fingerprint(source) == before


# -------------------------------------------------------------------------------------------------- names


def test_output_names_never_collide(tmp_path, base_model, cli):
    source = tmp_path / "src"
    names = ["a/b.png", "a_b.png", "c_d.png", "c_d.jpg", "c_d_jpg.png", "X.png", "x.png", "e.png", "f/g/h.png"]
    photos(source, names)
    before = fingerprint(source)
    root = make_project(tmp_path / "proj", source, base_model)
    result = cli("prep", root, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)["concepts"][0]
    assert report["kept"] == len(names) and report["rejected"] == []
    outputs = {Path(e["source"]).relative_to(source).as_posix(): e["output"] for e in manifest_images(root)}
    assert len(set(outputs.values())) == len(names) and len({o.casefold() for o in outputs.values()}) == len(names)
    assert len(images(root)) == len(names)
    for name, output in outputs.items():  # every training image beside the caption of its own photo
        caption = (source / name).with_suffix(".txt").read_text(encoding="utf-8")
        assert Path(output).with_suffix(".txt").read_text(encoding="utf-8") == caption
    assert Path(outputs["e.png"]).name == "e.png" and Path(outputs["f/g/h.png"]).name == "f_g_h.png"
    again = cli("prep", root, "--json")
    assert json.loads(again.out)["concepts"][0]["unchanged"] == len(names)
    assert fingerprint(source) == before


def test_output_names_are_deterministic_whatever_the_listing_order(tmp_path):
    from kohya_wrap.dataset.prep import output_names

    source = tmp_path / "s"
    paths = [source / n for n in ("a/b.jpg", "a_b.jpg", "a_b.png", "a_b_jpg.jpg", "A_B.jpg", "z.webp")]
    first = output_names(source, paths, ".png")
    for seed in range(5):
        shuffled = paths[:]
        random.Random(seed).shuffle(shuffled)
        assert output_names(source, shuffled, ".png") == first
    assert len({n.casefold() for n in first.values()}) == len(paths)
    assert first[source / "z.webp"] == "z.png"


# ------------------------------------------------------------------------------------- its own folders


def test_a_source_holding_the_project_does_not_grow_the_training_set(tmp_path, base_model, cli):
    """The photos folder with the project inside it: three photos stay three, run after run."""
    source = tmp_path / "photos"
    photos(source, ["p0.png", "p1.png", "p2.png"])
    before = fingerprint(source)
    root = make_project(source / "proj", source, base_model)
    counts = []
    for _ in range(3):
        result = cli("prep", root)
        assert result.code == 0, result.err
        counts.append(len(images(root)))
    assert counts == [3, 3, 3]  # it was 3, 6, 9
    assert images(root) == ["p0.png", "p1.png", "p2.png"]
    assert f"left out {root}: the project is inside the source folder" in " ".join(result.out.split())
    assert {k: v for k, v in fingerprint(source).items() if not k.startswith("proj")} == before


# ------------------------------------------------------------------------------------- stopped midway


def test_ctrl_c_says_what_was_kept_and_a_rerun_goes_on(setup, cli, monkeypatch):
    import kohya_wrap.dataset.prep as prep_module

    root, source, before = setup
    real, calls = prep_module.prepare_job, []

    def job(item):
        calls.append(item)
        if len(calls) == 4:  # Ctrl-C while the fourth image is in hand: it finishes, the fifth never starts
            time.sleep(0.2)  # (the third one recorded meanwhile)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
        return real(item)

    monkeypatch.setattr(prep_module, "prepare_job", job)
    result = cli("prep", root, "--workers", "1")
    assert result.code == ExitCode.INTERRUPTED, result.out + result.err
    line = " ".join(result.err.split())
    assert "interrupted (mytoken: 4 image(s) written to image/2_mytoken woman, 1 source(s) left, kept and " in line
    assert "recorded in prep.json) — run `kohya-wrap prep` again to go on where it stopped" in line
    whole_images_only(training(root))
    monkeypatch.setattr(prep_module, "prepare_job", real)
    again = cli("prep", root, "--json")
    assert again.code == 0, again.err
    report = json.loads(again.out)["concepts"][0]
    assert (report["unchanged"], report["written"], report["rejected"]) == (4, 1, [])
    assert fingerprint(source) == before


def test_a_real_ctrl_c_stops_prep_at_once_with_exit_130(tmp_path, base_model, cli):
    """SIGINT to a real `kohya-wrap prep --workers 1` on JPEGs (libvips): it used to land inside pyvips' log
    callback, where cffi printed and dropped it, and prep went on to the end with exit 0."""
    source = tmp_path / "photos"
    for index in range(40):
        noise(source / f"p{index:02d}.jpg", (640, 640), index)
    before = fingerprint(source)
    root = make_project(tmp_path / "proj", source, base_model)
    run = subprocess.Popen(
        [sys.executable, "-c", "from kohya_wrap.cli import main; main()", "prep", str(root), "--workers", "1"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while len(images(root)) < 2 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=60)
    assert run.returncode == ExitCode.INTERRUPTED, out + err
    line = " ".join(err.split())
    assert "interrupted (mytoken: " in line and "kept and recorded in prep.json" in line
    assert "Traceback" not in err and "Exception ignored" not in err
    whole_images_only(training(root))
    kept = len(images(root))
    again = cli("prep", root, "--json")
    assert again.code == 0, again.err
    report = json.loads(again.out)["concepts"][0]
    assert report["unchanged"] >= kept - 1 and report["unchanged"] + report["written"] == 40
    assert fingerprint(source) == before


def test_a_duplicate_written_before_a_stop_is_removed_with_its_caption_on_resume(setup, cli, monkeypatch):
    """Stopped after the images were written but before they were compared: the resumed prep finds the
    duplicate and removes its image and its caption, as an unstopped prep would have."""
    import kohya_wrap.dataset.prep as prep_module

    root, source, _ = setup
    shutil.copyfile(source / "p1.png", source / "z copy.png")
    (source / "z copy.txt").write_text("mytoken woman, the copy", encoding="utf-8")
    before = fingerprint(source)

    def stop(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(prep_module, "_dedupe", stop)
    assert cli("prep", root).code == ExitCode.INTERRUPTED
    assert "z copy.png" in images(root)
    monkeypatch.undo()
    again = cli("prep", root, "--json")
    assert again.code == 0, again.err
    report = json.loads(again.out)["concepts"][0]
    assert report["unchanged"] == 6 and report["written"] == 0
    assert [Path(r["source"]).name for r in report["rejected"]] == ["z copy.png"]
    assert sorted(p.name for p in training(root).iterdir()) == sorted(
        [f"p{i}.png" for i in range(5)] + [f"p{i}.txt" for i in range(5)]
    )
    entry = next(e for e in manifest_images(root) if e["source"].endswith("z copy.png"))
    assert entry["status"] == "rejected" and entry["output"] == ""
    assert fingerprint(source) == before


def test_rejections_recorded_for_a_write_error_by_an_older_prep_are_tried_again(setup, cli):
    """prep.json written by a version that recorded a folder's write error against the photos: those
    photos are prepared once the folder is writable (they were skipped as "unchanged, rejected")."""
    root, source, before = setup
    assert cli("prep", root).code == 0
    data = json.loads((root / "prep.json").read_text(encoding="utf-8"))
    for entry in data["concepts"]["mytoken"]["images"]:
        Path(entry["output"]).unlink()
        entry.update(status="rejected", reason="unreadable: Permission denied", output="", output_size=None)
    (root / "prep.json").write_text(json.dumps(data), encoding="utf-8")
    again = cli("prep", root, "--json")
    assert again.code == 0, again.err
    report = json.loads(again.out)["concepts"][0]
    assert (report["written"], report["rejected"]) == (5, [])
    assert images(root) == [f"p{i}.png" for i in range(5)] and fingerprint(source) == before


def test_photos_deep_in_folders_get_names_the_file_system_takes(tmp_path, base_model, cli):
    source = tmp_path / "src"
    deep = "/".join(["a folder with a rather long name"] * 9)  # 300 bytes joined with _: over 255
    names = [f"{deep}/photo.png", f"{deep}/photo2.png", "short.png"]
    photos(source, names)
    before = fingerprint(source)
    root = make_project(tmp_path / "proj", source, base_model)
    result = cli("prep", root, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)["concepts"][0]
    assert report["kept"] == 3 and report["rejected"] == []
    assert all(len(name.encode()) <= 255 for name in images(root)) and len(set(images(root))) == 3
    assert cli("prep", root, "--json").out.count('"unchanged": 3') == 1
    assert fingerprint(source) == before


KILLER = """
import json, os, signal, sys, time
from pathlib import Path
import kohya_wrap.dataset.prep as prep
from kohya_wrap.cli import main

root = Path(sys.argv[1])
prep.SAVE_EVERY = 0.0
real, count = prep.prepare_job, [0]

def recorded():
    try:
        entries = json.loads((root / "prep.json").read_text())["concepts"]["mytoken"]["images"]
    except (OSError, ValueError, KeyError):
        return 0
    return sum(e.get("status") == "ok" and not e.get("stale") for e in entries)

def job(item):
    count[0] += 1
    time.sleep(0.05)  # an image that takes a while, as real ones do: progress is saved after each
    if recorded() >= 3 or count[0] == 12:
        os.kill(os.getpid(), signal.SIGKILL)  # a power cut: nothing runs after this
    return real(item)

prep.prepare_job = job
main(["prep", str(root), "--workers", "1"])
"""


def test_progress_is_saved_as_it_goes_so_even_sigkill_loses_nothing_finished(tmp_path, base_model, cli):
    source = tmp_path / "photos"
    photos(source, [f"p{i:02d}.png" for i in range(12)])
    before = fingerprint(source)
    root = make_project(tmp_path / "proj", source, base_model)
    killed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLER), str(root)], cwd=REPO, capture_output=True, timeout=120
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode(errors="replace")
    again = cli("prep", root, "--json")
    assert again.code == 0, again.err
    report = json.loads(again.out)["concepts"][0]
    assert report["unchanged"] >= 3 and report["unchanged"] + report["written"] == 12 and report["rejected"] == []
    assert len(images(root)) == 12
    whole_images_only(training(root))
    assert fingerprint(source) == before


# ----------------------------------------------------------------------------------------------- modes


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_files_prep_and_init_write_get_the_umasks_mode(tmp_path, base_model, cli, umask):
    """mkstemp's 0600 left sd-scripts (another user, a container) unable to read the training set."""
    source = tmp_path / "photos"
    photos(source, ["p0.png", "p1.png"])
    before = fingerprint(source)
    expected = 0o666 & ~umask
    old = os.umask(umask)
    try:
        root = make_project(tmp_path / "proj", source, base_model)
        assert cli("prep", root).code == 0
        made = tmp_path / "made"
        init = cli(
            "init", made, "--token", "t", "--class", "c", "--images", source, "--base-model", base_model, "--no-prep"
        )
        assert init.code == 0, init.err
    finally:
        os.umask(old)
    written = [*training(root).iterdir(), root / "prep.json"]
    written += [p for p in made.rglob("*") if p.is_file() and ".kohya-wrap" not in p.parts]
    assert len(written) >= 8
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == expected, (path, oct(path.stat().st_mode))
    assert fingerprint(source) == before


def test_a_replaced_file_keeps_its_own_mode(tmp_path):
    from kohya_wrap.fsutil import write_text_atomic

    path = tmp_path / "caption.txt"
    path.write_text("old", encoding="utf-8")
    path.chmod(0o640)
    write_text_atomic(path, "new")
    assert path.read_text(encoding="utf-8") == "new" and stat.S_IMODE(path.stat().st_mode) == 0o640


# -------------------------------------------------------------------------------------------- symlinks


def test_dangling_links_and_link_loops_among_the_photos_are_rejected_by_name(setup, cli):
    root, source, _ = setup
    (source / "gone.png").symlink_to("nowhere.png")
    (source / "loop.png").symlink_to("loop.png")
    (source / "ring a.jpg").symlink_to("ring b.jpg")
    (source / "ring b.jpg").symlink_to("ring a.jpg")
    before = fingerprint(source)
    result = cli("prep", root)
    assert result.code == 0, result.err
    out = " ".join(result.out.split())
    assert "rejected gone.png: unreadable: a symbolic link to nowhere.png, which does not exist" in out
    assert "rejected loop.png: unreadable: a loop of symbolic links" in out
    assert "rejected ring a.jpg: unreadable: a loop of symbolic links" in out
    assert "5 image(s)" in out and "4 rejected" in out
    assert fingerprint(source) == before

    (training(root) / "dangling.png").symlink_to("nowhere.png")  # in the training folder itself
    (training(root) / "looped.png").symlink_to("looped.png")
    for command in ("lint", "check"):  # each names them as images sd-scripts cannot read
        seen = cli(command, root)
        assert "internal error" not in seen.err and "Traceback" not in seen.err, (command, seen.err)
        said = " ".join(seen.out.split())
        assert "2 file(s) are not readable images" in said and "dangling.png" in said and "looped.png" in said
    assert fingerprint(source) == before


# ------------------------------------------------------------------------------------- damaged records


WRONG_SHAPES = [
    "not json {",
    "[]",
    "{}",
    '{"concepts": []}',
    '{"concepts": {"mytoken": []}}',
    '{"concepts": {"mytoken": {"settings": 5, "images": {"a": 1}}}}',
    '{"concepts": {"mytoken": {"images": [1, null, {"source": 5}, {"source": "x", "bytes": "big"}]}}}',
    "[" * 100_000,
]


@pytest.mark.parametrize("content", WRONG_SHAPES, ids=range(len(WRONG_SHAPES)))
def test_a_prep_json_of_the_wrong_shape_is_treated_as_absent_and_rewritten(setup, cli, content):
    root, source, before = setup
    (root / "prep.json").write_text(content, encoding="utf-8")
    result = cli("prep", root, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["concepts"][0]["written"] == 5
    assert [e["status"] for e in manifest_images(root)] == ["ok"] * 5  # rewritten in its own shape
    again = cli("prep", root, "--json")
    assert json.loads(again.out)["concepts"][0]["unchanged"] == 5
    assert fingerprint(source) == before


def test_a_prep_json_entry_of_the_wrong_types_is_prepared_again(setup, cli):
    """Right keys, wrong types (a hand edit, another version): that source is prepared again, no crash."""
    root, source, before = setup
    assert cli("prep", root).code == 0
    data = json.loads((root / "prep.json").read_text(encoding="utf-8"))
    entries = data["concepts"]["mytoken"]["images"]
    entries[0]["dhash"], entries[1]["output_size"], entries[2]["ops"] = "zz", "big", "ops"
    entries[3]["bytes"] = str(entries[3]["bytes"])
    (root / "prep.json").write_text(json.dumps(data), encoding="utf-8")
    result = cli("prep", root, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)["concepts"][0]
    assert (report["written"], report["unchanged"], report["rejected"]) == (4, 1, [])
    assert fingerprint(source) == before


DHASH_SHAPES = ["[]", '{"x": 5}', '{"x": [1, 2, "zz"], "y": [true, 1, ""]}', "not json", "{" * 100_000]


@pytest.mark.parametrize("content", DHASH_SHAPES, ids=range(len(DHASH_SHAPES)))
def test_caches_of_the_wrong_shape_are_treated_as_absent_and_rewritten(setup, cli, content):
    from kohya_wrap.dataset.facts import cache_file

    root, source, before = setup
    assert cli("prep", root).code == 0
    captions = fingerprint(training(root))
    clean = cli("lint", root)
    dhash = root / ".kohya-wrap" / "cache" / "dhash.json"
    facts = cache_file(root)
    dhash.write_text(content, encoding="utf-8")
    facts.write_text(content.replace("x", "version"), encoding="utf-8")
    damaged = cli("lint", root)
    assert damaged.code == clean.code and damaged.out == clean.out, damaged.err
    assert "internal error" not in damaged.err
    assert isinstance(json.loads(dhash.read_text(encoding="utf-8")), dict)  # rewritten in its own shape
    assert isinstance(json.loads(facts.read_text(encoding="utf-8")), dict)
    assert fingerprint(training(root)) == captions and fingerprint(source) == before


def test_cache_entries_of_the_wrong_shape_for_real_images_are_read_again(setup, cli):
    """The caches keyed by the real images, each entry damaged while size and time still match."""
    from kohya_wrap.dataset.facts import cache_file

    root, source, before = setup
    assert cli("prep", root).code == 0
    clean = cli("lint", root)
    dhash, facts = root / ".kohya-wrap" / "cache" / "dhash.json", cache_file(root)
    hashes = json.loads(dhash.read_text(encoding="utf-8"))
    broken = [lambda e: e[:2] + ["zz"], lambda e: 5, lambda e: e[:2] + [7], lambda e: {"a": e}, lambda e: e + e]
    dhash.write_text(json.dumps({k: broken[i % 5](e) for i, (k, e) in enumerate(hashes.items())}), encoding="utf-8")
    data = json.loads(facts.read_text(encoding="utf-8"))
    wrong = [lambda e: e[:2] + ["w", "h"] + e[4:], lambda e: e[:4] + [5] + e[5:], lambda e: e[:5] + [99, e[6]]]
    data["images"] = {
        k: wrong[i % 3](e) if isinstance(e, list) else e for i, (k, e) in enumerate(data["images"].items())
    }
    facts.write_text(json.dumps(data), encoding="utf-8")
    damaged = cli("lint", root)
    assert "internal error" not in damaged.err, damaged.err
    assert damaged.code == clean.code and damaged.out == clean.out
    assert json.loads(dhash.read_text(encoding="utf-8")) == hashes  # hashed again, written anew
    assert fingerprint(source) == before


# ------------------------------------------------------------------------------------------------- lock


def test_two_preps_at_once_the_second_exits_2(setup, cli):
    root, source, before = setup
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from kohya_wrap.fsutil import dataset_lock\n"
            "with dataset_lock(Path(sys.argv[1]), 'prep'):\n    print('held', flush=True); sys.stdin.read()",
            str(root),
        ],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = cli("prep", root)
    finally:
        holder.communicate("", timeout=30)
    assert result.code == ExitCode.USAGE, result.out + result.err
    line = " ".join(result.err.split())
    assert "another kohya-wrap command is changing this project's images or captions" in line
    assert f"pid {holder.pid}" in line and "kohya-wrap prep" in line
    assert images(root) == [] and fingerprint(source) == before
    assert cli("prep", root).code == 0  # released with the holder
