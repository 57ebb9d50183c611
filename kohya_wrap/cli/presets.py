"""`kohya-wrap presets list / show / copy`."""

from __future__ import annotations

from pathlib import Path

import click

from kohya_wrap.cli.output import echo, echo_json
from kohya_wrap.errors import ExitCode


@click.group()
def presets() -> None:
    """List, show and copy presets (built-in, KOHYA_WRAP_PRESETS, ~/.config/kohya-wrap/presets)."""


@presets.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def presets_list(as_json: bool) -> int:
    """Every preset with where it comes from."""
    from kohya_wrap.presets import all_presets

    found = all_presets()
    if as_json:
        echo_json([{"name": p.name, "origin": p.origin, "path": str(p.path), "summary": p.summary} for p in found])
        return ExitCode.OK
    width = max((len(p.name) for p in found), default=0)
    for preset in found:
        echo(f"{preset.name:<{width}}  {preset.origin:<8}  {preset.summary}")
    return ExitCode.OK


@presets.command("show")
@click.argument("name")
def presets_show(name: str) -> int:
    """Print a preset's file."""
    from kohya_wrap.presets import find_preset

    preset = find_preset(name)
    click.echo(f"# {preset.path}")
    click.echo(preset.path.read_text(encoding="utf-8"), nl=False)
    return ExitCode.OK


@presets.command("copy")
@click.argument("name")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite PATH.")
def presets_copy(name: str, path: Path, force: bool) -> int:
    """Copy a preset to PATH (a file or folder) to make your own."""
    from kohya_wrap.presets import copy_preset

    written = copy_preset(name, path.expanduser(), force=force)
    echo(f"wrote {written}")
    return ExitCode.OK
