"""`kohya-wrap vendor …` against a stand-in sd-scripts repository with two tagged versions (tests/standin.py):
install from a local repo, status, options, upgrade, diff, use, and the live option schema."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, make_images
from standin import build_standin_repo

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

PROJECT = """\
# my project: comments survive `vendor use`
name = "t"
[model]
base = "{base}"
[[concepts]]
token = "tok"
repeats = 2
[dataset]
resolution = 64
[training]
max_train_steps = 5
mixed_precision = "no"
{extra}
"""


@pytest.fixture(scope="session")
def standin_repo(tmp_path_factory) -> Path:
    return build_standin_repo(tmp_path_factory.mktemp("standin") / "sd-scripts")


def git_out(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def installed(standin_repo, tmp_path, monkeypatch, cli) -> Path:
    """A vendor dir with the stand-in installed at v1.0.0 (a venv without torch)."""
    vendor = tmp_path / "vendor home"
    monkeypatch.setenv("KOHYA_WRAP_VENDOR", str(vendor))
    result = cli("vendor", "install", "--source", standin_repo, "--ref", "v1.0.0", "--torch", "none")
    assert result.code == 0, result.out + result.err
    return vendor


def make_project(root: Path, extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "m.safetensors").write_bytes(b"x")
    (root / "kohya-wrap.toml").write_text(
        PROJECT.format(base=(root / "m.safetensors").as_posix(), extra=extra), encoding="utf-8"
    )
    make_images(root / "image" / "2_tok", [(64, 64)] * 3)
    return root


def test_install_pins_and_checks_out_the_commit(installed, standin_repo, cli):
    lock = tomllib.loads((installed / "sd-scripts.lock").read_text(encoding="utf-8"))
    assert lock["source"] == str(standin_repo) and lock["ref"] == "v1.0.0"
    assert lock["commit"] == git_out(standin_repo, "rev-parse", "v1.0.0^{commit}")
    checkout = installed / "sd-scripts"
    assert git_out(checkout, "rev-parse", "HEAD") == lock["commit"]
    assert (checkout / "train_network.py").is_file()
    assert not (checkout / "bitsandbytes_windows").exists()  # Windows-only folder left out by default
    assert (installed / "venv" / "bin" / "python").is_file()
    log = next((installed / "logs").glob("install-*.log")).read_text(encoding="utf-8")
    assert "==== create venv" in log and "-m venv" in log

    status = json.loads(cli("vendor", "status", "--json", "--no-torch").out)
    assert status["commit"] == lock["commit"] and status["matches_lock"] and status["dirty"] == []
    assert status["describe"] == "v1.0.0" and status["python_present"]
    shipped = tomllib.loads((REPO / "kohya_wrap" / "data" / "sd-scripts.lock").read_text(encoding="utf-8"))
    assert status["lock_file"] == str(installed / "sd-scripts.lock") and not status["matches_pin"]
    assert status["pin"]["ref"] == shipped["ref"] and status["pin"]["commit"] == shipped["commit"]
    text = cli("vendor", "status", "--no-torch").out
    assert f"lock:       v1.0.0 {lock['commit'][:12]} from {standin_repo}" in text
    assert f"pin:        {shipped['ref']} {shipped['commit'][:12]} shipped with kohya-wrap (the lock differs)" in text

    options = cli("vendor", "options", "--grep", "network_dim")
    assert options.code == 0 and "network_dim" in options.out and "int" in options.out
    assert "sd-scripts v1.0.0 (vendor)" in options.out


def test_the_installed_options_validate_projects(installed, tmp_path, cli, monkeypatch):
    project = make_project(tmp_path / "p", "use_8bit_adam = true\nnetwork_dimm = 4\n")
    result = cli("check", project)
    assert result.code == 2
    assert (
        "training.network_dimm: train_network.py of sd-scripts v1.0.0 (vendor) has no such option — did you mean "
        "'network_dim'?" in result.err
    )
    assert "use_8bit_adam" not in result.err  # v1.0.0 still has it

    from kohya_wrap.sdscripts import schema

    def no_second_run(*args):
        raise AssertionError("the option schema was read again instead of from the cache")

    monkeypatch.setattr(schema, "run_introspection", no_second_run)
    assert cli("check", project).code == 2  # served from the cache


def test_diff_and_upgrade(installed, tmp_path, cli):
    project = make_project(tmp_path / "p", 'use_8bit_adam = true\nlr_scheduler = "constant"\n')
    assert cli("check", project).code == 0

    diff = cli("vendor", "diff", "v1.0.0", "v1.1.0", project)
    assert diff.code == 0, diff.err
    assert "flux_train_network.py: new script" in diff.out
    assert "+ network_dropout" in diff.out and "- use_8bit_adam" in diff.out
    assert "~ lr_scheduler: default 'constant' → 'cosine'" in diff.out
    assert "training.use_8bit_adam: train_network.py of sd-scripts v1.1.0" in diff.out
    assert 'set optimizer_type = "AdamW8bit" instead' in diff.out
    data = json.loads(cli("vendor", "diff", "v1.0.0", "v1.1.0", project, "--json").out)
    train = next(s for s in data["scripts"] if s["script"] == "train_network.py")
    assert [o["name"] for o in train["added"]] == ["network_dropout"] and [o["name"] for o in train["removed"]] == [
        "use_8bit_adam"
    ]
    assert train["changed"]["mixed_precision"]["choices"][1] == ["no", "fp16", "bf16", "fp8"]

    upgraded = cli("vendor", "upgrade", "--ref", "v1.1.0", project)
    assert upgraded.code == 0, upgraded.err
    assert "update requirements: requirements.txt installed" in upgraded.out  # it changed between the tags
    assert "your project does not validate against the new version" in upgraded.out
    lock = tomllib.loads((installed / "sd-scripts.lock").read_text(encoding="utf-8"))
    assert lock["ref"] == "v1.1.0" and lock["commit"] == git_out(installed / "sd-scripts", "rev-parse", "HEAD")

    after = cli("check", project)
    assert after.code == 2 and 'set optimizer_type = "AdamW8bit" instead' in after.err
    spec = project / "kohya-wrap.toml"
    spec.write_text(
        spec.read_text(encoding="utf-8").replace("use_8bit_adam = true", "network_dropout = 0.1"), encoding="utf-8"
    )
    assert cli("check", project).code == 0  # the new option is known with no code change

    again = cli("vendor", "upgrade", "--ref", "v1.1.0")
    assert again.code == 0 and "unchanged: nothing to install" in again.out
    pinned = cli("vendor", "upgrade", "--ref", "v1.1.0", "--pip-constraint", "numpy<2")
    assert pinned.code == 0 and "requirements.txt installed (pinned: numpy<2)" in pinned.out
    assert "numpy<2" in (installed / "constraints.txt").read_text(encoding="utf-8")


def test_a_failed_upgrade_says_how_to_go_back(installed, cli):
    failed = cli("vendor", "upgrade", "--ref", "v1.2.0")
    assert failed.code == 1
    assert "read options failed" in failed.err and "a_module_the_venv_lacks" in failed.err
    assert "the lock still pins v1.0.0" in failed.err and "kohya-wrap vendor upgrade --ref v1.0.0" in failed.err
    status = json.loads(cli("vendor", "status", "--json", "--no-torch").out)
    assert status["describe"] == "v1.2.0" and not status["matches_lock"]
    back = cli("vendor", "upgrade", "--ref", "v1.0.0")
    assert back.code == 0, back.err
    # the failed upgrade had installed v1.2.0's requirements: going back must install v1.0.0's again
    assert "update requirements: requirements.txt installed" in back.out
    assert json.loads(cli("vendor", "status", "--json", "--no-torch").out)["matches_lock"]


def test_local_changes_are_not_overwritten(installed, cli):
    script = installed / "sd-scripts" / "train_network.py"
    script.write_text(script.read_text(encoding="utf-8") + "# my patch\n", encoding="utf-8")
    result = cli("vendor", "install")
    assert result.code == 2 and "has local changes (train_network.py)" in result.err
    assert "# my patch" in script.read_text(encoding="utf-8")
    assert cli("vendor", "upgrade", "--ref", "v1.1.0").code == 2


def test_a_moved_tag_is_not_followed_silently(installed, standin_repo, tmp_path, cli):
    lock = installed / "sd-scripts.lock"
    lock.write_text(
        lock.read_text(encoding="utf-8").replace(git_out(standin_repo, "rev-parse", "v1.0.0^{commit}"), "0" * 40),
        encoding="utf-8",
    )
    result = cli("vendor", "install")
    assert result.code == 1 and "but the lock pins 000000000000" in result.err


def test_missing_blob_names_the_file_and_the_exclude(standin_repo, tmp_path, monkeypatch, cli):
    repo = tmp_path / "mirror"
    shutil.copytree(standin_repo, repo)
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", "-b", "big", "v1.1.0"], check=True)
    (repo / "configs").mkdir()
    (repo / "configs" / "big.json").write_text('{"large": true}', encoding="utf-8")
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "big"], check=True
    )
    subprocess.run(["git", "-C", str(repo), "tag", "v2.0.0"], check=True)
    blob = git_out(repo, "rev-parse", "v2.0.0:configs/big.json")
    (repo / ".git" / "objects" / blob[:2] / blob[2:]).unlink()  # as a mirror without large blobs
    monkeypatch.setenv("KOHYA_WRAP_VENDOR", str(tmp_path / "vendor"))
    failed = cli("vendor", "install", "--source", repo, "--ref", "v2.0.0", "--torch", "none")
    assert failed.code == 1
    assert "check out v2.0.0 failed: configs/big.json is missing from the source" in failed.err
    assert "add --exclude configs/big.json" in failed.err
    ok = cli(
        "vendor", "install", "--source", repo, "--ref", "v2.0.0", "--torch", "none", "--exclude", "configs/big.json"
    )
    assert ok.code == 0, ok.err
    assert (
        "configs/big.json"
        in tomllib.loads((tmp_path / "vendor" / "sd-scripts.lock").read_text(encoding="utf-8"))["exclude"]
    )


def test_use_an_existing_checkout_for_one_project(installed, tmp_path, cli, monkeypatch):
    gui_install = tmp_path / "kohya_ss"
    shutil.copytree(installed / "sd-scripts", gui_install / "sd-scripts")
    project = make_project(tmp_path / "p")
    monkeypatch.setenv("KOHYA_WRAP_VENDOR", str(tmp_path / "no vendor here"))
    assert "(snapshot)" in cli("check", project).out  # nothing installed: the shipped schema
    result = cli(
        "vendor", "use", gui_install / "sd-scripts", "--python", installed / "venv" / "bin" / "python", project
    )
    assert result.code == 0, result.err
    text = (project / "kohya-wrap.toml").read_text(encoding="utf-8")
    assert text.startswith("# my project: comments survive") and "[sd_scripts]" in text
    assert (project / "kohya-wrap.toml.bak").read_text(encoding="utf-8") == PROJECT.format(
        base=(project / "m.safetensors").as_posix(), extra=""
    )
    check = cli("check", project)
    assert check.code == 0 and "sd-scripts v1.0.0 (project)" in check.out
    plan = json.loads(cli("plan", project, "--json").out)
    assert plan["command"][0] == str(installed / "venv" / "bin" / "python")
    assert plan["command"][plan["command"].index("--config_file") - 1] == str(
        gui_install / "sd-scripts" / "train_network.py"
    )
    bad = cli("vendor", "use", tmp_path, project)
    assert bad.code == 2 and "not an sd-scripts checkout" in bad.err


def test_a_family_whose_script_this_version_lacks(installed, tmp_path, cli):
    project = make_project(tmp_path / "p")
    spec = project / "kohya-wrap.toml"
    spec.write_text(
        spec.read_text(encoding="utf-8").replace(
            "[model]\n",
            '[model]\nfamily = "flux"\nclip_l = "m.safetensors"\nt5xxl = "m.safetensors"\nae = "m.safetensors"\n',
        ),
        encoding="utf-8",
    )
    result = cli("check", project)
    assert result.code == 2
    assert (
        "model.family: 'flux' trains with flux_train_network.py, which sd-scripts v1.0.0 (vendor) does not have"
        in result.err
    )


def test_status_before_any_install_shows_the_shipped_pin(cli):
    status = json.loads(cli("vendor", "status", "--json", "--no-torch").out)
    assert not status["installed"] and status["matches_pin"] and status["lock"] == status["pin"]
    assert status["lock_file"] == str(REPO / "kohya_wrap" / "data" / "sd-scripts.lock")
    assert "pin:" not in cli("vendor", "status", "--no-torch").out  # nothing differs: one line says it all


def source_checkout_copy(target: Path) -> Path:
    """This project as a fresh source checkout: the files git sees in the working tree now (committed or
    not; ignored ones left out) committed into a new repository at `target`."""
    listed = (
        subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
        )
        .stdout.decode("utf-8")
        .split("\0")
    )
    for name in filter(None, listed):
        if (REPO / name).is_file():  # a file deleted but still in the index is not part of the tree
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A", "-f"], [*identity, "commit", "-qm", "copy"]):
        subprocess.run(["git", "-C", str(target), *args], check=True, capture_output=True)
    return target


def test_vendor_install_leaves_a_source_checkout_clean(standin_repo, tmp_path):
    """The README's set-up (`vendor install` in a clone of kohya-wrap) must not leave `git status` dirty:
    the shipped pin is package data, and the local lock, checkout and venv in vendor/ are git-ignored."""
    copy = source_checkout_copy(tmp_path / "kohya-wrap")
    shipped = (copy / "kohya_wrap" / "data" / "sd-scripts.lock").read_text(encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "KOHYA_WRAP_VENDOR"}  # the source checkout's vendor/
    env["PYTHONPATH"] = str(copy)  # the copy's own kohya_wrap, whose vendor/ is beside it
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kohya_wrap",
            "vendor",
            "install",
            "--source",
            str(standin_repo),
            "--ref",
            "v1.0.0",
            "--torch",
            "none",
        ],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (copy / "vendor" / "sd-scripts" / "train_network.py").is_file() and (copy / "vendor" / "venv").is_dir()
    lock = tomllib.loads((copy / "vendor" / "sd-scripts.lock").read_text(encoding="utf-8"))
    assert lock["source"] == str(standin_repo) and lock["ref"] == "v1.0.0"
    assert (copy / "kohya_wrap" / "data" / "sd-scripts.lock").read_text(encoding="utf-8") == shipped
    assert git_out(copy, "status", "--porcelain") == ""


def test_a_relative_source_is_relative_to_the_current_folder(standin_repo, tmp_path, monkeypatch, cli):
    monkeypatch.setenv("KOHYA_WRAP_VENDOR", str(tmp_path / "vendor"))
    monkeypatch.chdir(standin_repo.parent)
    result = cli("vendor", "install", "--source", standin_repo.name, "--ref", "v1.0.0", "--torch", "none")
    assert result.code == 0, result.out + result.err
    lock = tomllib.loads((tmp_path / "vendor" / "sd-scripts.lock").read_text(encoding="utf-8"))
    assert lock["source"] == str(standin_repo)  # absolute: a later fetch from another folder still finds it


# ----------------------------------------------------------------------------- releases built against NumPy 1
# (stand-in v1.3.0 pins opencv-python 4.8.1.78, which kohya-wrap's table knows; v1.4.0 a package it does not
# know; both fail to import under the stand-in's "NumPy 2" with NumPy's own message: tests/standin.py)


def test_a_known_incompatibility_is_pinned_before_pip_and_dropped_again(installed, cli):
    upgraded = cli("vendor", "upgrade", "--ref", "v1.3.0")
    assert upgraded.code == 0, upgraded.out + upgraded.err
    assert "kohya-wrap pinned numpy<2 (opencv-python==4.8.1.78 is built against NumPy 1)" in upgraded.out
    assert "installing the requirements again" not in upgraded.out  # known: no failed first try
    lock = tomllib.loads((installed / "sd-scripts.lock").read_text(encoding="utf-8"))
    assert lock["ref"] == "v1.3.0" and lock["compat_constraints"] == ["numpy<2"] and "pip_constraints" not in lock
    assert "numpy<2" in (installed / "constraints.txt").read_text(encoding="utf-8")
    assert json.loads(cli("vendor", "status", "--json", "--no-torch").out)["lock"]["compat_constraints"] == ["numpy<2"]
    assert "pip pins:   numpy<2 (kohya-wrap: this release's known needs)" in cli("vendor", "status", "--no-torch").out

    back = cli("vendor", "upgrade", "--ref", "v1.1.0")
    assert back.code == 0, back.out + back.err
    assert "compat_constraints" not in tomllib.loads((installed / "sd-scripts.lock").read_text(encoding="utf-8"))
    assert "pip pins" not in cli("vendor", "status", "--no-torch").out

    # a pin of the user's on the same package wins: kohya-wrap neither adds numpy<2 nor retries with it
    forced = cli("vendor", "upgrade", "--ref", "v1.3.0", "--pip-constraint", "numpy>=2")
    assert forced.code == 1 and "numpy.core.multiarray failed to import" in forced.err
    assert "installing the requirements again" not in forced.out
    assert "--pip-constraint SPEC" in forced.err and "the lock still pins v1.1.0" in forced.err


def test_an_unknown_incompatibility_is_retried_once_and_kept_in_the_lock(standin_repo, tmp_path, monkeypatch, cli):
    first = tmp_path / "first machine"
    monkeypatch.setenv("KOHYA_WRAP_VENDOR", str(first))
    result = cli("vendor", "install", "--source", standin_repo, "--ref", "v1.4.0", "--torch", "none")
    assert result.code == 0, result.out + result.err
    assert (
        "read options: a package built against NumPy 1 failed to import (numpy.core.multiarray failed to import); "
        "installing the requirements again with numpy<2" in result.out
    )
    assert "numpy<2 pinned and kept in the lock" in result.out
    lock = (first / "sd-scripts.lock").read_text(encoding="utf-8")
    assert tomllib.loads(lock)["compat_constraints"] == ["numpy<2"]

    other = tmp_path / "other machine"  # gets only the lock: the same environment at once, no retry
    other.mkdir()
    (other / "sd-scripts.lock").write_text(lock, encoding="utf-8")
    monkeypatch.setenv("KOHYA_WRAP_VENDOR", str(other))
    again = cli("vendor", "install", "--torch", "none")
    assert again.code == 0, again.out + again.err
    assert "kohya-wrap pinned numpy<2 (recorded in the lock for this commit)" in again.out
    assert "installing the requirements again" not in again.out
    assert (other / "sd-scripts.lock").read_text(encoding="utf-8") == lock


def test_the_user_pins_are_kept_in_the_lock(installed, tmp_path, monkeypatch, cli):
    pinned = cli("vendor", "upgrade", "--ref", "v1.1.0", "--pip-constraint", "toml==0.10.2")
    assert pinned.code == 0, pinned.out + pinned.err
    lock = (installed / "sd-scripts.lock").read_text(encoding="utf-8")
    assert tomllib.loads(lock)["pip_constraints"] == ["toml==0.10.2"]
    assert "pip pins:   toml==0.10.2" in cli("vendor", "status", "--no-torch").out
    other = tmp_path / "other machine"
    other.mkdir()
    (other / "sd-scripts.lock").write_text(lock, encoding="utf-8")
    monkeypatch.setenv("KOHYA_WRAP_VENDOR", str(other))
    again = cli("vendor", "install", "--torch", "none")
    assert again.code == 0 and "requirements.txt installed (pinned: toml==0.10.2)" in again.out


def test_the_known_constraints_table(tmp_path):
    from kohya_wrap.sdscripts.vendor.compat import known_constraints, merge, retry_constraint

    def known(text: str) -> list[tuple[str, str]]:
        path = tmp_path / "requirements.txt"
        path.write_text(text, encoding="utf-8")
        return [(k.constraint, k.reason) for k in known_constraints(path)]

    v088 = "accelerate==0.25.0\ndiffusers[torch]==0.25.0\nopencv-python==4.8.1.78\n-e .\n"
    assert known(v088) == [("numpy<2", "opencv-python==4.8.1.78 is built against NumPy 1")]
    assert known("Opencv_Python_Headless == 4.7.0.68 ; sys_platform == 'linux'  # old\n")[0][0] == "numpy<2"
    assert known("opencv-python==4.10.0.84\nnumpy\n") == []  # v0.10.x: built for NumPy 2
    assert known("opencv-python==4.8.1.78\nnumpy==1.26.4\n") == []  # the release pins numpy itself
    assert known("# opencv-python==4.8.1.78\nopencv-python>=4.8\n") == []  # a comment, not a pin
    assert known_constraints(tmp_path / "missing.txt") == []

    assert retry_constraint("ImportError: numpy.core.multiarray failed to import", ()).constraint == "numpy<2"
    assert retry_constraint("AttributeError: _ARRAY_API not found", ("torch==2.14.1",)).constraint == "numpy<2"
    assert retry_constraint("ImportError: numpy.core.multiarray failed to import", ("numpy>=2",)) is None
    assert retry_constraint("ModuleNotFoundError: No module named 'x'", ()) is None
    assert merge(("NumPy==1.26.4", "toml==0.10.2"), ("numpy<2", "safetensors<1")) == (
        "NumPy==1.26.4",
        "toml==0.10.2",
        "safetensors<1",
    )


def test_a_lock_with_and_without_constraints(tmp_path):
    from kohya_wrap.sdscripts.vendor.lock import Lock, read_lock

    path = tmp_path / "sd-scripts.lock"
    lock = Lock("src", "v0.8.8", "a" * 40, ("x/",), ("toml==0.10.2",), ("numpy<2",))
    path.write_text(lock.text(), encoding="utf-8")
    assert read_lock(path) == lock
    path.write_text('source = "src"\nref = "v0.10.1"\ncommit = "abc"\n', encoding="utf-8")  # an older lock
    assert read_lock(path) == Lock("src", "v0.10.1", "abc")
