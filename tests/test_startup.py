"""`kohya-wrap --help` stays fast: no torch, transformers, gitpython or pydantic at start-up."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "torch",
    "transformers",
    "git",
    "pydantic",
    "huggingface_hub",
    "PIL",
    "tokenizers",
    "jinja2",
    "filelock",
    "pyvips",
)


def test_help_imports_nothing_heavy():
    code = (
        "import sys, json\n"
        "from kohya_wrap.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
    assert "init" in result.stdout and "plan" in result.stdout


ALL_COMMANDS = {
    "init",
    "check",
    "plan",
    "export",
    "presets",
    "prep",
    "lint",
    "caption",
    "tags",
    "run",
    "runs",
    "watch",
    "demo",
    "grid",
    "report",
    "compare",
    "sweep",
    "queue",
    "sweep-trial",  # hidden: one trial of a sweep, what a Ray task runs
    "vendor",
}


def test_every_command_is_registered_by_importing_the_cli():
    """In a fresh interpreter, importing the CLI alone registers every command (one list in cli/__init__)."""
    code = "import json; from kohya_wrap.cli import cli; print(json.dumps(sorted(cli.commands)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert set(json.loads(result.stdout)) == ALL_COMMANDS


def test_every_command_has_help():
    from click.testing import CliRunner

    from kohya_wrap.cli import cli

    assert set(cli.commands) == ALL_COMMANDS
    runner = CliRunner()
    names = [[name] for name in cli.commands] + [["presets", name] for name in cli.commands["presets"].commands]
    for name in names:
        result = runner.invoke(cli, [*name, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, name


def test_python_dash_m_and_version():
    result = subprocess.run([sys.executable, "-m", "kohya_wrap", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and "kohya-wrap" in result.stdout


def test_every_command_is_documented_in_the_readme():
    from pathlib import Path

    from kohya_wrap.cli import cli

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    names = [name for name, command in cli.commands.items() if name != "presets" and not command.hidden] + [
        f"presets {name}" for name in cli.commands["presets"].commands
    ]
    for name in names:
        assert f"kohya-wrap {name}" in readme, name
