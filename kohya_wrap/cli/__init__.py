"""The `kohya-wrap` command line: thin click commands over the cores (each callable from Python and
returning data), registered here from one list, and the one error boundary in `main`."""

from __future__ import annotations

import sys

try:
    from kohya_wrap.cli import (
        caption,
        compare,
        grid,
        lint,
        prep,
        presets,
        project,
        report,
        run,
        sweep,
        tags,
        vendor,
        watch,
    )
    from kohya_wrap.cli.base import cli, main
except KeyboardInterrupt:  # Ctrl-C while the command line loads, before `main` can catch it: exit as it does
    sys.stderr.write("\nerror: interrupted\n")
    raise SystemExit(130) from None

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
    sweep.sweep,
    sweep.queue,
    sweep.sweep_trial,
    watch.watch,
    grid.grid,
    report.report,
    compare.compare,
    vendor.vendor,
)
for _command in COMMANDS:
    cli.add_command(_command)

__all__ = ["COMMANDS", "cli", "main"]
