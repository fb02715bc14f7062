"""`/healthz` for load balancers, Compose and Kubernetes: 200 when every
dependency of this process answers, 503 with the details when one does not."""

from __future__ import annotations

from aiohttp import web

from dialer.live.metrics import Metrics
from web.deps import HealthCheck
from web.routes.metrics import setup as setup_metrics

routes = web.RouteTableDef()
health_key: web.AppKey[HealthCheck] = web.AppKey("health")


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    checks = await request.app[health_key]()
    healthy = all(check["ok"] for check in checks.values())
    return web.json_response(
        {"status": "ok" if healthy else "unhealthy", "checks": checks},
        status=200 if healthy else 503,
        headers={"Cache-Control": "no-store"},
    )


def setup(app: web.Application, health: HealthCheck) -> None:
    app[health_key] = health
    app.add_routes(routes)


def create_probe_app(health: HealthCheck, metrics: Metrics) -> web.Application:
    """The HTTP side of a process that runs no web app (`dialer worker`)."""
    app = web.Application()
    setup(app, health)
    setup_metrics(app, metrics)
    return app
