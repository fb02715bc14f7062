"""Jinja2 set-up: autoescaping everywhere, gettext through the i18n extension.

The gettext callables read the request's language from a context variable,
so one environment serves every language and `{% trans %}` blocks and
``_()`` calls in templates translate per request.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from web.deps import template_context_key
from web.i18n import jsstrings, labels
from web.i18n import translate as i18n

TEMPLATE_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"


def _json_for_script(value: Any) -> Markup:
    """JSON safe inside a <script type="application/json"> element."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # noqa: S704 - every markup-significant character is escaped above


@cache
def static_url(name: str) -> str:
    """A static file's URL with a content hash, so browsers never run stale code."""
    path = (STATIC_DIR / name).resolve()
    if STATIC_DIR.resolve() not in path.parents:
        raise ValueError(name)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return f"/static/{name}?v={digest}"


def build_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(["html", "xml", "svg"], default=True),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=lambda message, **values: i18n._(message, **values),
        ngettext=lambda singular, plural, count, **values: i18n.ngettext(
            singular, plural, count, **values
        ),
        pgettext=lambda context, message, **values: i18n.pgettext(context, message, **values),
        newstyle=True,
    )
    env.filters.update(
        datetime=i18n.fmt_datetime,
        time=i18n.fmt_time,
        date=i18n.fmt_date,
        number=i18n.fmt_number,
        percent=i18n.fmt_percent,
        duration=i18n.fmt_duration,
        clock=i18n.fmt_clock,
        language_label=i18n.language_label,
        tojson_script=_json_for_script,
    )
    env.globals.update(
        labels=labels,
        language_name=i18n.language_name,
        static=static_url,
        js_strings=jsstrings.strings,
    )
    return env


def render(
    request: web.Request,
    env: Environment,
    template: str,
    context: dict[str, Any],
    *,
    status: int = 200,
) -> web.Response:
    values = dict(request.get(template_context_key, {}))
    values.update(context)
    html = env.get_template(template).render(values)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
