"""Typed keys of what the app factory puts on the application."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
from jinja2 import Environment

from dialer.runtime.bootstrap import Runtime
from web.config import WebConfig

if TYPE_CHECKING:
    from web.live.sse import LiveHub

runtime_key = web.AppKey("runtime", Runtime)
config_key = web.AppKey("config", WebConfig)
templates_key = web.AppKey("templates", Environment)
hub_key: web.AppKey[LiveHub] = web.AppKey("hub")
# What every page's template sees (user, CSRF token, language...), set per request.
template_context_key = web.RequestKey("template_context", dict[str, Any])
