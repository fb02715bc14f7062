"""The product as a real deployment runs it: `dialer serve` processes, driven through
the JSON API as a browser does, with an organizer's live stream recorded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

import aiohttp
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.vocabulary import CampaignStatus, Role
from dialer.store.models import (
    Base,
    CallAttempt,
    CallingListEntry,
    Campaign,
    Contact,
    ContactPhone,
    Team,
    TeamMember,
    User,
)
from tests.e2e.webworld import ALL_DAY, CALLER_ID, PASSWORD, midday_zone, password_hash
from tests.pbx.realpbx import Asterisk, free_port

ORGANIZER = "olivia"


@dataclass
class World:
    campaign_id: int
    users: dict[str, int] = field(default_factory=dict)
    contacts: dict[str, int] = field(default_factory=dict)


async def seed(
    sessions: async_sessionmaker[AsyncSession],
    volunteers: dict[str, str],
    contacts: dict[str, tuple[str, str]],
    *,
    caller_ids: list[str] | None = None,
    pbx_of: dict[str, str] | None = None,
) -> World:
    """Volunteers (username -> extension), contacts (key -> (E.164 number, volunteer))
    on one active campaign of one team, with an organizer ``olivia``."""
    async with sessions.begin() as session:
        team = Team(name=f"Team {uuid.uuid4().hex[:6]}")
        session.add(team)
        await session.flush()
        campaign = Campaign(
            title="Real PBX",
            status=CampaignStatus.ACTIVE,
            team_id=team.id,
            allowed_caller_ids=[CALLER_ID] if caller_ids is None else caller_ids,
            calling_hours=ALL_DAY,
            max_attempts=5,
            retry_delay_minutes=0,
        )
        session.add(campaign)
        await session.flush()
        world = World(campaign.id)
        people = {name: (Role.VOLUNTEER, ext) for name, ext in volunteers.items()}
        people[ORGANIZER] = (Role.ORGANIZER, None)
        for username, (role, extension) in people.items():
            user = User(
                username=username,
                display_name=username.title(),
                role=role,
                password_hash=password_hash(),
                sip_extension=extension,
                pbx=(pbx_of or {}).get(username),
            )
            session.add(user)
            await session.flush()
            session.add(TeamMember(team_id=team.id, user_id=user.id))
            world.users[username] = user.id
        for key, (number, owner) in contacts.items():
            contact = Contact(first_name=key.title(), last_name="Test", timezone=midday_zone())
            contact.phones = [ContactPhone(e164=number)]
            session.add(contact)
            await session.flush()
            session.add(
                CallingListEntry(
                    campaign_id=campaign.id,
                    contact_id=contact.id,
                    volunteer_id=world.users[owner],
                )
            )
            world.contacts[key] = contact.id
    return world


async def stored_call(sessions: async_sessionmaker[AsyncSession], call_id: str) -> CallAttempt:
    async with sessions() as session:
        call = await session.scalar(select(CallAttempt).where(CallAttempt.call_id == call_id))
    assert call is not None, f"no stored call {call_id}"
    return call


async def truncate_all(sessions: async_sessionmaker[AsyncSession]) -> None:
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    async with sessions.begin() as session:
        await session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


def utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def close_to(stored: datetime | None, truth: datetime | None, within: float = 0.6) -> bool:
    """A stored time agrees with the SIP trace (both UTC) within ``within`` seconds."""
    if stored is None or truth is None:
        return False
    return abs(utc(stored) - truth) <= timedelta(seconds=within)  # type: ignore[operator]


class DialerProcess:
    """One `dialer serve` (or `worker`) process against a real Asterisk."""

    def __init__(
        self,
        pg_url: str,
        asterisk: Asterisk,
        folder: Path,
        *,
        command: str = "serve",
        ami_port: int | None = None,
        pbx_name: str = "default",
        **env: str,
    ) -> None:
        self.command = command
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / f"dialer-{command}-{self.port}.log"
        self.process: asyncio.subprocess.Process | None = None
        base = {key: value for key, value in os.environ.items() if not key.startswith("DIALER_")}
        base.update(
            DIALER_DATABASE_URL=pg_url,
            DIALER_AMI_HOST="127.0.0.1",
            DIALER_AMI_PORT=str(ami_port or asterisk.ami_port),
            DIALER_AMI_SECRET=asterisk.ami_secret,
            DIALER_AMI_PING_INTERVAL="1",
            DIALER_AMI_PING_TIMEOUT="1",
            DIALER_AMI_RECONNECT_MAX_DELAY="1",
            DIALER_MQTT_URL="mqtt://127.0.0.1:1883",
            DIALER_MQTT_TOPIC_PREFIX=f"pbx-{uuid.uuid4().hex[:8]}",
            DIALER_ALLOWED_DESTINATIONS="CA,US",
            DIALER_ORIGINATE_TIMEOUT_MS="6000",
            DIALER_PBX_NAME=pbx_name,
            DIALER_WEB_PORT=str(self.port),
            DIALER_WORKER_HTTP_PORT=str(self.port),
            DIALER_WEB_PUBLIC_URL=self.url,
            DIALER_LOG_LEVEL="INFO",
        )
        base.update(env)
        self.env = base

    async def start(self) -> None:
        with self.log.open("ab") as output:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "dialer",
                self.command,
                env=self.env,
                stdout=output,
                stderr=output,
            )
        await self.wait_healthy()

    async def wait_healthy(self, timeout: float = 30) -> None:
        async with aiohttp.ClientSession() as http, asyncio.timeout(timeout):
            while True:
                assert self.process is not None
                if self.process.returncode is not None:
                    raise AssertionError(f"dialer exited early:\n{self.output()[-3000:]}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(self.url + "/healthz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.2)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye to Asterisk."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> int | None:
        if self.process is None or self.process.returncode is not None:
            return None if self.process is None else self.process.returncode
        self.process.terminate()
        try:
            return await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            return await self.process.wait()


@contextlib.asynccontextmanager
async def dialer_running(*args: Any, **kwargs: Any) -> AsyncIterator[DialerProcess]:
    process = DialerProcess(*args, **kwargs)
    await process.start()
    try:
        yield process
    finally:
        await process.stop()


class Browser:
    """A signed-in user of the JSON API, as the volunteer's or organizer's page uses it."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self.headers: dict[str, str] = {"Origin": base}

    @classmethod
    @contextlib.asynccontextmanager
    async def signed_in(cls, base: str, username: str) -> AsyncIterator[Browser]:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            browser = cls(http, base)
            status, body = await browser.api(
                "POST", "/api/session", {"username": username, "password": PASSWORD}
            )
            assert status == 200, body
            browser.headers["X-CSRF-Token"] = body["csrf_token"]
            yield browser

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(
            method, self.base + path, json=body, headers=self.headers
        ) as response:
            try:
                return response.status, await response.json(content_type=None)
            except ValueError:
                return response.status, await response.text()

    async def click_call(self, world: World, contact: str) -> str:
        status, body = await self.api(
            "POST",
            "/api/calls",
            {"contact_id": world.contacts[contact], "campaign_id": world.campaign_id},
        )
        assert status == 201, body
        return str(body["call_id"])

    async def wait_for(self, call_id: str, *states: str, timeout: float = 60) -> dict[str, Any]:
        wanted = set(states) or {"ended"}
        async with asyncio.timeout(timeout):
            while True:
                status, body = await self.api("GET", f"/api/calls/{call_id}")
                if status == 200 and (body["state"] in wanted or body["state"] == "ended"):
                    return dict(body)
                await asyncio.sleep(0.2)


class LiveRecorder:
    """An organizer's live panel stream, every call state it shows, in order."""

    def __init__(self) -> None:
        self.states: dict[str, list[str]] = {}
        self.payloads: dict[str, list[dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    @contextlib.asynccontextmanager
    async def recording(self, base: str) -> AsyncIterator[LiveRecorder]:
        async with Browser.signed_in(base, ORGANIZER) as organizer:
            self._task = asyncio.create_task(self._read(organizer))
            await asyncio.wait_for(self._ready.wait(), 10)
            try:
                yield self
            finally:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task

    async def _read(self, organizer: Browser) -> None:
        async with organizer.http.get(
            organizer.base + "/api/live/events", headers=organizer.headers
        ) as events:
            event = ""
            async for raw in events.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[len("event: ") :]
                elif line.startswith("data: "):
                    data = json.loads(line[len("data: ") :])
                    if event == "snapshot":
                        self._ready.set()
                        items = [item for item in data["items"] if item["kind"] == "call"]
                    elif isinstance(data, dict) and data.get("kind") == "call":
                        items = [data]
                    else:
                        items = []
                    for item in items:
                        self._record(item)

    def _record(self, item: dict[str, Any]) -> None:
        state = item["payload"]["state"]
        seen = self.states.setdefault(item["key"], [])
        if not seen or seen[-1] != state:
            seen.append(state)
        self.payloads.setdefault(item["key"], []).append(item["payload"])

    async def until(self, call_id: str, state: str, timeout: float = 30) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while state not in self.states.get(call_id, []):
                await asyncio.sleep(0.05)
        return next(p for p in self.payloads[call_id] if p["state"] == state)


class AmiObserver:
    """Every AMI event, as a user with full read and no filter gets them
    (``tests.pbx.record_transcripts.recorder_user`` in manager.conf)."""

    def __init__(self) -> None:
        self.events: list[dict[str, str]] = []
        self._task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def watching(self, port: int, secret: str, user: str = "recorder") -> AsyncIterator[Self]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readline()
        writer.write(f"Action: Login\r\nUsername: {user}\r\nSecret: {secret}\r\n\r\n".encode())
        self._task = asyncio.create_task(self._read(reader))
        try:
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            block = await reader.readuntil(b"\r\n\r\n")
            message: dict[str, str] = {}
            for line in block.decode(errors="replace").split("\r\n"):
                name, sep, value = line.partition(": ")
                if sep:
                    message.setdefault(name, value)
            self.events.append(message)

    def named(self, name: str, **headers: str) -> list[dict[str, str]]:
        return [
            event
            for event in self.events
            if event.get("Event") == name
            and all(event.get(key) == value for key, value in headers.items())
        ]

    async def until(self, name: str, timeout: float = 15, **headers: str) -> dict[str, str]:
        async with asyncio.timeout(timeout):
            while not self.named(name, **headers):
                await asyncio.sleep(0.05)
        return self.named(name, **headers)[0]
