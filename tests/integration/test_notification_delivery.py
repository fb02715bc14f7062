"""Sending notifications out: on a real Mosquitto, and by email to a local
aiosmtpd sink; no email when it is off, when the user has none or turned
them off, and a failing SMTP server is only logged (without its password).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

import aiomqtt
import pytest
from aiosmtpd.controller import Controller
from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.notifications import NotificationKind, dedup_key
from dialer.live.mailer import Mailer, SmtpSettings
from dialer.live.mqtt import NotificationPublisher
from dialer.runtime.bootstrap import run_serve
from dialer.services.notifications import NotificationDispatcher, NotificationService
from dialer.store import notifications as rows
from dialer.store.models import Notification, User, utcnow
from dialer.store.notifications import NewNotification
from tests.e2e.webworld import WebWorld, build_web_world
from tests.e2e.webworld import test_settings as web_settings
from tests.support.network import free_port

Sessions = async_sessionmaker[AsyncSession]


@dataclass
class Sink:
    """What the local SMTP server received."""

    messages: list[tuple[list[str], Message]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


@contextlib.contextmanager
def smtp_sink() -> Any:
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield sink, controller.port
    finally:
        controller.stop()


def _mailer(port: int, password: str = "") -> Mailer:
    return Mailer(
        SmtpSettings(
            host="127.0.0.1",
            port=port,
            sender="phonebank@example.org",
            username="dialer" if password else "",
            password=SecretStr(password),
            starttls=False,
            timeout=3.0,
        )
    )


@pytest.fixture
async def world(sessions: Sessions) -> WebWorld:
    world = await build_web_world(sessions)
    async with sessions.begin() as session:
        for name in ("alice", "bob"):
            await session.execute(
                update(User).where(User.id == world.users[name]).values(email=f"{name}@example.org")
            )
    return world


async def _notify_campaign(world: WebWorld, *names: str) -> None:
    async with world.sessions.begin() as session:
        await rows.add(
            session,
            [
                NewNotification(
                    user_id=world.users[name],
                    kind=NotificationKind.NEW_CAMPAIGN,
                    dedup_key=dedup_key(NotificationKind.NEW_CAMPAIGN, world.campaign_id),
                    campaign_id=world.campaign_id,
                )
                for name in names
            ],
            at=utcnow(),
        )


@contextlib.asynccontextmanager
async def subscribed(topic: str) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
    received: list[tuple[str, dict[str, Any]]] = []
    async with aiomqtt.Client("127.0.0.1", 1883) as client:
        await client.subscribe(topic, qos=1)

        async def read() -> None:
            async for message in client.messages:
                payload = message.payload
                assert isinstance(payload, bytes | bytearray)
                received.append((str(message.topic), json.loads(payload)))

        task = asyncio.create_task(read())
        try:
            yield received
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _until(check: Any, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not check():
            await asyncio.sleep(0.02)


async def test_each_notification_goes_out_once_on_mqtt_without_names(world: WebWorld) -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    publisher = NotificationPublisher("mqtt://127.0.0.1:1883", prefix=prefix, client_name=prefix)
    dispatcher = NotificationDispatcher(world.sessions, mqtt=publisher, interval=0.05)
    other = NotificationDispatcher(world.sessions, mqtt=publisher, interval=0.05)
    async with subscribed(f"{prefix}/users/+/notifications") as received:
        tasks = [
            asyncio.create_task(publisher.run()),
            asyncio.create_task(dispatcher.run()),
            # A second web process racing for the same rows.
            asyncio.create_task(other.run()),
        ]
        try:
            await _notify_campaign(world, "alice", "bob")
            await _until(lambda: len(received) >= 2)
            await asyncio.sleep(0.3)  # nothing more comes
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    topics = sorted(topic for topic, _ in received)
    assert topics == sorted(
        f"{prefix}/users/{world.users[name]}/notifications" for name in ("alice", "bob")
    )
    payload = received[0][1]
    assert payload["kind"] == "new_campaign"
    assert payload["campaign_id"] == world.campaign_id
    assert payload["link"] == f"/campaigns/{world.campaign_id}"
    # Ids and a link only: no titles, no names.
    assert "Get out the vote" not in json.dumps(payload)
    async with world.sessions() as session:
        notifications = list(await session.scalars(select(Notification)))
    assert all(row.dispatched_at is not None for row in notifications)


async def test_emails_reach_the_sink_in_each_readers_language(world: WebWorld) -> None:
    with smtp_sink() as (sink, port):
        dispatcher = NotificationDispatcher(
            world.sessions, mailer=_mailer(port), site_url="https://phones.example.org"
        )
        run = asyncio.create_task(dispatcher.run())
        try:
            # carol has no email address: no message for her.
            await _notify_campaign(world, "alice", "bob", "carol")
            await _until(lambda: len(sink.messages) >= 2)
            await asyncio.sleep(0.2)
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
    by_address = {to[0]: message for to, message in sink.messages}
    assert sorted(by_address) == ["alice@example.org", "bob@example.org"]
    english, french = by_address["alice@example.org"], by_address["bob@example.org"]
    assert english["Subject"] == "Phone bank: New calling action: Get out the vote"
    assert french["Subject"] == "Centre d'appels : Nouvelle action d'appel : Get out the vote"
    body = english.get_payload(decode=True)
    assert isinstance(body, bytes)
    assert f"https://phones.example.org/campaigns/{world.campaign_id}" in body.decode()


async def test_no_email_when_turned_off_or_not_configured(world: WebWorld) -> None:
    alice = await _user(world, "alice")
    await NotificationService(world.sessions, email_available=True).set_email(alice, False)
    with smtp_sink() as (sink, port):
        mailing = NotificationDispatcher(world.sessions, mailer=_mailer(port))
        await _notify_campaign(world, "alice")
        assert await mailing.dispatch_once() == 1
        await mailing.mail_idle()
        # No SMTP server configured: dispatched (for MQTT), never mailed.
        silent = NotificationDispatcher(world.sessions, mailer=None)
        async with world.sessions.begin() as session:
            await rows.add(
                session,
                [
                    NewNotification(
                        user_id=world.users["bob"],
                        kind=NotificationKind.ASSIGNMENT,
                        dedup_key="assignment:test",
                        campaign_id=world.campaign_id,
                        params={"count": 3},
                    )
                ],
                at=utcnow(),
            )
        assert await silent.dispatch_once() == 1
        # And what the silent one claimed, the mailing one does not send again.
        assert await mailing.dispatch_once() == 0
        await mailing.mail_idle()
    assert sink.messages == []
    page = await NotificationService(world.sessions, email_available=True).page(alice)
    assert page.email_available and page.has_email_address and not page.email_on


async def test_a_failing_smtp_server_is_logged_without_secrets(
    world: WebWorld, caplog: pytest.LogCaptureFixture
) -> None:
    closed = free_port()  # nothing listens there
    dispatcher = NotificationDispatcher(
        world.sessions, mailer=_mailer(closed, password="hunter2-smtp-secret")
    )
    caplog.set_level(logging.DEBUG)
    run = asyncio.create_task(dispatcher.run())
    try:
        await _notify_campaign(world, "alice")
        await _until(lambda: "not sent" in caplog.text)
        await dispatcher.mail_idle()
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
    assert dispatcher.mailer is not None and dispatcher.mailer.failures == 1
    assert "hunter2-smtp-secret" not in caplog.text
    assert "alice@example.org" not in caplog.text
    # The in-app notification is there all the same.
    alice = await _user(world, "alice")
    assert await NotificationService(world.sessions).unread_count(alice) == 1


async def _user(world: WebWorld, name: str) -> User:
    async with world.sessions() as session:
        user = await session.get(User, world.users[name])
        assert user is not None
        return user


async def test_a_web_process_started_as_the_command_line_does_sends_them_out(
    pg_url: str, world: WebWorld
) -> None:
    """``dialer web`` (run_serve without a worker) runs the dispatcher and its MQTT link."""
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    settings = web_settings(pg_url).model_copy(update={"mqtt_topic_prefix": prefix, "web_port": 0})
    stop = asyncio.Event()
    async with subscribed(f"{prefix}/users/+/notifications") as received:
        serving = asyncio.create_task(
            run_serve(settings, with_worker=False, with_web=True, stop=stop)
        )
        try:
            await _notify_campaign(world, "alice")
            await _until(lambda: len(received) == 1, within=10.0)
        finally:
            stop.set()
            await asyncio.wait_for(serving, 30)
    assert received[0][0] == f"{prefix}/users/{world.users['alice']}/notifications"
