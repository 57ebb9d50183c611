"""Issue 14, security: opening a downloaded project never runs its code. A spec's `[sd_scripts]` may name a
checkout and a Python inside the project; read-only commands (check, lint, plan, prep, tags) must not run
them (shipped option schema, no environment probe), `run` and `grid` refuse them with the exact
`kohya-wrap vendor use …` command, and once the user has run that command they are used. Also: `runs
show` never reads a record outside the project."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import pytest

from conftest import make_images
from standin_trainer import build_standin_trainer

FIXTURES = Path(__file__).parent / "fixtures" / "sdscripts_logs"
READ_ONLY = (("check",), ("lint",), ("plan",), ("prep",), ("tags", "stats"))


def hostile_python(path: Path, marker: Path) -> Path:
    """A `#!/bin/sh` "Python" that leaves a marker each time it runs, then behaves as this Python."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'#!/bin/sh\necho "$@" >> {shlex.quote(str(marker))}\nexec {shlex.quote(sys.executable)} "$@"\n',
        encoding="utf-8",
    )
    path.chmod(0o755)
    return path


def downloaded(root: Path, sd_scripts: str) -> Path:
    """A project as it might be downloaded: its spec names what to run, in `sd_scripts`."""
    (root / "model").mkdir(parents=True)
    (root / "m.safetensors").write_bytes(b"x")
    (root / "kohya-wrap.toml").write_text(
        'name = "rec_lora"\n[model]\nbase = "m.safetensors"\n[[concepts]]\ntoken = "mytoken"\nclass = "woman"\n'
        'repeats = 1\nsource = "photos"\n[dataset]\nresolution = 64\n[training]\nmax_train_steps = 6\nseed = 42\n'
        'mixed_precision = "no"\n' + sd_scripts,
        encoding="utf-8",
    )
    make_images(root / "image" / "1_mytoken woman", [(64, 64)] * 3)
    make_images(root / "photos", [(96, 96)] * 3, caption=None)
    return root


@pytest.fixture
def attack(tmp_path) -> tuple[Path, Path]:
    """The attack of the issue: `[sd_scripts] path = "sd"`, `python = "evil.sh"`, both inside the project."""
    root = downloaded(tmp_path / "downloaded project", '[sd_scripts]\npath = "sd"\npython = "evil.sh"\n')
    build_standin_trainer(root / "sd")
    marker = tmp_path / "PWNED"
    hostile_python(root / "evil.sh", marker)
    return root, marker


def trust_file() -> Path:
    return Path(os.environ["XDG_CONFIG_HOME"]) / "kohya-wrap" / "trusted-sd-scripts.json"


def use_command(root: Path, python: Path, project: Path) -> str:
    return shlex.join(["kohya-wrap", "vendor", "use", str(root), "--python", str(python), str(project)])


# ---------------------------------------------------------------------------------------------- read-only commands


@pytest.mark.parametrize("command", READ_ONLY, ids=lambda c: " ".join(c))
def test_read_only_commands_never_run_what_the_spec_names(attack, cli, command):
    project, marker = attack
    result = cli(*command, project)
    assert not marker.exists(), f"{command} ran the spec's Python: {marker.read_text()}"
    assert "Traceback" not in result.err
    assert result.code == 0, result.out + result.err


def test_check_says_why_and_how_to_trust(attack, cli):
    project, marker = attack
    result = cli("check", project, "--json")
    assert result.code == 0, result.err
    findings = json.loads(result.out)["findings"]
    untrusted = next(f for f in findings if f["where"] == "sd_scripts.path")
    assert untrusted["severity"] == "warning"
    assert "you have not trusted" in untrusted["what"] and "(snapshot)" in untrusted["what"]
    assert use_command(project / "sd", project / "evil.sh", project) in untrusted["fix"]
    environment = next(f for f in findings if f["where"] == "environment")
    assert environment["severity"] == "info" and environment["what"].startswith("not probed")
    assert "(snapshot)" in cli("check", project).out
    assert not marker.exists()


def test_nothing_the_untrusted_checkout_names_reaches_the_findings(attack, cli):
    """The tokenizers a checkout names come from its source; an untrusted one's are not read, so a project
    cannot put a repo of its choosing into a fix (`hf download …`)."""
    project, marker = attack
    (project / "sd" / "library" / "strategy_sd.py").write_text('TOKENIZER_ID = "attacker/tokenizer"\n')
    result = cli("check", project)
    assert result.code == 0, result.err
    assert "attacker/tokenizer" not in result.out + result.err
    assert not marker.exists()


def test_a_guessed_venv_inside_the_project_is_not_run_either(tmp_path, cli):
    """No `python` key: the venv beside the checkout (kohya_ss GUI layout) is guessed, here the project's."""
    project = downloaded(tmp_path / "p", '[sd_scripts]\npath = "sd"\n')
    build_standin_trainer(project / "sd")
    marker = tmp_path / "PWNED"
    hostile_python(project / "venv" / "bin" / "python", marker)
    for command in READ_ONLY:
        assert cli(*command, project).code == 0
    assert not marker.exists()
    refused = cli("run", project, "--plain")
    assert refused.code == 2 and use_command(project / "sd", project / "venv/bin/python", project) in refused.err


# ---------------------------------------------------------------------------------------------- run, grid


def test_run_refuses_an_untrusted_sd_scripts_with_the_command_that_trusts_it(attack, cli):
    project, marker = attack
    result = cli("run", project, "--plain")
    assert result.code == 2
    assert "you have not trusted" in result.err and "will not train" in result.err
    assert f"`{use_command(project / 'sd', project / 'evil.sh', project)}`" in result.err
    assert "Traceback" not in result.err
    assert not marker.exists()
    assert not (project / "runs").exists() or not any((project / "runs").iterdir())


def test_grid_refuses_it_too(attack, cli):
    project, marker = attack
    (project / "model" / "rec_lora.safetensors").write_bytes(b"lora")
    result = cli("grid", project, "--weights", "1")
    assert result.code == 2 and "will not render a grid" in result.err
    assert not marker.exists()


def test_after_vendor_use_it_is_trusted_and_used(attack, cli, monkeypatch):
    project, marker = attack
    spec = (project / "kohya-wrap.toml").read_bytes()
    trusted = cli("vendor", "use", project / "sd", "--python", project / "evil.sh", project)
    assert trusted.code == 0, trusted.err
    assert "trusted" in trusted.out
    assert marker.exists()  # the user asked for it: reading its options ran it
    assert (project / "kohya-wrap.toml").read_bytes() == spec  # it already named them: the spec is left alone
    assert not (project / "kohya-wrap.toml.bak").exists()
    entries = json.loads(trust_file().read_text(encoding="utf-8"))["trusted"]
    assert [(e["root"], e["python"]) for e in entries] == [
        (os.path.realpath(project / "sd"), os.path.realpath(project / "evil.sh"))
    ]
    marker.unlink()
    check = cli("check", project)
    assert check.code == 0, check.err
    assert "(project)" in check.out and "not trusted" not in check.out
    assert marker.exists()  # the environment probe ran in it
    monkeypatch.setenv("KOHYA_WRAP_REPLAY", str(FIXTURES / "pipe_steps.jsonl"))
    monkeypatch.setenv("KOHYA_WRAP_REPLAY_SPEED", "50")
    marker.unlink()
    run = cli("run", project, "--plain")
    assert run.code == 0, run.out + run.err
    assert "-m accelerate.commands.launch" in marker.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------- real paths


@pytest.fixture
def outside(tmp_path, cli) -> tuple[Path, Path, Path]:
    """An sd-scripts outside any project, trusted by the user with `vendor use`; its Python leaves a marker."""
    checkout = build_standin_trainer(tmp_path / "kohya_ss" / "sd-scripts")
    marker = tmp_path / "RAN"
    python = hostile_python(tmp_path / "kohya_ss" / "venv" / "bin" / "python", marker)
    mine = downloaded(tmp_path / "mine", "")
    assert cli("vendor", "use", checkout, "--python", python, mine).code == 0
    marker.unlink()
    return checkout, python, marker


def test_a_trusted_pair_reached_through_symlinks_runs_by_its_real_paths(outside, tmp_path, cli):
    checkout, python, marker = outside
    project = downloaded(tmp_path / "linked", '[sd_scripts]\npath = "sd"\npython = "bin/python"\n')
    (project / "sd").symlink_to(checkout)
    (project / "bin").symlink_to(python.parent)  # the folder itself: the same venv
    plan = cli("plan", project, "--json")
    assert plan.code == 0, plan.err
    command = json.loads(plan.out)["command"]
    assert command[0] == str(python)  # never the project's link
    assert command[command.index("--config_file") - 1] == str(checkout / "train_network.py")
    assert marker.exists()


def test_a_symlinked_python_in_another_folder_is_not_the_trusted_venv(outside, tmp_path, cli):
    """Python finds its venv (pyvenv.cfg) beside the path it was started by: a link in the project to the
    trusted interpreter would start it with the project's own venv and site-packages."""
    checkout, python, marker = outside
    project = downloaded(tmp_path / "borrowed", f'[sd_scripts]\npath = "{checkout}"\npython = "v/bin/python"\n')
    (project / "v" / "bin").mkdir(parents=True)
    (project / "v" / "bin" / "python").symlink_to(python)
    (project / "v" / "pyvenv.cfg").write_text("home = /usr/bin\n", encoding="utf-8")
    for command in READ_ONLY:
        assert cli(*command, project).code == 0
    assert not marker.exists()
    assert cli("run", project, "--plain").code == 2


def test_a_python_inside_the_project_with_a_trusted_checkout_outside_is_untrusted(outside, attack, cli):
    checkout, _, marker = outside
    project, project_marker = attack
    spec = project / "kohya-wrap.toml"
    spec.write_text(spec.read_text(encoding="utf-8").replace('path = "sd"', f'path = "{checkout}"'), encoding="utf-8")
    for command in READ_ONLY:
        assert cli(*command, project).code == 0
    assert not marker.exists() and not project_marker.exists()
    refused = cli("run", project, "--plain")
    assert refused.code == 2 and use_command(checkout, project / "evil.sh", project) in refused.err


# ---------------------------------------------------------------------------------------------- the user's own


def test_the_environment_variables_stay_trusted(on_standin, attack, cli, monkeypatch):
    """KOHYA_WRAP_SD_SCRIPTS/KOHYA_WRAP_SD_PYTHON are the user's; a spec naming exactly them is trusted too,
    while a spec pairing that checkout with the project's own Python is not."""
    project, marker = attack
    monkeypatch.setenv("KOHYA_WRAP_SD_PYTHON", str(hostile_python(project.parent / "env" / "python", marker)))
    spec = project / "kohya-wrap.toml"
    text = spec.read_text(encoding="utf-8")
    spec.write_text(text.split("[sd_scripts]")[0], encoding="utf-8")
    check = cli("check", project)
    assert check.code == 0 and "(environment)" in check.out
    assert marker.exists()
    marker.unlink()
    spec.write_text(text.replace('path = "sd"', f'path = "{on_standin}"'), encoding="utf-8")
    assert "you have not trusted" in cli("check", project).out and not marker.exists()
    spec.write_text(
        text.replace('path = "sd"', f'path = "{on_standin}"').replace(
            'python = "evil.sh"', f'python = "{os.environ["KOHYA_WRAP_SD_PYTHON"]}"'
        ),
        encoding="utf-8",
    )
    check = cli("check", project)  # the same pair: its cached options and probe are used
    assert check.code == 0 and "(project)" in check.out and "not trusted" not in check.out


def test_a_wrong_shaped_trust_file_trusts_nothing(attack, cli):
    project, marker = attack
    for text in ("not json", "[]", '{"trusted": {"root": "x"}}', '{"trusted": [1, {"root": 2}]}', "[" * 50_000):
        trust_file().parent.mkdir(parents=True, exist_ok=True)
        trust_file().write_text(text, encoding="utf-8")
        result = cli("check", project)
        assert result.code == 0 and "you have not trusted" in result.out, result.err
    assert not marker.exists()
    assert cli("vendor", "use", project / "sd", "--python", project / "evil.sh", project).code == 0
    assert len(json.loads(trust_file().read_text(encoding="utf-8"))["trusted"]) == 1


def test_nothing_a_spec_names_is_run_by_the_library_either(attack):
    from kohya_wrap.errors import KohyaWrapError
    from kohya_wrap.sdscripts.locate import locate_sd_scripts
    from kohya_wrap.sdscripts.preflight import ProbeError, probe_environment
    from kohya_wrap.sdscripts.schema import live_schema, load_option_schema

    project, marker = attack
    sd = locate_sd_scripts(project, {"path": "sd", "python": "evil.sh"})
    assert sd.origin == "project" and sd.usable and not sd.trusted and not sd.runnable
    assert load_option_schema(sd).source.endswith("(snapshot)")
    with pytest.raises(KohyaWrapError, match="not trusted"):
        live_schema(sd)
    with pytest.raises(ProbeError, match="not trusted"):
        probe_environment(sd, ["torch"])
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------- runs show


@pytest.mark.parametrize("run_id", ["../../outside", "..", "/tmp", "../outside"])
def test_runs_show_never_reads_a_record_outside_the_project(tmp_path, cli, run_id):
    project = downloaded(tmp_path / "p", "")
    (project / "runs").mkdir()
    for folder in (tmp_path / "outside", tmp_path / "p" / "outside"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "manifest.json").write_text('{"secret": true}', encoding="utf-8")
    result = cli("runs", "show", run_id, project)
    assert result.code == 2 and "no such run record" in result.err
    assert "secret" not in result.out + result.err
