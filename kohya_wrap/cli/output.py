"""The two ways commands print: a line of text (styled on a terminal, plain when piped) or JSON."""

from __future__ import annotations

import json
from typing import Any

import click


def echo(*parts: Any, style: str | None = None) -> None:
    from rich.text import Text

    from kohya_wrap.console import out

    out().print(Text("".join(str(p) for p in parts), style=style or ""))


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))
