"""The one error boundary (issue 14, "Unclear"): a failure of the machine or of the user's files — no
permission, a read-only file system, a folder where a file belongs, a file that is not UTF-8, input
nested 50 000 deep, a damaged run record, a git failure, Ctrl-C — is one line naming the path and what
to do (exit 2; 130 for Ctrl-C), never `internal error` or a traceback, and no file of the user's changes."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from conftest import REPO, make_images
from kohya_wrap.errors import ExitCode, KohyaWrapError
from standin import build_standin_repo

RUN_ID = "20261120-101010"
DEEP = 50_000


@pytest.fixture
def trained(tmp_path, on_standin) -> Path:
    """A project the stand-in sd-scripts trains (no preset: only options it has), so `check` passes."""
    root = tmp_path / "my lora"
    (root / "m.safetensors").parent.mkdir(parents=True)
    (root / "m.safetensors").write_bytes(b"x")
    (root / "kohya-wrap.toml").write_text(
        f'name = "rec_lora"\n[model]\nbase = "{(root / "m.safetensors").as_posix()}"\n[[concepts]]\n'
        'token = "mytoken"\nclass = "woman"\nrepeats = 1\n'
        "[dataset]\nresolution = 64\n[training]\nmax_train_steps = 6\n",
        encoding="utf-8",
    )
    make_images(root / "image" / "1_mytoken woman", [(64, 64)] * 3)
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` → its sha256 (the user's files, to compare before and after)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".kohya-wrap" not in p.parts
    }


def assert_one_line(result, *needles: str, code: int = ExitCode.USAGE) -> str:
    """Exit `code`, one `error:` line holding every needle, no internal error, no traceback."""
    assert result.code == code, result.out + result.err
    assert "internal error" not in result.err and "Traceback" not in result.err, result.err
    lines = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@contextmanager
def unwritable(folder: Path) -> Iterator[None]:
    """`folder` made unwritable for this process: chmod where permissions apply; as root (who ignores
    them) the immutable attribute (chattr +i); skipped where neither is possible."""
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(mode)
        return
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("running as root, and chattr +i is not available here: root writes into any folder")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@contextmanager
def read_only_mount(folder: Path) -> Iterator[Path]:
    """`folder` seen through a read-only bind mount (root only; skipped elsewhere)."""
    view = folder.with_name(folder.name + "-ro")
    view.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "--bind", str(folder), str(view)]).returncode != 0:
        pytest.skip("a read-only bind mount needs root (CAP_SYS_ADMIN)")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)


# ----------------------------------------------------------------------------- read-only folders


def test_plan_into_a_read_only_config_folder(trained, cli):
    root = trained
    (root / "config").mkdir()
    before = snapshot(root)
    with unwritable(root / "config"):
        result = cli("plan", root)
    assert_one_line(result, str(root / "config"), "permission denied", "train.toml", "writable")
    assert snapshot(root) == before


def test_init_into_a_read_only_folder(tmp_path, base_model, cli):
    parent = tmp_path / "shared"
    parent.mkdir()
    with unwritable(parent):
        result = cli("init", parent / "new", "--token", "t", "--class", "woman", "--base-model", base_model)
    assert_one_line(result, str(parent), "permission denied", "cannot create new")
    assert list(parent.iterdir()) == []


def test_plan_and_init_on_a_read_only_file_system(trained, cli):
    root = trained
    before = snapshot(root)
    with read_only_mount(root) as view:
        plan = cli("plan", view)
    assert_one_line(plan, str(view / "kohya-wrap.toml"), "to fix before planning")
    assert "✗ model: is not writable" in plan.out  # `check` names it before anything is written
    assert snapshot(root) == before


def test_init_force_on_a_read_only_file_system(project, cli):
    root = project()
    before = snapshot(root)
    with read_only_mount(root) as view:
        again = cli("init", view, "--token", "t", "--class", "woman", "--force")
    assert_one_line(again, str(view / "kohya-wrap.toml"), "read-only file system", "writable disk")
    assert snapshot(root) == before


# ----------------------------------------------------------------------------- files that are not UTF-8


def test_a_spec_that_is_not_utf8(project, cli):
    root = project()
    spec = root / "kohya-wrap.toml"
    spec.write_bytes(spec.read_bytes() + "# café\n".encode("latin-1"))
    before = snapshot(root)
    for command in ("check", "plan", "lint"):
        result = cli(command, root)
        assert_one_line(result, str(spec), "not UTF-8", "0xe9", "save it again as UTF-8")
    assert snapshot(root) == before


def test_a_preset_that_is_not_utf8(project, tmp_path, monkeypatch, cli):
    presets = tmp_path / "my presets"
    presets.mkdir()
    (presets / "mine.toml").write_bytes("# Mine: café\n[training]\nlearning_rate = 1e-4\n".encode("latin-1"))
    monkeypatch.setenv("KOHYA_WRAP_PRESETS", str(presets))
    root = project()
    spec = root / "kohya-wrap.toml"
    spec.write_text(spec.read_text(encoding="utf-8").replace('"sd15-character"', '"mine"'), encoding="utf-8")
    assert_one_line(cli("check", root), str(presets / "mine.toml"), "not UTF-8")
    assert_one_line(cli("presets", "show", "mine"), str(presets / "mine.toml"), "not UTF-8")
    listing = cli("presets", "list")  # the others are still listed
    assert listing.code == 0 and "sd15-character" in listing.out and "mine" in listing.out


# ----------------------------------------------------------------------------- nested 50 000 deep


def test_a_spec_nested_50000_deep(project, cli):
    root = project()
    spec = root / "kohya-wrap.toml"
    spec.write_text(spec.read_text(encoding="utf-8") + "x = " + "[" * DEEP + "]" * DEEP + "\n", encoding="utf-8")
    before = snapshot(root)
    assert_one_line(cli("check", root), str(spec), "nested too deeply")
    assert snapshot(root) == before


def test_a_kohya_ss_json_nested_50000_deep(tmp_path, cli):
    config = tmp_path / "gui.json"
    config.write_text('{"learning_rate": ' + "[" * DEEP + "]" * DEEP + "}", encoding="utf-8")
    result = cli("init", tmp_path / "proj", "--from-kohya-ss", config, "--token", "t", "--class", "woman")
    assert_one_line(result, str(config), "nested too deeply")
    assert not (tmp_path / "proj" / "kohya-wrap.toml").exists()


def test_a_kohya_ss_json_of_the_wrong_shape(tmp_path, cli):
    config = tmp_path / "gui.json"
    config.write_text("[1, 2]", encoding="utf-8")
    result = cli("init", tmp_path / "proj", "--from-kohya-ss", config, "--token", "t", "--class", "woman")
    assert_one_line(result, str(config), "expected a JSON object")


# ----------------------------------------------------------------------------- damaged run records

DAMAGED = {
    "not JSON": ("{damaged", "not a readable run record"),
    "an empty object": ("{}", "not a readable run record"),
    "a list": ("[1, 2]", "not a run record (expected a JSON object)"),
    "not UTF-8": (b'{"verdict": "caf\xe9"}', "not a readable run record"),
    "nested 50 000 deep": ("[" * DEEP + "]" * DEEP, "not a readable run record"),
}


@pytest.mark.parametrize("damage", DAMAGED, ids=list(DAMAGED))
def test_a_damaged_run_record(trained, cli, damage):
    content, message = DAMAGED[damage]
    root = trained
    record = root / "runs" / RUN_ID / "manifest.json"
    record.parent.mkdir(parents=True)
    (record.write_bytes if isinstance(content, bytes) else record.write_text)(content)
    before = snapshot(root)
    listing = cli("runs", root)
    assert listing.code == 0 and "internal error" not in listing.err + listing.out
    (line,) = [line for line in listing.out.splitlines() if RUN_ID in line]
    assert line.startswith(f"{RUN_ID}  unreadable record: {record}: ") and message in line
    for command in (["runs", "show", RUN_ID, root], ["report", root], ["grid", root, "--run", RUN_ID]):
        assert_one_line(cli(*command), str(record), message, "it was damaged")
    assert snapshot(root) == before


# ----------------------------------------------------------------------------- files and folders in the way


def test_kohya_wrap_vendor_naming_a_file(project, tmp_path, monkeypatch, cli):
    not_a_folder = tmp_path / "vendor.txt"
    not_a_folder.write_text("my notes\n", encoding="utf-8")
    monkeypatch.setenv("KOHYA_WRAP_VENDOR", str(not_a_folder))
    for command in (["vendor", "install", "--torch", "none"], ["vendor", "status", "--no-torch"], ["check", project()]):
        assert_one_line(cli(*command), f"KOHYA_WRAP_VENDOR ({not_a_folder}) is a file", "point KOHYA_WRAP_VENDOR")
    assert not_a_folder.read_text(encoding="utf-8") == "my notes\n"


def test_train_toml_that_is_a_folder(trained, cli):
    root = trained
    (root / "config" / "train.toml").mkdir(parents=True)
    (root / "config" / "train.toml" / "mine.txt").write_text("keep me\n", encoding="utf-8")
    before = snapshot(root)
    assert_one_line(cli("plan", root), str(root / "config" / "train.toml"), "is a folder", "move or remove")
    assert snapshot(root) == before
    assert list((root / "config").iterdir()) == [root / "config" / "train.toml"]  # no temporary file left


# ----------------------------------------------------------------------------- sd-scripts' vendor install


@pytest.fixture(scope="module")
def standin_repo(tmp_path_factory) -> Path:
    return build_standin_repo(tmp_path_factory.mktemp("standin") / "sd-scripts")


@pytest.fixture
def no_venv(monkeypatch):
    """`vendor install` with the venv phases skipped: what is tested here is the checkout (seconds saved)."""
    import kohya_wrap.sdscripts.vendor.manage as manage

    for name in ("create_venv", "install_torch", "install_requirements", "live_schema"):
        monkeypatch.setattr(manage, name, lambda *args, **kwargs: "skipped by the test")
    monkeypatch.setattr(manage, "option_count", lambda schema: "skipped by the test")


def test_vendor_install_from_a_source_that_does_not_exist(tmp_path, monkeypatch, cli):
    monkeypatch.setenv("KOHYA_WRAP_VENDOR", str(tmp_path / "vendor"))
    result = cli("vendor", "install", "--source", tmp_path / "nonexistent", "--torch", "none")
    line = assert_one_line(result, "fetch sd-scripts failed: git: fatal:", "does not exist", code=ExitCode.FAILED)
    assert "GitCommandError" not in line and str(tmp_path / "nonexistent") in line
    assert not (tmp_path / "vendor" / "sd-scripts").exists()


def test_a_bad_ref_then_a_good_one_needs_no_force(standin_repo, no_venv, tmp_path, monkeypatch, cli):
    monkeypatch.setenv("KOHYA_WRAP_VENDOR", str(tmp_path / "vendor"))
    bad = cli("vendor", "install", "--source", standin_repo, "--ref", "no-such-tag", "--torch", "none")
    assert_one_line(bad, "'no-such-tag' is not a tag, branch or commit", code=ExitCode.FAILED)
    good = cli("vendor", "install", "--source", standin_repo, "--ref", "v1.0.0", "--torch", "none")
    assert good.code == 0, good.out + good.err
    assert "local changes" not in good.err
    assert (tmp_path / "vendor" / "sd-scripts" / "train_network.py").is_file()


def test_a_clone_never_checked_out_is_no_local_change(standin_repo, no_venv, tmp_path, monkeypatch, cli):
    """A half-made clone an older kohya-wrap (or a kill) left behind is recognised, not taken for edits."""
    vendor = tmp_path / "vendor"
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(standin_repo), str(vendor / "sd-scripts")], check=True)
    monkeypatch.setenv("KOHYA_WRAP_VENDOR", str(vendor))
    good = cli("vendor", "install", "--source", standin_repo, "--ref", "v1.0.0", "--torch", "none")
    assert good.code == 0, good.out + good.err
    assert (vendor / "sd-scripts" / "train_network.py").is_file()


# ----------------------------------------------------------------------------- no model file


@pytest.mark.parametrize(
    "base, message",
    [
        ("/dev/null", "{} is not a model file (it is a device, pipe or socket)"),
        ("empty.safetensors", "{} is empty (0 bytes), not a model"),
        ("photo.jpg", "{} is not a model file (a .jpg file)"),
    ],
)
def test_a_base_model_that_is_no_model_file(project, tmp_path, cli, base, message):
    root = project()
    if base != "/dev/null":
        path = tmp_path / base
        path.write_bytes(b"" if base.startswith("empty") else b"\xff\xd8\xff" + b"\0" * 64)
        base = path.as_posix()
    message = message.format(base)
    spec = root / "kohya-wrap.toml"
    spec.write_text(
        "\n".join(
            f'base = "{base}"' if line.startswith("base = ") else line
            for line in spec.read_text(encoding="utf-8").splitlines()
        )
        + "\n",
        encoding="utf-8",
    )
    result = cli("check", root)
    assert result.code == ExitCode.USAGE
    assert f"model.base: {message}" in result.out, result.out
    assert "internal error" not in result.err


# ----------------------------------------------------------------------------- a 10 MB value


def test_ten_megabyte_strings_in_a_kohya_ss_json_are_shortened(tmp_path, cli):
    big = 10_000_000
    config = tmp_path / "gui.json"
    gui = {
        "pretrained_model_name_or_path": "owner/" + "x" * big,
        "learning_rate": "z" * big,
        "LoRA_type": "q" * big,
        "network_args": "a=" + "b" * big,
        "train_data_dir": "/" + "w" * big,
        "k" * big: 1,
    }
    config.write_text(json.dumps(gui), encoding="utf-8")
    result = cli("init", tmp_path / "proj", "--from-kohya-ss", config, "--token", "t", "--class", "woman")
    assert result.code == 0, result.err[:2000]
    assert len(result.out) + len(result.err) < 10_000
    assert max(len(line) for line in result.out.splitlines()) < 400
    assert f"({big} chars)" in result.out


def test_a_ten_megabyte_value_in_an_error_is_shortened(project, cli):
    root = project()
    spec = root / "kohya-wrap.toml"
    spec.write_text(spec.read_text(encoding="utf-8") + f'\n[training]\noptimizer = "{"o" * 10_000_000}"\n')
    result = cli("check", root)
    assert result.code == ExitCode.USAGE and "internal error" not in result.err
    assert len(result.out) + len(result.err) < 10_000


# ----------------------------------------------------------------------------- Ctrl-C


@pytest.mark.parametrize("command", [["check"], ["plan"], ["runs"], ["presets", "list"]])
def test_ctrl_c_anywhere_is_interrupted(project, monkeypatch, cli, command):
    root = project()
    before = snapshot(root)

    def pressed(*args, **kwargs):
        raise KeyboardInterrupt

    import kohya_wrap.presets
    import kohya_wrap.spec.load
    import kohya_wrap.training.record

    monkeypatch.setattr(kohya_wrap.spec.load, "read_toml", pressed)
    monkeypatch.setattr(kohya_wrap.training.record, "run_dirs", pressed)
    monkeypatch.setattr(kohya_wrap.presets, "all_presets", pressed)
    result = cli(*command, *([] if command[0] == "presets" else [root]))
    assert result.code == ExitCode.INTERRUPTED, result.out + result.err
    assert "interrupted" in result.err and "Traceback" not in result.err and "Aborted" not in result.err
    assert snapshot(root) == before


def test_a_real_ctrl_c_while_reading(tmp_path):
    """SIGINT to a real kohya-wrap blocked in a read (a kohya_ss config that is a FIFO): exit 130, one line."""
    fifo = tmp_path / "gui.json"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", "from kohya_wrap.cli import main; main()", "init", str(tmp_path / "p")]
        + ["--from-kohya-ss", str(fifo), "--token", "t", "--class", "woman"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    writer = None
    try:
        deadline = time.monotonic() + 30
        while writer is None:  # opening the write end succeeds once the child has the file open to read
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                assert exc.errno == errno.ENXIO and time.monotonic() < deadline and child.poll() is None
                time.sleep(0.02)
        time.sleep(0.2)  # now in read(), waiting for bytes that never come
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        if writer is not None:
            os.close(writer)
        if child.poll() is None:
            child.kill()
    assert child.returncode == ExitCode.INTERRUPTED, err
    assert "error: interrupted" in err and "Traceback" not in err
    assert not (tmp_path / "p").exists()


# ----------------------------------------------------------------------------- the boundary itself


@pytest.mark.parametrize(
    "code, filename, words",
    [
        (
            errno.ENOSPC,
            "/data/proj/config/.train.toml.ab12cd34.tmp",
            ["/data/proj/config/train.toml", "no space", "df -h"],
        ),
        (errno.EROFS, "/mnt/ro/kohya-wrap.toml", ["/mnt/ro/kohya-wrap.toml", "read-only file system"]),
        (errno.EISDIR, "/p/config/train.toml", ["/p/config/train.toml is a folder"]),
        (errno.ELOOP, "/p/image/a.png", ["/p/image/a.png", "loop of symbolic links"]),
        (errno.EACCES, "/etc/shadow", ["/etc/shadow: permission denied"]),
        (errno.EIO, "/p/a.png", ["/p/a.png", "input/output error"]),
    ],
)
def test_os_errors_become_one_line(code, filename, words):
    from kohya_wrap.errors import user_error

    error = user_error(OSError(code, os.strerror(code), filename))
    assert isinstance(error, KohyaWrapError) and error.exit_code == ExitCode.USAGE
    line = error.lines()[0]
    assert "\n" not in line and error.hint
    for word in words:
        assert word in line


def test_a_bug_stays_a_bug():
    from kohya_wrap.errors import os_error, user_error

    assert user_error(ValueError("x")) is None and user_error(KeyError("x")) is None
    assert os_error(PermissionError(errno.EACCES, "Permission denied")).message == "Permission denied"


def test_shorten_and_clip():
    from kohya_wrap.errors import clip, shorten

    assert shorten("abc") == "abc" and shorten("a" * 100) == "a" * 80 + "… (100 chars)"
    assert clip("short message") == "short message"
    clipped = clip("value " + "v" * 10_000_000 + " — fix it")
    assert len(clipped) < 200 and clipped.endswith(" — fix it") and "(10000000 chars)" in clipped
