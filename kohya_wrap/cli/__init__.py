"""The `kohya-wrap` command line: thin click commands over the cores (each callable from Python and
returning data), registered here from one list, and the one error boundary in `main`."""

from __future__ import annotations

from kohya_wrap.cli import caption, grid, lint, prep, presets, project, report, run, tags, vendor
from kohya_wrap.cli.base import cli, main

COMMANDS = (
    project.init,
    project.check,
    project.plan,
    project.export,
    presets.presets,
    prep.prep,
    lint.lint,
    caption.caption,
    tags.tags,
    run.run,
    run.runs,
    run.demo,
    grid.grid,
    report.report,
    vendor.vendor,
)
for _command in COMMANDS:
    cli.add_command(_command)

__all__ = ["COMMANDS", "cli", "main"]
