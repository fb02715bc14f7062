"""`dialer demo`: the whole product on one machine, with no set-up."""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Callable

from pydantic import SecretStr

from dialer.runtime.bootstrap import Runtime, run_serve
from dialer.runtime.demo_data import DEMO_CALLER_ID, seed_demo
from dialer.runtime.settings import Settings
from dialer.store import engine as db

DEMO_DATABASE_URL = "sqlite+aiosqlite:///dialer-demo.sqlite3"


async def run_demo(
    settings: Settings,
    *,
    web_port: int | None = None,
    ami_port: int = 0,
    time_scale: float = 1.0,
    database_url: str = DEMO_DATABASE_URL,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[Runtime, int], None] | None = None,
) -> None:
    from ami_bridge.simulator import AmiSimulator

    await db.upgrade_async(database_url)
    engine = db.create_engine(database_url)
    try:
        data = await seed_demo(db.session_factory(engine))
    finally:
        await engine.dispose()
    secret = secrets.token_urlsafe(16)
    simulator = AmiSimulator(
        port=ami_port,
        username="dialer-demo",
        secret=secret,
        least_privilege=True,
        time_scale=time_scale,
    )
    await simulator.start()
    demo_settings = settings.model_copy(
        update={
            "database_url": SecretStr(database_url),
            "ami_host": "127.0.0.1",
            "ami_port": simulator.port,
            "ami_username": "dialer-demo",
            "ami_secret": SecretStr(secret),
            "allowed_destinations": "CA,+33",
            "default_caller_id": DEMO_CALLER_ID,
            "web_port": settings.web_port if web_port is None else web_port,
            "request_expiry_seconds": 60.0,
            # No broker in a no-set-up demo; point DIALER_MQTT_URL at one in real use.
            "mqtt_url": SecretStr(""),
        }
    )

    def ready(runtime: Runtime, port: int) -> None:
        url = f"http://{demo_settings.web_host}:{port}/" if port else "(no web app in this build)"
        lines = [
            "",
            "Phone bank demo is running.",
            f"  open        {url}",
            f"  volunteer   alice / {data.logins['alice']}   (extension 1001)",
            f"  volunteer   bob / {data.logins['bob']}     (extension 1002)",
            f"  organizer   olivia / {data.logins['olivia']}",
            f"  PBX         built-in AMI simulator on 127.0.0.1:{simulator.port}",
            f"  database    {database_url}",
            "Contacts' last digit picks the call outcome (see the README). Ctrl-C stops.",
            "",
        ]
        print("\n".join(lines), file=sys.stderr, flush=True)
        if on_ready is not None:
            on_ready(runtime, port)

    try:
        await run_serve(demo_settings, stop=stop, on_ready=ready)
    finally:
        await simulator.stop()
