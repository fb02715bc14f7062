"""`/healthz` for load balancers, Compose and Kubernetes.

200 ``ok`` when every dependency of this process answers; 503 ``unhealthy``
when one it cannot work without does not (the database; the AMI link in a
process running the worker); 200 ``degraded`` when only an optional one is
down (a check marked ``"required": false``, such as the workers a web
process relies on), so a load balancer keeps the process while the body, and
the ``dialer_worker_up`` metric, tell an operator what is missing.
"""

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
    failing = [check for check in checks.values() if not check["ok"]]
    unhealthy = any(check.get("required", True) for check in failing)
    status = "unhealthy" if unhealthy else "degraded" if failing else "ok"
    return web.json_response(
        {"status": status, "checks": checks},
        status=503 if unhealthy else 200,
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
