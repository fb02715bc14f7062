"""`GET /metrics` for Prometheus, in the text exposition format.

Served without a session (Prometheus does not sign in); nothing in it is
personal: the only labels are call states and outcomes.  Restrict who
reaches it at the network or reverse proxy (see docs/metrics.md).

``setup(app, metrics)`` is what an app factory calls (the web app,
or the probe app of a worker on its own): it stores the
:class:`~dialer.live.metrics.Metrics` on the app, adds the route, the SSE client
gauge (when the app has a live hub) and the HTTP request metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import hdrs, web
from prometheus_client.exposition import choose_encoder

from dialer.live.metrics import Metrics
from web.deps import hub_key

metrics_key = web.AppKey("metrics", Metrics)

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def metrics_handler(request: web.Request) -> web.Response:
    # The library picks the format the scraper asks for (text or OpenMetrics).
    encode, content_type = choose_encoder(request.headers.get(hdrs.ACCEPT, ""))
    return web.Response(
        body=encode(request.app[metrics_key].registry),
        headers={hdrs.CONTENT_TYPE: content_type, hdrs.CACHE_CONTROL: "no-store"},
    )


def setup(app: web.Application, metrics: Metrics) -> Metrics:
    """Serve ``metrics`` (the process's) at /metrics, and run their ended-calls
    follower for as long as the app runs (:meth:`Metrics.run` does nothing when
    another task already follows)."""
    app[metrics_key] = metrics
    if hub_key in app:
        hub = app[hub_key]
        metrics.sse_clients = lambda: len(hub.clients)
    app.router.add_get("/metrics", metrics_handler)
    # First, so it sees the status the other middlewares settle on.
    app.middlewares.insert(0, _http_metrics)
    app.cleanup_ctx.append(_follow_calls)
    return metrics


@web.middleware
async def _http_metrics(request: web.Request, handler: _Handler) -> web.StreamResponse:
    metrics = request.app[metrics_key]
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as http:  # a redirect or error aiohttp answers itself
        metrics.observe_http(time.perf_counter() - started, http.status)
        raise
    except asyncio.CancelledError:
        raise  # the client went away: nothing was answered
    except Exception:
        metrics.observe_http(time.perf_counter() - started, 500)
        raise
    stream = response.content_type == "text/event-stream"
    metrics.observe_http(time.perf_counter() - started, response.status, stream=stream)
    return response


async def _follow_calls(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[metrics_key].run(), name="metrics-calls")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
