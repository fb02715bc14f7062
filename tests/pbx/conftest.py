"""The real-PBX tier: the product against a real Asterisk and SIPp phones and carrier.

Skipped with a one-line reason when no Asterisk build is at hand, except
under CI (``CI=true``), where a missing ``../shared/pbx`` is a failure.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.pbx.product import truncate_all
from tests.pbx.realpbx import (
    Asterisk,
    PbxLayout,
    Phone,
    SippUA,
    clean,
    free_port,
    missing_pieces,
    running_uas,
    ua_set,
)

# Volunteer phones of the standard PBX, by what they do when rung.
DESK = [f"10{n:02d}" for n in range(1, 30)]  # answer after 0.5 s, stay until hung up
VOLUNTEER_HANGS_UP = "1030"  # answers, sends BYE itself 3 s later (so does 1040)
VOLUNTEER_BUSY = "1031"  # 486 Busy Here
VOLUNTEER_NO_ANSWER = "1032"  # rings until CANCEL
VOLUNTEER_DECLINES = "1033"  # 603 Decline
UNPLUGGED = "1099"  # nothing listens at its contact: qualify says Unavailable

# The SIPp UAs: desk phones, phones by last digit, and the carrier.
STANDARD_UAS = [
    ("desk", "phone_answer.xml"),
    ("phones", "carrier_by_last_digit.xml"),
    ("carrier", "carrier.xml"),
]


def standard_phones() -> list[Phone]:
    phones = [Phone(extension, "desk") for extension in DESK]
    phones += [
        Phone(extension, "phones")
        for extension in (
            VOLUNTEER_HANGS_UP,
            VOLUNTEER_BUSY,
            VOLUNTEER_NO_ANSWER,
            VOLUNTEER_DECLINES,
            "1040",
        )
    ]
    phones.append(Phone(UNPLUGGED, None))
    return phones


@pytest.fixture(scope="session")
def _real_pbx_available() -> None:
    reason = missing_pieces()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the real-PBX tier must run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _needs_real_pbx(_real_pbx_available: None) -> None:
    """Every test of this tier needs the real Asterisk (skip or fail once, clearly)."""


@pytest.fixture(scope="session")
def pbx_folder() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="dialer-pbx-"))
    yield folder
    if os.environ.get("DIALER_TEST_KEEP_PBX") != "1":
        clean(folder)


@pytest.fixture
async def db(
    session_maker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The test database, emptied after the test (the dialer processes commit to it)."""
    yield session_maker
    await truncate_all(session_maker)


class RealPbx:
    """A running Asterisk with its SIPp UAs."""

    def __init__(self, asterisk: Asterisk, uas: dict[str, SippUA]) -> None:
        self.asterisk = asterisk
        self.uas = uas

    @property
    def carrier(self) -> SippUA:
        return self.uas["carrier"]

    def ua_of(self, extension: str) -> SippUA:
        for phone in self.asterisk.layout.phones:
            if phone.extension == extension and phone.ua is not None:
                return self.uas[phone.ua]
        raise KeyError(f"phone {extension} has no UA")


async def start_pbx(
    folder: Path, uas: list[tuple[str, str]], phones: list[Phone], **layout_options: object
) -> tuple[Asterisk, dict[str, SippUA]]:
    folder.mkdir(parents=True, exist_ok=True)
    agents = ua_set(folder, uas)
    ports = {name: ua.port for name, ua in agents.items()}
    ports["unplugged"] = free_port()
    layout = PbxLayout(phones=phones, ua_ports=ports, **layout_options)  # type: ignore[arg-type]
    asterisk = Asterisk(folder, layout)
    asterisk.write_config()
    return asterisk, agents


@pytest.fixture(scope="session")
async def pbx(_real_pbx_available: None, pbx_folder: Path, pg_url: str) -> AsyncIterator[RealPbx]:
    # Realtime reads the test database, as a deployment reads the dialer's.
    asterisk, agents = await start_pbx(
        pbx_folder / "main", STANDARD_UAS, standard_phones(), database=pg_url.rsplit("/", 1)[1]
    )
    async with pbx_running(asterisk, agents) as running:
        # Qualify has judged every phone: answering ones Avail, the
        # unplugged one Unavail (Asterisk then refuses to ring it).
        await asterisk.wait_for_contacts(
            {"1001": "Avail", VOLUNTEER_BUSY: "Avail", UNPLUGGED: "Unavail", "carrier": "Avail"}
        )
        yield running


@contextlib.asynccontextmanager
async def pbx_running(asterisk: Asterisk, agents: dict[str, SippUA]) -> AsyncIterator[RealPbx]:
    # Asterisk first, fully booted (Asterisk.start): SIP answers that reach
    # it while it boots are dropped.
    try:
        await asterisk.start()
        with running_uas(agents):
            yield RealPbx(asterisk, agents)
    finally:
        asterisk.stop()
