"""`kohya-wrap report`: one run's record → a self-contained HTML page in runs/<id>/report.html."""

from __future__ import annotations

from pathlib import Path

import click

from kohya_wrap.cli.base import project_dir_argument
from kohya_wrap.cli.output import echo, echo_json
from kohya_wrap.errors import ExitCode


@click.command()
@project_dir_argument
@click.option(
    "--run", "run_id", metavar="ID", help="This run (default: the newest one with a record; ids: `kohya-wrap runs`)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def report(directory: Path, run_id: str | None, as_json: bool) -> int:
    """Write an HTML report of a run to runs/<id>/report.html: summary, loss and learning-rate charts,
    sample images, grids, dataset thumbnails, checkpoints, settings, manifest. It opens from disk with
    no server and no network (images embedded, charts inline SVG)."""
    from kohya_wrap.report import pick_run, size_text, write_report
    from kohya_wrap.spec.load import find_spec_file

    root = find_spec_file(directory).parent
    run_dir = pick_run(root, run_id)
    path = write_report(run_dir)
    size = path.stat().st_size
    if as_json:
        echo_json({"run_id": run_dir.name, "report": str(path), "bytes": size})
        return ExitCode.OK
    echo(f"report: {path} ({size_text(size)})")
    return ExitCode.OK
