"""`/healthz` for load balancers, Compose and Kubernetes: 200 when every
dependency of this process answers, 503 with the details when one does not."""

from __future__ import annotations

from aiohttp import web

from dialer.runtime.bootstrap import Runtime
from web.deps import runtime_key
from web.routes.metrics import setup as setup_metrics

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    checks = await request.app[runtime_key].health()
    healthy = all(check["ok"] for check in checks.values())
    return web.json_response(
        {"status": "ok" if healthy else "unhealthy", "checks": checks},
        status=200 if healthy else 503,
        headers={"Cache-Control": "no-store"},
    )


def create_probe_app(runtime: Runtime) -> web.Application:
    """The HTTP side of a process that runs no web app (`dialer worker`)."""
    app = web.Application()
    app[runtime_key] = runtime
    app.add_routes(routes)
    setup_metrics(app, runtime, runtime.metrics)
    return app
