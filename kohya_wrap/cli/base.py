"""The `kohya-wrap` group, the options commands share, and the one error boundary (`main`).

Only click and our errors are imported at module level: `kohya-wrap --help` stays fast and free of
torch/transformers/pydantic; each command imports the core it calls when it runs.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from kohya_wrap import __version__
from kohya_wrap.errors import ExitCode, KohyaWrapError

UNSET_HELP = "Remove a value the spec or its preset sets, e.g. --unset training.max_train_epochs (repeatable)."
SET_HELP = "Override a spec value for this command, e.g. --set training.learning_rate=2e-4 (repeatable)."


class _State:
    debug = False


SEVERITY_STYLE = {"error": ("✗", "red"), "warning": ("!", "yellow"), "info": ("·", "cyan")}


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="kohya-wrap")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def cli(debug: bool) -> None:
    """Train Stable Diffusion LoRAs with kohya's sd-scripts: one validated, reproducible path.

    \b
    Start here:
      kohya-wrap init my-lora --preset sd15-character --token mytoken --class woman --images ~/photos
      kohya-wrap check my-lora
      kohya-wrap plan my-lora
    """
    _State.debug = debug


def print_findings(findings, indent: str = "  ", short: bool = False) -> None:
    """Findings as `✗ where: what — fix` lines (`short`: without the where, under a heading that says it)."""
    from rich.text import Text

    from kohya_wrap.console import out

    for finding in findings:
        mark, style = SEVERITY_STYLE[finding.severity]
        line = finding.line().split(": ", 1)[-1] if short and finding.where else finding.line()
        out().print(Text(f"{indent}{mark} ", style=style) + Text(line))


def project_dir_argument(func):
    return click.argument("directory", required=False, default=".", type=click.Path(path_type=Path))(func)


def set_option(func):
    """--set KEY=VALUE and --unset KEY (both repeatable), handed to the command as one `overrides` tuple
    (an unset as "unset:KEY", which spec/overrides.py reads)."""

    @functools.wraps(func)
    def command(*args, overrides: tuple[str, ...] = (), unsets: tuple[str, ...] = (), **kwargs):
        return func(*args, overrides=tuple(overrides) + tuple(f"unset:{key}" for key in unsets), **kwargs)

    command = click.option("--unset", "unsets", multiple=True, metavar="KEY", help=UNSET_HELP)(command)
    return click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)(command)


def print_error(lines: list[str]) -> None:
    from rich.text import Text

    from kohya_wrap.console import err

    first, *rest = lines
    err().print(Text("error: ", style="bold red") + Text(first))
    for line in rest:
        err().print(Text(line))


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        code = cli.main(args=args, prog_name="kohya-wrap", standalone_mode=False)
    except click.exceptions.Abort:
        code = ExitCode.INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except KeyboardInterrupt:
        print_error(["interrupted"])
        code = ExitCode.INTERRUPTED
    except KohyaWrapError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        print_error(exc.lines())
        code = exc.exit_code
    except Exception as exc:  # the boundary: anything unexpected is a bug, shown briefly
        if debug:
            raise
        print_error(
            [
                f"internal error: {type(exc).__name__}: {exc}",
                "run again with --debug for the traceback, and please report it",
            ]
        )
        code = ExitCode.FAILED
    sys.exit(int(code or 0))
