"""The aiohttp application factory: pages, JSON API and live stream.

Nothing runs at import time.  ``create_app(deps)`` wires the pages and
the API to the services in ``deps``, compiles the translation catalogs, and
registers the live hub as a ``cleanup_ctx`` so it starts and stops with
the app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from web.config import WebConfig
from web.deps import WebDeps, config_key, deps_key, hub_key, templates_key
from web.i18n import translate as i18n
from web.input_guard import input_guard
from web.live.sse import LiveHub, run_hub
from web.routes import account, api, health, ops, pages
from web.routes import contacts as contact_routes
from web.routes import notifications as notification_routes
from web.routes import tasks as task_routes
from web.routes import teams as team_routes
from web.routes.metrics import setup as setup_metrics
from web.security import context_middleware, error_middleware, security_headers
from web.templating import build_environment

STATIC_DIR = Path(__file__).parent / "static"


async def _live_hub(app: web.Application) -> AsyncIterator[None]:
    async for _ in run_hub(app[hub_key]):
        yield


async def _close_streams(app: web.Application) -> None:
    # Long-lived SSE responses end now, so shutdown does not wait on them.
    app[hub_key].close_all()


async def _stop_imports(app: web.Application) -> None:
    # A background import stops with the process that runs it, marked interrupted.
    await app[deps_key].imports.close()


def create_app(deps: WebDeps, config: WebConfig | None = None) -> web.Application:
    config = config or WebConfig()
    app = web.Application(
        # The guard runs before the session is looked up: characters no column
        # can hold never reach a query, and its refusals leave as errors.
        middlewares=[error_middleware, input_guard, context_middleware],
        client_max_size=int(config.max_upload_mb * 1024 * 1024),
    )
    app[deps_key] = deps
    app[config_key] = config
    i18n.load_all()
    app[templates_key] = build_environment()
    app[hub_key] = LiveHub(
        deps.broadcaster,
        deps.directory,
        client_backlog=config.sse_client_backlog,
        # Flushes are paced and cut in slices so that a worker on the same
        # loop keeps its turns; a web process without one (`dialer web`)
        # gives them a larger share and writes each in one go.
        write_share=0.2 if deps.shares_loop_with_worker else 0.5,
        flush_slice=50 if deps.shares_loop_with_worker else 1000,
    )
    app.add_routes(pages.routes)
    app.add_routes(ops.routes)
    app.add_routes(api.routes)
    app.add_routes(notification_routes.routes)
    app.add_routes(task_routes.routes)
    app.add_routes(account.routes)
    app.add_routes(team_routes.routes)
    app.add_routes(contact_routes.routes)
    health.setup(app, deps.health)
    setup_metrics(app, deps.metrics)
    app.router.add_static("/static/", STATIC_DIR, append_version=True)
    app.cleanup_ctx.append(_live_hub)
    app.on_shutdown.append(_close_streams)
    app.on_shutdown.append(_stop_imports)
    app.on_response_prepare.append(security_headers)
    return app
