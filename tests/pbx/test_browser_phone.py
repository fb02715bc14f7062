"""The browser phone (WebRTC) on the real Asterisk, in a real headless Chromium.

An organizer creates a volunteer whose phone is the browser in the web app;
nothing touches Asterisk's files: Asterisk finds the endpoint in the dialer's
database (realtime, migration 0013).  The volunteer signs in with a fake
microphone, turns the phone on, clicks Call, and a SIPp carrier answers and
echoes the audio back.  RTP is counted on both sides: the browser's
getStats() and Asterisk's channel statistics.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser as Chromium
from playwright.async_api import BrowserContext, Page, async_playwright, expect
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.vocabulary import CallOutcome, CallState, DispositionOutcome, VolunteerPhone
from dialer.services.users import set_phone
from dialer.services.volunteer_phones import PhoneChoice
from dialer.store.models import (
    CallAttempt,
    CallingListEntry,
    Contact,
    ContactPhone,
    Disposition,
    User,
)
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.browser.test_screenshots import README_VIEWPORT, save
from tests.e2e.webworld import PASSWORD, midday_zone
from tests.pbx.conftest import RealPbx, pbx_running, start_pbx
from tests.pbx.product import (
    ORGANIZER,
    DialerProcess,
    World,
    close_to,
    dialer_running,
    seed,
    stored_call,
)

# One xdist worker for the whole module: its module fixture starts its own
# Asterisk (and waits out ring timeouts), which split tests would do twice.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pbx_browser_phone")]

ANSWERS = "+15145550405"  # ends in 5: the carrier answers after 1 s and stays up
BUSY = "+15145550401"  # ends in 1: 486 Busy Here
# Chromium's fake microphone (a beep); WebRTC between two loopback addresses
# needs the second flag.  The permission is Playwright's to grant, or not.
MEDIA_ARGS = ["--use-fake-device-for-media-stream", "--allow-loopback-in-peer-connection"]


@pytest.fixture(scope="module")
async def phone_pbx(
    _real_pbx_available: None, pbx_folder: Path, pg_url: str
) -> AsyncIterator[RealPbx]:
    """A PBX of its own (a test restarts it) reading browser phones from the test database."""
    database = pg_url.rsplit("/", 1)[1]
    asterisk, agents = await start_pbx(
        pbx_folder / "browser", [("carrier", "carrier.xml")], [], database=database
    )
    agents["carrier"].echo_rtp()
    async with pbx_running(asterisk, agents) as running:
        yield running


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Chromium]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS + MEDIA_ARGS
        )
        yield launched
        await launched.close()


@dataclass
class Rig:
    """The real PBX of this module, the test database and a Chromium with a fake microphone."""

    pbx: RealPbx
    db: async_sessionmaker[AsyncSession]
    chromium: Chromium
    pg_url: str
    folder: Path
    contexts: list[BrowserContext] = field(default_factory=list)

    def dialer(self) -> contextlib.AbstractAsyncContextManager[DialerProcess]:
        """`dialer serve` with browser phones on: Asterisk's plain ws:// on the loopback."""
        return dialer_running(
            self.pg_url,
            self.pbx.asterisk,
            self.folder,
            DIALER_WEB_PHONE_WS_URL=f"ws://127.0.0.1:{self.pbx.asterisk.layout.http_port}/ws",
        )

    async def signed_in(self, dialer: DialerProcess, username: str) -> Page:
        context = await self.chromium.new_context(
            locale="en-CA", viewport={"width": 1280, "height": 900}
        )
        context.set_default_timeout(15_000)
        self.contexts.append(context)
        page = await context.new_page()
        await page.goto(dialer.url + "/login")
        await page.fill("#username", username)
        await page.fill("#password", PASSWORD)
        await page.press("#password", "Enter")
        await page.wait_for_url(re.compile(r".*/(campaigns|ops/live|ops/campaigns)$"))
        return page


@pytest.fixture
async def rig(
    phone_pbx: RealPbx,
    pg_url: str,
    db: async_sessionmaker[AsyncSession],
    chromium: Chromium,
    tmp_path: Path,
) -> AsyncIterator[Rig]:
    made = Rig(phone_pbx, db, chromium, pg_url, tmp_path)
    yield made
    for context in made.contexts:
        await context.close()


async def create_browser_volunteer(page: Page, dialer: DialerProcess, username: str) -> None:
    """The organizer's "Add a user" form, phone: Browser, no extension typed."""
    await page.goto(dialer.url + "/ops/users")
    await page.fill("#u-username", username)
    await page.fill("#u-name", username.title())
    await page.select_option("#u-phone", VolunteerPhone.BROWSER.value)
    await page.fill("#u-password", PASSWORD)
    await page.get_by_role("button", name="Add", exact=True).click()
    await expect(page.locator("p.ok")).to_contain_text(username)


async def give_contacts_to(
    sessions: async_sessionmaker[AsyncSession], username: str, contact_ids: list[int]
) -> User:
    async with sessions.begin() as session:
        user = await session.scalar(select(User).where(User.username == username))
        assert user is not None
        await session.execute(
            update(CallingListEntry)
            .where(CallingListEntry.contact_id.in_(contact_ids))
            .values(volunteer_id=user.id)
        )
    return user


async def channel_stats(pbx: RealPbx, endpoint: str) -> tuple[int, int]:
    """Asterisk's RTP packet counts (received, sent) on ``endpoint``'s live channel."""
    listing = await pbx.asterisk.cli("pjsip show channelstats")
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 10 and fields[1].startswith(f"{endpoint}-"):
            return int(fields[4]), int(fields[8])
    raise AssertionError(f"no channel of {endpoint} in:\n{listing}")


async def turn_on(page: Page) -> None:
    """The volunteer reads why the microphone is needed, then turns the phone on,
    and says Allow when the browser asks."""
    phone = page.locator("#browser-phone")
    await expect(phone.locator("#phone-intro")).to_be_visible()
    await page.context.grant_permissions(["microphone"])
    await phone.locator("#phone-start").click()
    await expect(phone).to_have_attribute("data-state", "ready")


async def test_a_volunteer_created_in_the_web_app_calls_from_the_browser(rig: Rig) -> None:
    world = await seed(rig.db, {}, {})
    async with rig.dialer() as dialer:
        organizer = await rig.signed_in(dialer, ORGANIZER)
        await create_browser_volunteer(organizer, dialer, "wendy")
        contacts = await seed_contacts(rig.db, world.campaign_id, {"ann": ANSWERS})
        wendy = await give_contacts_to(rig.db, "wendy", list(contacts.values()))
        assert wendy.phone is VolunteerPhone.BROWSER and wendy.sip_extension == "7000"

        volunteer = await rig.signed_in(dialer, "wendy")
        await volunteer.goto(
            f"{dialer.url}/contacts/{contacts['ann']}?campaign={world.campaign_id}"
        )
        await turn_on(volunteer)
        contact_of = await rig.pbx.asterisk.cli("pjsip show contacts")
        assert re.search(r"Contact:\s+7000/sip:\S+;transport=ws", contact_of), contact_of

        await volunteer.click("#call-button")
        await expect(volunteer.locator("#call-status")).to_have_attribute(
            "data-state", CallState.TALKING.value, timeout=20_000
        )
        await expect(volunteer.locator("#browser-phone")).to_have_attribute("data-state", "talking")
        await volunteer.set_viewport_size(README_VIEWPORT)
        await save(volunteer, "browser-phone-call")  # the README's, with DIALER_SCREENSHOTS=1
        await asyncio.sleep(2)
        heard = await volunteer.evaluate("window.PBPhone.rtpStats()")
        received, sent = await channel_stats(rig.pbx, "7000")
        # 50 packets a second each way: the fake microphone reaches Asterisk,
        # and the carrier's echo comes back to the browser through it.
        assert heard["sent"] > 50 and heard["received"] > 50, heard
        assert received > 50 and sent > 50, (received, sent)

        await volunteer.click("#hangup-button")
        await expect(volunteer.locator("#call-status")).to_have_attribute(
            "data-state", CallState.ENDED.value
        )
        # The outcome flow is the desk phone's: refused, then saved.
        await expect(volunteer.locator("#outcome-form")).to_be_visible()
        await volunteer.check('#outcome-form input[name="outcome"][value="refused"]')
        while not await volunteer.locator("#step-save").is_visible():
            await volunteer.click("#step-next")
        await volunteer.click("#step-save")
        await expect(volunteer.locator("#done-panel")).to_be_visible()
        await expect(volunteer.locator("#browser-phone")).to_have_attribute("data-state", "ready")

    carrier = await rig.pbx.carrier.dialog(ANSWERS.removeprefix("+"))
    assert carrier.answered_at is not None and carrier.bye_from() == "asterisk"
    stored = await latest_call(rig.db, wendy.id)
    assert stored.volunteer_channel is not None
    assert stored.volunteer_channel.startswith("PJSIP/7000-")
    assert stored.state is CallState.ENDED and stored.outcome is CallOutcome.COMPLETED
    assert close_to(stored.contact_answered_at, carrier.answered_at)
    async with rig.db() as session:
        outcome = await session.scalar(
            select(Disposition.outcome).where(Disposition.call_attempt_id == stored.id)
        )
    assert outcome is DispositionOutcome.REFUSED


async def seed_contacts(
    sessions: async_sessionmaker[AsyncSession], campaign_id: int, numbers: dict[str, str]
) -> dict[str, int]:
    """Contacts on the campaign's list, given to the organizer until a volunteer exists."""
    found: dict[str, int] = {}
    async with sessions.begin() as session:
        owner = await session.scalar(select(User.id).where(User.username == ORGANIZER))
        for key, number in numbers.items():
            contact = Contact(first_name=key.title(), last_name="Test", timezone=midday_zone())
            contact.phones = [ContactPhone(e164=number)]
            session.add(contact)
            await session.flush()
            session.add(
                CallingListEntry(campaign_id=campaign_id, contact_id=contact.id, volunteer_id=owner)
            )
            found[key] = contact.id
    return found


async def latest_call(sessions: async_sessionmaker[AsyncSession], volunteer_id: int) -> CallAttempt:
    async with sessions() as session:
        call_id = await session.scalar(
            select(CallAttempt.call_id)
            .where(CallAttempt.volunteer_id == volunteer_id)
            .order_by(CallAttempt.requested_at.desc())
            .limit(1)
        )
    assert call_id is not None, "no call stored"
    return await stored_call(sessions, call_id)


async def browser_volunteer(
    sessions: async_sessionmaker[AsyncSession], numbers: dict[str, str], extension: str
) -> tuple[World, User]:
    """A campaign whose contacts are on the list of a volunteer with a browser phone."""
    world = await seed(sessions, {"wendy": extension}, {})
    contacts = await seed_contacts(sessions, world.campaign_id, numbers)
    world.contacts.update(contacts)
    async with sessions.begin() as session:
        await set_phone(session, "wendy", PhoneChoice(VolunteerPhone.BROWSER))
    return world, await give_contacts_to(sessions, "wendy", list(contacts.values()))


async def test_a_blocked_microphone_says_what_to_do_and_nothing_rings(rig: Rig) -> None:
    world, wendy = await browser_volunteer(rig.db, {"ann": ANSWERS}, "7010")
    async with rig.dialer() as dialer:
        volunteer = await rig.signed_in(dialer, "wendy")
        await volunteer.goto(
            f"{dialer.url}/contacts/{world.contacts['ann']}?campaign={world.campaign_id}"
        )
        phone = volunteer.locator("#browser-phone")
        await expect(phone.locator("#phone-intro")).to_be_visible()
        # No permission granted: the browser refuses the microphone.
        await phone.locator("#phone-start").click()
        await expect(phone).to_have_attribute("data-state", "denied")
        await expect(phone.locator("#phone-denied")).to_contain_text("set Microphone to Allow")
        await expect(phone.locator("#phone-retry")).to_be_visible()

        await volunteer.click("#call-button")
        await expect(volunteer.locator("#call-error")).to_contain_text(
            "Your browser phone is not connected yet", timeout=15_000
        )
        # Allowed at last: Try again turns it on.
        await volunteer.context.grant_permissions(["microphone"])
        await phone.locator("#phone-retry").click()
        await expect(phone).to_have_attribute("data-state", "ready")
    async with rig.db() as session:
        calls = await session.scalar(
            select(func.count())
            .select_from(CallAttempt)
            .where(CallAttempt.volunteer_id == wendy.id)
        )
    assert calls == 0


async def test_the_phone_comes_back_after_the_pbx_restarts_and_takes_the_next_call(
    rig: Rig,
) -> None:
    world, wendy = await browser_volunteer(rig.db, {"bea": BUSY}, "7020")
    async with rig.dialer() as dialer:
        volunteer = await rig.signed_in(dialer, "wendy")
        await volunteer.goto(
            f"{dialer.url}/contacts/{world.contacts['bea']}?campaign={world.campaign_id}"
        )
        await turn_on(volunteer)
        phone = volunteer.locator("#browser-phone")

        # The WebSocket drops with the PBX; the phone says so, then registers
        # again by itself once Asterisk is back.
        await rig.pbx.asterisk.restart_now()
        await expect(phone).to_have_attribute("data-state", "reconnecting", timeout=10_000)
        await rig.pbx.asterisk.wait_until_back()
        await expect(phone).to_have_attribute("data-state", "ready", timeout=40_000)
        contacts = await rig.pbx.asterisk.cli("pjsip show contacts")
        assert re.search(r"Contact:\s+7020/sip:\S+;transport=ws", contacts), contacts

        # And it answers the next call: the contact is busy.
        await volunteer.click("#call-button")
        await expect(volunteer.locator("#call-status")).to_have_attribute(
            "data-state", CallState.ENDED.value, timeout=20_000
        )
    carrier = await rig.pbx.carrier.dialog(BUSY.removeprefix("+"))
    assert carrier.final_status == 486
    stored = await latest_call(rig.db, wendy.id)
    assert stored.outcome is CallOutcome.CONTACT_BUSY and stored.volunteer_answered_at is not None


async def test_the_test_call_plays_the_volunteers_voice_back(rig: Rig) -> None:
    await browser_volunteer(rig.db, {}, "7030")
    async with rig.dialer() as dialer:
        volunteer = await rig.signed_in(dialer, "wendy")
        await turn_on(volunteer)
        phone = volunteer.locator("#browser-phone")
        await phone.locator("#phone-test").click()
        await expect(phone).to_have_attribute("data-state", "testing")
        await asyncio.sleep(2)
        heard = await volunteer.evaluate("window.PBPhone.rtpStats()")
        # Echo() sends every packet back.
        assert heard["sent"] > 50 and heard["received"] > 50, heard
        await phone.locator("#phone-mute").click()
        await expect(phone.locator("#phone-mute")).to_have_attribute("aria-pressed", "true")
        await expect(phone.locator("#phone-muted")).to_be_visible()
        await phone.locator("#phone-hangup").click()
        await expect(phone).to_have_attribute("data-state", "ready")


async def test_a_number_clicked_in_the_contacts_list_is_called_once_the_phone_is_back(
    rig: Rig,
) -> None:
    """The list's page would unload the phone with the call: the call is placed
    on the contact's page instead, once its phone has registered again."""
    world, wendy = await browser_volunteer(rig.db, {"bo": "+15145550411"}, "7040")
    async with rig.dialer() as dialer:
        volunteer = await rig.signed_in(dialer, "wendy")
        await volunteer.goto(f"{dialer.url}/contacts?campaign={world.campaign_id}")
        await turn_on(volunteer)
        await volunteer.locator("a.dial").first.click()
        await volunteer.locator('#dial-confirm button[value="once"]').click()
        await volunteer.wait_for_url(re.compile(rf".*/contacts/{world.contacts['bo']}\b.*"))
        await expect(volunteer.locator("#call-status")).to_have_attribute(
            "data-state", CallState.ENDED.value, timeout=20_000
        )
    carrier = await rig.pbx.carrier.dialog("15145550411")
    assert carrier.final_status == 486
    stored = await latest_call(rig.db, wendy.id)
    assert stored.outcome is CallOutcome.CONTACT_BUSY


async def test_a_second_tab_takes_the_phone_and_the_first_one_steps_aside(rig: Rig) -> None:
    await browser_volunteer(rig.db, {}, "7050")
    async with rig.dialer() as dialer:
        first = await rig.signed_in(dialer, "wendy")
        await turn_on(first)
        second = await first.context.new_page()
        await second.goto(dialer.url + "/campaigns")
        # Allowed already: the new tab turns its phone on by itself.
        await expect(second.locator("#browser-phone")).to_have_attribute("data-state", "ready")
        await expect(first.locator("#browser-phone")).to_have_attribute("data-state", "elsewhere")
        await expect(first.locator("#phone-here")).to_be_visible()
        contacts = await rig.pbx.asterisk.cli("pjsip show contacts")
        assert len(re.findall(r"Contact:\s+7050/", contacts)) == 1, contacts
        # And back.
        await first.locator("#phone-here").click()
        await expect(first.locator("#browser-phone")).to_have_attribute("data-state", "ready")
        await expect(second.locator("#browser-phone")).to_have_attribute("data-state", "elsewhere")
