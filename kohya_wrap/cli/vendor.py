"""`kohya-wrap vendor …`: install, pin, upgrade and inspect the sd-scripts that trains."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kohya_wrap.cli.output import echo, echo_json
from kohya_wrap.errors import ExitCode, KohyaWrapError

if TYPE_CHECKING:
    from kohya_wrap.sdscripts.schema import OptionSchema
    from kohya_wrap.sdscripts.schemadiff import SchemaDiff


class PhaseReporter:
    """Phase progress: a spinner while a phase runs on a terminal, plain lines when piped."""

    def __init__(self) -> None:
        from kohya_wrap.console import is_interactive, out

        self.console = out()
        self.live = is_interactive()
        self.status = None

    def __call__(self, message: str) -> None:
        if message.endswith("…"):
            if self.live:
                self.status = self.console.status(message)
                self.status.start()
            else:
                echo(message)
            return
        if self.status is not None:
            self.status.stop()
            self.status = None
        echo(message)

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()


@click.group()
@click.option(
    "--vendor-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Home of the checkout, its venv and the lock (default: KOHYA_WRAP_VENDOR, or the vendor/ of a source "
    "checkout, or ~/.local/share/kohya-wrap/vendor).",
)
def vendor(vendor_dir: Path | None) -> None:
    """Install, pin, upgrade and inspect sd-scripts (a git checkout plus its own venv)."""
    if vendor_dir is not None:
        os.environ["KOHYA_WRAP_VENDOR"] = str(vendor_dir.expanduser().absolute())


def _source(value: str | None) -> str | None:
    """--source: a local clone or mirror is relative to the current folder (recorded absolute in the
    lock, so a later fetch from anywhere finds it); a URL as it is."""
    if value is None or "://" in value or (":" in value and not Path(value).expanduser().exists()):
        return value
    return str(Path(value).expanduser().absolute())


def _vendor():
    from kohya_wrap.sdscripts.vendor import Vendor

    return Vendor.default()


def _run_phases(work) -> Any:
    reporter = PhaseReporter()
    try:
        return work(reporter)
    finally:
        reporter.close()


@vendor.command("install")
@click.option("--ref", help="Tag, branch or commit to pin (default: the lock's).")
@click.option("--source", help="Git URL, local path or bare mirror to clone from (default: the lock's).")
@click.option(
    "--exclude",
    multiple=True,
    metavar="PATTERN",
    help="Leave a path out of the checkout (repeatable); bitsandbytes_windows/ is left out except on Windows.",
)
@click.option(
    "--torch",
    "torch",
    default=None,
    metavar="SPEC",
    help='Torch packages for the venv (default: "torch==2.14.1 torchvision==0.29.1"; "none" skips).',
)
@click.option(
    "--torch-index-url",
    metavar="URL",
    help="Package index for torch, e.g. https://download.pytorch.org/whl/cu128 for a CUDA 12.8 build.",
)
@click.option(
    "--python", "base_python", default=sys.executable, show_default="this Python", help="Python that creates the venv."
)
@click.option(
    "--pip-constraint",
    "constraints",
    multiple=True,
    metavar="SPEC",
    help='An extra pin for the venv\'s requirements, e.g. "transformers==4.44.0" (repeatable; kept in the lock). '
    "Pins an older release needs with today's PyPI (numpy<2 for v0.8.x-v0.9.x) are added by kohya-wrap itself.",
)
@click.option("--force", is_flag=True, help="Overwrite local changes in the checkout.")
def vendor_install(ref, source, exclude, torch, torch_index_url, base_python, constraints, force) -> int:
    """Clone (or fetch) sd-scripts, check out the pinned commit, build its venv, read its options."""
    from kohya_wrap.sdscripts.vendor import DEFAULT_TORCH, InstallOptions, install

    vendor = _vendor()
    state = vendor.state()
    options = InstallOptions(
        ref,
        _source(source),
        tuple(exclude),
        torch or state.get("torch") or DEFAULT_TORCH,
        torch_index_url,
        base_python,
        force,
        tuple(constraints) or None,  # none given: the lock's (else those the venv has)
    )
    lock = _run_phases(lambda report: install(vendor, options, report))
    echo(
        f"sd-scripts {lock.ref} ({lock.commit[:12]}) is installed in {vendor.root}; pinned in {vendor.lock_path}",
        style="bold green",
    )
    return ExitCode.OK


@vendor.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print as one JSON object.")
@click.option("--no-torch", is_flag=True, help="Skip importing torch in the venv (a few seconds).")
def vendor_status(as_json: bool, no_torch: bool) -> int:
    """Source, ref, commit, local changes, venv, torch and device; whether the checkout matches the lock,
    and the pin kohya-wrap ships where the lock differs from it."""
    from kohya_wrap.sdscripts.vendor import status

    info = status(_vendor(), with_torch=not no_torch)
    if as_json:
        echo_json(info)
        return ExitCode.OK
    lock = info["lock"]
    echo(f"vendor dir: {info['vendor_dir']}")
    echo(f"lock:       {lock['ref']} {lock['commit'][:12]} from {lock['source']}" if lock else "lock:       none")
    pin = info["pin"]
    if pin and lock and not info["matches_pin"]:  # installed another version than the one kohya-wrap ships
        shipped = f"{pin['ref']} {pin['commit'][:12]}"
        echo(f"pin:        {shipped} shipped with kohya-wrap (the lock differs)", style="yellow")
    if lock and (lock["pip_constraints"] or lock["compat_constraints"]):
        pins = [
            *lock["pip_constraints"],
            *(f"{c} (kohya-wrap: this release's known needs)" for c in lock["compat_constraints"]),
        ]
        echo(f"pip pins:   {', '.join(pins)}")
    if not info["installed"]:
        echo(f"checkout:   not installed ({info['checkout']}) — run `kohya-wrap vendor install`", style="yellow")
    else:
        echo(f"checkout:   {info['describe']} {info['commit'][:12]} from {info['source']}")
        echo(
            f"matches lock: {'yes' if info['matches_lock'] else 'NO'}",
            style=None if info["matches_lock"] else "bold red",
        )
        echo(f"local changes: {', '.join(info['dirty']) if info['dirty'] else 'none'}")
    echo(f"python:     {info['python']}" + ("" if info["python_present"] else " (missing)"))
    torch = info.get("torch")
    if torch:
        echo(
            f"torch:      {torch['torch']} on {torch['device']}"
            if "torch" in torch
            else f"torch:      not importable ({torch['error']})"
        )
    return ExitCode.OK


@vendor.command("upgrade")
@click.option("--ref", required=True, help="The tag, branch or commit to move to.")
@click.option("--source", help="Fetch from here instead of the lock's source.")
@click.option(
    "--exclude", multiple=True, metavar="PATTERN", help="Leave another path out of the checkout (repeatable)."
)
@click.option(
    "--pip-constraint",
    "constraints",
    multiple=True,
    metavar="SPEC",
    help="Replace the venv's extra pins (repeatable; reinstalls the requirements). Pins a release needs with "
    "today's PyPI (numpy<2 for v0.8.x-v0.9.x) are added by kohya-wrap itself.",
)
@click.option("--force", is_flag=True, help="Overwrite local changes in the checkout.")
@click.argument("directory", required=False, default=".", type=click.Path(path_type=Path))
def vendor_upgrade(ref, source, exclude, constraints, force, directory: Path) -> int:
    """Move to another sd-scripts version: fetch, check out, reinstall requirements if they changed,
    update the lock, show the option diff, re-check the project in DIRECTORY (default: here)."""
    from kohya_wrap.paths import SPEC_FILENAME
    from kohya_wrap.sdscripts.schema import live_schema
    from kohya_wrap.sdscripts.schemadiff import diff_schemas
    from kohya_wrap.sdscripts.vendor import upgrade

    vendor = _vendor()
    try:  # the current version's options, for the diff; a broken venv has none to offer
        before = live_schema(vendor.sd_scripts()) if vendor.sd_scripts().usable else None
    except KohyaWrapError:
        before = None
    result = _run_phases(
        lambda report: upgrade(vendor, ref, _source(source), tuple(exclude), force, tuple(constraints) or None, report)
    )
    after = live_schema(vendor.sd_scripts())
    echo(
        f"sd-scripts {result.old.ref} ({result.old.commit[:12]}) → {result.new.ref} ({result.new.commit[:12]}); lock "
        "updated",
        style="bold green",
    )
    if before is not None:
        _print_diff(diff_schemas(before, after))
    if (directory / SPEC_FILENAME).is_file() or directory.is_file():
        _recheck(directory)
    return ExitCode.OK


def _recheck(directory: Path) -> None:
    from kohya_wrap.errors import SpecError
    from kohya_wrap.spec.load import load_project

    try:
        loaded = load_project(directory)
    except SpecError as exc:
        echo(
            f"your project does not validate against the new version ({len(exc.problems)} problem(s)):",
            style="bold yellow",
        )
        for problem in exc.problems:
            echo(f"  {problem.line()}")
        echo("fix the spec (or upgrade back); `kohya-wrap check` shows this again", style="yellow")
        return
    echo(f"{loaded.layout.spec_file}: valid for {loaded.schema.source}", style="green")


def _option_line(option) -> str:
    kind = option.type + ("[]" if option.is_list else "")
    text = f"{option.name:<40} {kind:<22} default {option.default!r}"
    if option.choices:
        text += "  choices: " + ", ".join(map(str, option.choices))
    return text


@vendor.command("options")
@click.option("--script", default="train_network.py", show_default=True, help="Training script whose options to list.")
@click.option("--grep", metavar="WORD", help="Only options whose name contains WORD.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def vendor_options(script: str, grep: str | None, as_json: bool) -> int:
    """List the options the installed sd-scripts accepts, with type, default and choices."""
    from kohya_wrap.sdscripts.locate import locate_sd_scripts
    from kohya_wrap.sdscripts.schema import load_option_schema

    schema = load_option_schema(locate_sd_scripts())
    options = schema.options(script if script.endswith(".py") else f"{script}.py")
    selected = [o for name, o in sorted(options.items()) if not grep or grep.lower() in name.lower()]
    if as_json:
        echo_json(
            {
                "schema": schema.source,
                "script": script,
                "options": [
                    {
                        "name": o.name,
                        "type": o.type,
                        "nargs": o.nargs,
                        "default": o.default,
                        "choices": list(o.choices) if o.choices else None,
                    }
                    for o in selected
                ],
            }
        )
        return ExitCode.OK
    echo(f"# {script} of {schema.source}: {len(selected)} of {len(options)} options")
    for option in selected:
        echo(_option_line(option))
    return ExitCode.OK


def _print_diff(diff: "SchemaDiff") -> None:
    echo(f"options: {diff.a} → {diff.b}", style="bold")
    if diff.empty:
        echo("  no differences")
    for script in diff.scripts:
        if script.status != "changed":
            count = len(script.added or script.removed)
            echo(
                f"  {script.script}: {'new script' if script.status == 'added' else 'script removed'} ({count} options)"
            )
            continue
        if script.empty:
            continue
        echo(
            f"  {script.script}: {len(script.added)} added, {len(script.removed)} removed, {len(script.changed)} "
            "changed"
        )
        for option in script.added:
            echo(f"    + {_option_line(option)}", style="green")
        for option in script.removed:
            echo(f"    - {option.name}", style="red")
        for name, fields in script.changed:
            details = "; ".join(f"{k} {a!r} → {b!r}" for k, (a, b) in fields.items())
            echo(f"    ~ {name}: {details}", style="yellow")
    for level in diff.dataset_added:
        added, removed, changed = (
            diff.dataset_added[level],
            diff.dataset_removed.get(level, ()),
            diff.dataset_changed.get(level, ()),
        )
        if added or removed or changed:
            parts = [f"+{k}" for k in added] + [f"-{k}" for k in removed] + [f"~{k} ({a} → {b})" for k, a, b in changed]
            echo(f"  dataset_config [{level}]: " + ", ".join(parts))


@vendor.command("diff")
@click.argument("ref_a")
@click.argument("ref_b")
@click.argument("directory", required=False, default=".", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def vendor_diff(ref_a: str, ref_b: str, directory: Path, as_json: bool) -> int:
    """Options added, removed and changed between two sd-scripts refs, and what would break in the
    project in DIRECTORY (default: here), with a suggested rewrite."""
    from kohya_wrap.sdscripts.schemadiff import diff_schemas
    from kohya_wrap.sdscripts.vendor import schema_at_ref

    vendor = _vendor()
    if not (vendor.checkout / ".git").exists():
        raise KohyaWrapError("sd-scripts is not installed here", "run `kohya-wrap vendor install` first")
    a, b = schema_at_ref(vendor, ref_a), schema_at_ref(vendor, ref_b)
    diff = diff_schemas(a, b)
    breaks = _project_breaks(directory, b)
    if as_json:
        echo_json(diff.as_dict() | {"project": breaks})
        return ExitCode.OK
    _print_diff(diff)
    if breaks is not None:
        if breaks["problems"]:
            echo(f"{breaks['spec']}: would break on {ref_b}:", style="bold yellow")
            for problem in breaks["problems"]:
                echo(f"  {problem}")
        else:
            echo(f"{breaks['spec']}: valid on {ref_b}", style="green")
    return ExitCode.OK


def _project_breaks(directory: Path, schema: "OptionSchema") -> dict[str, Any] | None:
    from kohya_wrap.errors import SpecError
    from kohya_wrap.paths import SPEC_FILENAME
    from kohya_wrap.spec.load import load_project

    spec_file = directory if directory.is_file() else directory / SPEC_FILENAME
    if not spec_file.is_file():
        return None
    try:
        load_project(spec_file, schema=schema)
    except SpecError as exc:
        return {"spec": str(spec_file), "problems": [p.line() for p in exc.problems]}
    return {"spec": str(spec_file), "problems": []}


@vendor.command("use")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--python",
    "python",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The Python of its venv (default: venv/bin/python beside or inside PATH).",
)
@click.argument("directory", required=False, default=".", type=click.Path(path_type=Path))
def vendor_use(path: Path, python: Path | None, directory: Path) -> int:
    """Train the project in DIRECTORY (default: here) with an existing sd-scripts checkout at PATH, e.g.
    the one inside a kohya_ss GUI install; recorded in its spec's [sd_scripts] (old spec kept as .bak).
    Also trusts PATH with that Python for you: kohya-wrap runs a checkout a spec names only once trusted."""
    from kohya_wrap.sdscripts.locate import SdScripts, guess_python, trust, trust_key
    from kohya_wrap.sdscripts.schema import live_schema
    from kohya_wrap.spec.edit import set_table
    from kohya_wrap.spec.load import find_spec_file, read_toml

    spec_file = find_spec_file(directory)
    root = path.expanduser().absolute()
    if not (root / "train_network.py").is_file():
        raise KohyaWrapError(
            f"{root}: not an sd-scripts checkout (no train_network.py)", "give the folder that holds train_network.py"
        )
    interpreter = python.expanduser().absolute() if python else guess_python(root)
    if not interpreter.is_file():
        raise KohyaWrapError(
            f"no Python found for {root} (looked for {interpreter})", "pass --python /path/to/its/venv/bin/python"
        )
    # The user names these on the command line: reading their options runs them, and trusts them.
    schema = live_schema(SdScripts(root, interpreter, "project", trusted=True))
    trust(root, interpreter)
    count = sum(len(o) for o in schema.scripts.values())
    named = read_toml(spec_file).get("sd_scripts")
    if _names(named, spec_file.parent) == trust_key(root, interpreter):
        echo(
            f"{spec_file}: [sd_scripts] already names {root}; trusted it with {interpreter} ({schema.source}, "
            f"{count} options)"
        )
        return ExitCode.OK
    set_table(spec_file, "sd_scripts", {"path": str(root), "python": str(interpreter)})
    echo(
        f"{spec_file}: [sd_scripts] now uses {root} ({schema.source}, {count} options), trusted with "
        f"{interpreter}; previous spec kept as {spec_file.name}.bak"
    )
    return ExitCode.OK


def _names(setting: Any, project_root: Path) -> tuple[str, str] | None:
    """The trust key of the pair a spec's raw [sd_scripts] names, or None."""
    from kohya_wrap.sdscripts.locate import locate_sd_scripts, trust_key

    if not isinstance(setting, dict) or not setting.get("path"):
        return None
    sd = locate_sd_scripts(project_root, setting)
    return trust_key(sd.root, sd.python)
