"""The simulator as a process (``dialer simulate-pbx``): one
:class:`~ami_bridge.simulator.server.AmiSimulator` served until the
process is interrupted or sent SIGTERM, then stopped cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

from ami_bridge.simulator.dialplan import Trunk
from ami_bridge.simulator.server import AmiSimulator


async def run_simulator(
    host: str,
    port: int,
    *,
    username: str,
    secret: str,
    least_privilege: bool = False,
    time_scale: float = 1.0,
    default_trunk: Trunk = "carrier",
    dialplan_events: bool = True,
) -> None:
    """Serve the simulator until cancelled (``dialer simulate-pbx``)."""
    sim = AmiSimulator(
        host=host,
        port=port,
        username=username,
        secret=secret,
        least_privilege=least_privilege,
        time_scale=time_scale,
        default_trunk=default_trunk,
        dialplan_events=dialplan_events,
    )
    await sim.start()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # A clean exit on `kill` too (supervisors and benchmarks send SIGTERM).
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stopped.set)
    try:
        await stopped.wait()
    finally:
        await sim.stop()
