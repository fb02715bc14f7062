"""The worker wired to a real AMI client and the simulator over TCP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pydantic import SecretStr
from sqlalchemy import select

from ami_bridge.client import AmiClient
from ami_bridge.pbx import AmiPbx
from ami_bridge.simulator import AmiSimulator
from dialer.domain.vocabulary import CallState
from dialer.services.calling import CallService
from dialer.store.models import CallAttempt
from dialer.worker.call_worker import CallWorker
from tests.integration.world import World

SECRET = "test-secret"


@dataclass
class Harness:
    world: World
    simulator: AmiSimulator
    client: AmiClient
    pbx: AmiPbx
    service: CallService
    worker: CallWorker
    task: asyncio.Task[None]

    async def call(self, contact: str, volunteer: str = "alice") -> str:
        call = await self.service.start_call(
            volunteer_id=self.world.users[volunteer],
            contact_id=self.world.contacts[contact],
            campaign_id=self.world.campaign_id,
        )
        return call.call_id

    async def row(self, call_id: str) -> CallAttempt:
        async with self.world.sessions() as session:
            call = await session.scalar(select(CallAttempt).where(CallAttempt.call_id == call_id))
        assert call is not None
        return call

    async def wait_for(self, call_id: str, state: CallState, timeout: float = 10.0) -> CallAttempt:
        async with asyncio.timeout(timeout):
            while True:
                call = await self.row(call_id)
                if call.state is state or call.state is CallState.ENDED:
                    return call
                await asyncio.sleep(0.02)


def make_client(port: int, **options: float) -> AmiClient:
    settings: dict[str, float] = {
        "action_timeout": 2.0,
        "ping_interval": 1.0,
        "ping_timeout": 0.5,
        "reconnect_initial_delay": 0.05,
        "reconnect_max_delay": 0.2,
    }
    settings.update(options)
    return AmiClient("127.0.0.1", port, "dialer", SecretStr(SECRET), **settings)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running_worker(
    world: World, simulator: AmiSimulator, **service_options: object
) -> AsyncIterator[Harness]:
    client = make_client(simulator.port)
    pbx = AmiPbx(client)
    service = world.service(**service_options)
    worker = CallWorker(service, pbx, originate_timeout_ms=5000, poll_interval=0.05)
    service.on_request = worker.wake
    service.on_hangup_request = worker.wake_hangups
    task = asyncio.create_task(worker.run())
    async with asyncio.timeout(10):
        while not pbx.connected:
            await asyncio.sleep(0.01)
    try:
        yield Harness(world, simulator, client, pbx, service, worker, task)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pbx.close()
