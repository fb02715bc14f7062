"""The aiohttp application factory: pages, JSON API and live stream.

Nothing runs at import time.  ``create_app(runtime)`` wires the pages and
the API to the runtime's service, compiles the translation catalogs, and
registers the live hub as a ``cleanup_ctx`` so it starts and stops with
the app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from dialer.runtime.bootstrap import Runtime
from dialer.runtime.metrics import Metrics
from web.config import WebConfig
from web.deps import config_key, hub_key, runtime_key, templates_key
from web.i18n import translate as i18n
from web.live.sse import LiveHub, run_hub
from web.routes import api, health, ops, pages
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


def create_app(
    runtime: Runtime, config: WebConfig | None = None, *, metrics: Metrics | None = None
) -> web.Application:
    """``metrics``: the process's metrics, when it composed them; otherwise the
    app installs its own for ``runtime`` (see ``web.routes.metrics.setup``)."""
    config = config or WebConfig()
    app = web.Application(
        middlewares=[error_middleware, context_middleware],
        client_max_size=int(config.max_upload_mb * 1024 * 1024),
    )
    app[runtime_key] = runtime
    app[config_key] = config
    i18n.load_all()
    app[templates_key] = build_environment()
    app[hub_key] = LiveHub(
        runtime.broadcaster,
        runtime.sessions,
        client_backlog=config.sse_client_backlog,
        # Flushes are paced and cut in slices so that a worker on the same
        # loop keeps its turns; a web process without one (`dialer web`)
        # gives them a larger share and writes each in one go.
        write_share=0.2 if runtime.worker is not None else 0.5,
        flush_slice=50 if runtime.worker is not None else 1000,
    )
    app.add_routes(pages.routes)
    app.add_routes(ops.routes)
    app.add_routes(api.routes)
    app.add_routes(health.routes)
    setup_metrics(app, runtime, metrics or runtime.metrics)
    app.router.add_static("/static/", STATIC_DIR, append_version=True)
    app.cleanup_ctx.append(_live_hub)
    app.on_shutdown.append(_close_streams)
    app.on_response_prepare.append(security_headers)
    return app
