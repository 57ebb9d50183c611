"""The report's one Jinja2 environment, so that every piece of its HTML and SVG comes from a template
with autoescape on: a value from the user or a log (a caption, a prompt, a grid title, a log line) is
escaped because nothing can put it on the page any other way. Markup our own templates produced (the
chart SVG, a section) travels on as `markupsafe.Markup` and is not escaped twice.

The templates ship inside the package (kohya_wrap/report/templates/, part of the wheel) and are loaded
once per process, compiled on first use.
"""

from __future__ import annotations

import html
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup


def _escaped(value: Any) -> Markup:
    """How every `{{ value }}` is written: markup as it is, anything else escaped as html.escape does
    (&quot; and &#x27; for quotes, as the page always had, where markupsafe alone writes &#34; and &#39;)."""
    if hasattr(value, "__html__"):
        return Markup(value.__html__())
    return Markup(html.escape(str(value), quote=True))


@lru_cache(maxsize=1)
def environment() -> Environment:
    return Environment(
        loader=PackageLoader("kohya_wrap.report", "templates"),
        autoescape=True,  # every template, whatever its name ends with
        finalize=_escaped,  # autoescape's escaping, with the entities html.escape writes
        undefined=StrictUndefined,  # a misspelt variable fails loudly instead of leaving a hole in the page
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,  # the templates do not change while a report is written
    )


def render(name: str, **context: Any) -> Markup:
    """templates/`name` rendered with `context` (escaped by the template engine)."""
    return Markup(environment().get_template(name).render(**context))
