"""Structured logs: one JSON object per line, the call id on every line about
a call, and no secret anywhere, at DEBUG, through whole calls."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ami_bridge.simulator import AmiSimulator, VolunteerBehaviour, VolunteerOutcome
from dialer.domain.vocabulary import CallState
from dialer.runtime.logs import JsonFormatter
from tests.integration.pbx_harness import SECRET, running_worker
from tests.integration.world import build_world

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


async def test_every_line_about_a_call_carries_its_id_and_no_secret_is_logged(
    sessions: Sessions, simulator: AmiSimulator, json_log: io.StringIO
) -> None:
    world = await build_world(sessions)
    simulator.script_volunteer("1002", VolunteerBehaviour(VolunteerOutcome.BUSY))
    async with running_worker(world, simulator) as harness:
        talking = await harness.call("montreal")  # answers and stays
        busy = await harness.call("bob_contact", volunteer="bob")  # bob's phone is busy
        await harness.wait_for(talking, CallState.TALKING)
        await harness.service.hang_up(world.users["olivia"], talking)
        for call_id in (talking, busy):
            await harness.wait_for(call_id, CallState.ENDED)
        # A hang-up of a call that has ended: logged, ignored.
        await harness.worker.hangup(talking, "operator")
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    about_calls = 0
    for line in lines:
        for call_id in (talking, busy):
            if call_id in line["message"]:
                about_calls += 1
                assert line.get("call_id") == call_id, line
    assert about_calls >= 2  # at least the two Originates
    assert SECRET not in json_log.getvalue()
