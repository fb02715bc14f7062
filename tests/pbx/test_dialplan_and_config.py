"""The shipped dialplan and configuration on a real Asterisk: what they refuse, and
how they fail when an operator forgets a piece."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ami_bridge.asterisk_conf import ContextMatcher, load_config, parse_dialplan
from ami_bridge.codec import Action, Decoder, Message
from ami_bridge.outbound_rules import outbound_patterns
from tests.pbx.conftest import STANDARD_UAS, RealPbx, pbx_running, standard_phones, start_pbx
from tests.pbx.product import Browser, dialer_running, seed
from tests.pbx.realpbx import AMI_USER

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

# Numbers the dialplan must never dial, whatever reaches it (a leaked AMI
# secret, a bug upstream), with the reason it logs.  Phones 1016 to 1027
# place them, one each (1028 and 1029 belong to other tests).
TOLL_FRAUD = {
    "19005550123": "premium-rate",
    "15149765555": "premium-rate",
    "12125551212": "directory-assistance",
    "17005550123": "non-geographic",
    "15005550123": "non-geographic",
    "15335550123": "non-geographic",
    "15255550123": "non-geographic",  # _152ZNXXXXXX: a class in the pattern
    "19115550123": "service-code",  # _1N11NXXXXXX must beat _1NXXNXXXXXX
    "18095550110": "international-rate",
    "18765550123": "international-rate",
    "33142685300": "not-allowed",
    "1514555012": "not-allowed",
}


class RawAmi:
    """The dialer's AMI login used directly, as a leaked secret would be."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = Decoder()
        self.messages: list[Message] = []

    @classmethod
    async def login(cls, port: int, secret: str) -> RawAmi:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        ami = cls(reader, writer)
        await ami.send(Action.build("Login", {"Username": AMI_USER, "Secret": secret}))
        await ami.until(lambda message: message.get("Response") is not None)
        return ami

    async def send(self, action: Action) -> None:
        self.writer.write(action.encode())
        await self.writer.drain()

    async def until(self, wanted: object, timeout: float = 20) -> Message:
        async with asyncio.timeout(timeout):
            while True:
                for message in self.messages:
                    if wanted(message):  # type: ignore[operator]
                        return message
                data = await self.reader.read(65536)
                assert data, "Asterisk closed the AMI connection"
                self.messages.extend(self.decoder.feed(data))

    def close(self) -> None:
        self.writer.close()


async def test_toll_fraud_numbers_are_refused_by_the_dialplan_itself(pbx: RealPbx) -> None:
    ami = await RawAmi.login(pbx.asterisk.ami_port, pbx.asterisk.ami_secret)
    try:
        phones = [f"10{16 + index}" for index in range(len(TOLL_FRAUD))]
        for index, (number, phone) in enumerate(zip(TOLL_FRAUD, phones, strict=True)):
            call_id = f"fraud{index}"
            await ami.send(
                Action.build(
                    "Originate",
                    {
                        "Channel": f"PJSIP/{phone}",
                        "Context": "dialer-outbound",
                        "Exten": number,
                        "Priority": "1",
                        "Async": "true",
                        "Timeout": "10000",
                        "ChannelId": f"{call_id}-v",
                    },
                    variables={"DIALER_CALL_ID": call_id, "DIALER_CALLERID": "15145550000"},
                    action_id=call_id,
                )
            )
        for index in range(len(TOLL_FRAUD)):
            # The volunteer's phone answered; the dialplan hung it up, cause 34.
            hangup = await ami.until(
                lambda message, i=index: (
                    message.event == "Hangup" and message.get("Uniqueid") == f"fraud{i}-v"
                )
            )
            assert hangup.get("Cause") == "34"
    finally:
        ami.close()
    log = pbx.asterisk.log()
    for index, (number, reason) in enumerate(TOLL_FRAUD.items()):
        assert pbx.carrier.dialogs(number) == [], f"{number} reached the carrier"
        assert f"dialer call fraud{index} to {number} refused: {reason}" in log


async def test_a_click_without_any_caller_id_is_refused_before_a_phone_rings(
    pbx: RealPbx, pg_url: str, db: async_sessionmaker[AsyncSession], pbx_folder: Path
) -> None:
    # No caller ID on the campaign, and no DIALER_DEFAULT_CALLER_ID.
    world = await seed(db, {"nia": "1028"}, {"ned": ("+15145550300", "nia")}, caller_ids=[])
    async with (
        dialer_running(pg_url, pbx.asterisk, pbx_folder) as dialer,
        Browser.signed_in(dialer.url, "nia") as nia,
    ):
        status, body = await nia.api(
            "POST",
            "/api/calls",
            {"contact_id": world.contacts["ned"], "campaign_id": world.campaign_id},
        )
    assert status == 409, body
    assert body["error"]["code"] == "no_caller_id"
    await asyncio.sleep(1)
    assert pbx.ua_of("1028").dialogs("1028") == []
    assert pbx.carrier.dialogs("15145550300") == []


async def test_a_missing_pjsip_secrets_file_fails_loudly(pbx_folder: Path) -> None:
    def forget_secrets(files: dict[str, str]) -> None:
        del files["pjsip_secrets.conf"]

    asterisk, agents = await start_pbx(
        pbx_folder / "no-secrets", STANDARD_UAS, standard_phones()[:2], breakage=forget_secrets
    )
    async with pbx_running(asterisk, agents):
        endpoints = await asterisk.cli("pjsip show endpoints")
    # No phone without its password: nothing loads, and the log says why.
    assert "No objects found" in endpoints
    assert (
        "The file 'pjsip_secrets.conf' was listed as a #include but it does not exist"
        in asterisk.log()
    )


async def test_asterisk_picks_the_extension_the_test_matcher_picks(pbx: RealPbx) -> None:
    """The exhaustive unit test (tests/unit/test_dial_rules.py) runs the dialplan
    with ContextMatcher; here real Asterisk says which extension it runs for
    one number of each generated pattern, and for numbers two patterns share."""
    dialplan = parse_dialplan(load_config(ROOT / "asterisk-config" / "extensions.conf"))
    matcher = ContextMatcher(dialplan["dialer-outbound"].extensions())
    numbers = [_example_of(pattern.pattern) for pattern in outbound_patterns()]
    numbers += ["15009765555", "19005551212", "17879765555", "19115551212", "18099765555"]
    for number in numbers:
        listing = await pbx.asterisk.cli(f"dialplan show {number}@dialer-outbound")
        # Asterisk lists the matching extensions in the order it tries them.
        first = re.search(r"'(_?[^']+)' =>", listing)
        assert first is not None, listing
        assert first.group(1) == matcher(number), (number, listing)


def _example_of(pattern: str) -> str:
    """A number matching ``pattern``: each class's first digit, '.' as 3 zeros."""
    digits = []
    index = 1
    while index < len(pattern):
        char = pattern[index]
        if char == "[":
            end = pattern.index("]", index)
            digits.append(pattern[index + 1])
            index = end + 1
            continue
        digits.append({"X": "0", "Z": "1", "N": "2", ".": "000"}.get(char, char))
        index += 1
    return "".join(digits)
