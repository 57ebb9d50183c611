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
from kohya_wrap.errors import ExitCode, clip, user_error

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


def training_output_options(func):
    """--plain, --json and --grace: how a command that trains (run, sweep, queue) shows it and stops it."""
    func = click.option(
        "--grace",
        default=30.0,
        show_default=True,
        type=click.FloatRange(0, 3600),
        help="Seconds Ctrl-C (or SIGTERM, SIGHUP) waits for sd-scripts to stop before SIGTERM/SIGKILL.",
    )(func)
    func = click.option("--json", "as_json", is_flag=True, help="One JSON object per event (NDJSON).")(func)
    return click.option(
        "--plain", is_flag=True, help="One line per event instead of the live dashboard (the default when piped)."
    )(func)


def print_error(lines: list[str]) -> None:
    from rich.text import Text

    from kohya_wrap.console import err

    first, *rest = lines
    err().print(Text("error: ", style="bold red") + Text(clip(first)))
    for line in rest:
        err().print(Text(clip(line)))


def main(argv: list[str] | None = None) -> None:
    """The one error boundary: a KohyaWrapError — or a failure of the machine or the user's files (a full
    disk, no permission, a file that is not UTF-8, …: `errors.user_error`) — is one line per problem on
    stderr and its exit code; Ctrl-C is exit 130 (a stop signal 128 + its number), never a traceback;
    anything else is an internal error, exit 1 (the traceback with --debug)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        code = _run(args, "--debug" in args)
    except KeyboardInterrupt as exc:  # another Ctrl-C while the first (or an error) was being reported
        code = getattr(exc, "exit_code", ExitCode.INTERRUPTED)
    sys.exit(int(code or 0))


def _run(args: list[str], debug: bool) -> int:
    try:
        return cli.main(args=args, prog_name="kohya-wrap", standalone_mode=False)
    except click.exceptions.Abort as exc:  # click's form of a Ctrl-C (or a stop signal) during a command
        return _interrupted(exc.__cause__ or exc.__context__)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt as exc:
        return _interrupted(exc)
    except BrokenPipeError:  # the reader of our output went away (`kohya-wrap … | head`): nothing to say
        return ExitCode.FAILED
    except Exception as exc:  # the boundary: what the user can fix is one line; anything else is a bug
        error = user_error(exc)
        if error is None:
            if debug:
                raise
            print_error(
                [
                    f"internal error: {type(exc).__name__}: {exc}",
                    "run again with --debug for the traceback, and please report it",
                ]
            )
            return ExitCode.FAILED
        if debug:
            import traceback

            traceback.print_exc()
        print_error(error.lines())
        return error.exit_code


def _interrupted(exc: BaseException | None) -> int:
    """Ctrl-C (or SIGTERM/SIGHUP during a run: launch.signals.Signalled) as one line and its exit code:
    130, or 128 + the signal's number."""
    name = getattr(exc, "name", None) if isinstance(exc, KeyboardInterrupt) else None
    print_error([f"stopped by {name}" if isinstance(name, str) else "interrupted"])
    return int(getattr(exc, "exit_code", ExitCode.INTERRUPTED))
