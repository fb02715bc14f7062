"""`dialer check-pbx` against a real Asterisk: each check passing, and failing.

The standard PBX passes every check; against it fail a wrong secret, a
missing outbound context, its unplugged phone 1099 and an extension it
does not have.  One broken PBX holds the other faults at once, each
asserted on its own: an outbound context that dials everything (and one
that refuses everything), a carrier trunk where nothing answers, an AMI
user without `originate`, phones qualify has not judged.  What check-pbx
says the dialplan does with a number is checked against what Asterisk
really does with it: real calls, and ``dialplan show``.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ami_bridge.codec import Action
from ami_bridge.simulator import RawAmiClient
from ami_bridge.tools.check import (
    CheckResult,
    Probe,
    Route,
    Verdict,
    check_pbx,
    probe_numbers,
    route_of,
)
from dialer.domain.compliance import DialingPolicy
from dialer.domain.vocabulary import Role
from dialer.store.models import User
from tests.e2e.webworld import password_hash
from tests.pbx.conftest import UNPLUGGED, VOLUNTEER_BUSY, RealPbx, pbx_running, start_pbx
from tests.pbx.realpbx import AMI_USER, Asterisk, Phone, free_port

# One xdist worker for the whole module: the broken PBX's fixture starts its
# own Asterisk, which split tests would start twice.
pytestmark = pytest.mark.xdist_group("pbx_check_broken")

POLICY = DialingPolicy.parse(["CA", "US"], ["+1900", "+1976"])
DIAL, REFUSE = probe_numbers(POLICY)
NO_ORIGINATE = "no-originate"
NO_ORIGINATE_SECRET = f"s{uuid.uuid4().hex}"
REFUSE_ALL = "dialer-refuse-all"
NEVER_QUALIFIED = "1060"  # qualify_frequency = 0
NOT_QUALIFIED_YET = "1061"  # its first qualify falls some time in the next day
TRICKY = "check-tricky"


async def run_check(
    asterisk: Asterisk,
    *,
    username: str = AMI_USER,
    secret: str | None = None,
    context: str = "dialer-outbound",
    supervision_context: str = "dialer-supervise",
    power_contexts: tuple[str, str] = ("dialer-power", "dialer-power-join"),
    extensions: Sequence[str] = (),
) -> dict[str, CheckResult]:
    results = await check_pbx(
        "127.0.0.1",
        asterisk.ami_port,
        username,
        SecretStr(asterisk.ami_secret if secret is None else secret),
        outbound_context=context,
        dial=DIAL,
        refuse=REFUSE,
        extensions=list(extensions),
        supervision_context=supervision_context,
        power_contexts=power_contexts,
        within=5.0,
    )
    return {result.name: result for result in results}


def command_line(
    asterisk: Asterisk, database_url: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """`dialer check-pbx` as an operator runs it, configured by the environment."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DIALER_")}
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        env.pop(name, None)
    env.update(
        LANG="C.UTF-8",
        DIALER_DATABASE_URL=database_url,
        DIALER_AMI_HOST="127.0.0.1",
        DIALER_AMI_PORT=str(asterisk.ami_port),
        DIALER_AMI_SECRET=asterisk.ami_secret,
        DIALER_ALLOWED_DESTINATIONS="CA,US",
    )
    return subprocess.run(
        [sys.executable, "-m", "dialer", "check-pbx", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def every_dialog(pbx: RealPbx) -> int:
    return sum(len(ua.dialogs()) for ua in pbx.uas.values())


# ------------------------------------------------------------ the standard PBX


async def test_the_standard_pbx_passes_and_nothing_rings(pbx: RealPbx) -> None:
    dialogs = every_dialog(pbx)
    results = await run_check(pbx.asterisk, extensions=["1001", VOLUNTEER_BUSY])
    assert all(result.ok and not result.warning for result in results.values()), results
    assert list(results) == [
        "connect",
        "login",
        "originate",
        "resync",
        "dialplan",
        *(f"allows {probe.number}" for probe in DIAL),
        *(f"refuses {probe.number}" for probe in REFUSE),
        "supervision",
        "power mode",
        "trunk",
        "phone 1001",
        f"phone {VOLUNTEER_BUSY}",
    ]
    assert results["supervision"].message == (
        "[dialer-supervise] rings organizers into calls (listen, whisper, barge)"
    )
    assert [probe.number for probe in DIAL] == ["+15062345678", "+12015550123"]
    assert results["refuses +18092345678"].message == (
        "international rate (+1 809, the Dominican Republic): extension _1809NXXXXXX goes to "
        "dialer-refuse (international-rate)"
    )
    assert results["allows +15062345678"].message == (
        "an example CA number: extension _1NXXNXXXXXX goes to dialer-place-call"
    )
    assert results["trunk"].message.startswith(
        "the carrier trunk carrier is reachable (qualify answered from sip:127.0.0.1:"
    )
    assert results["phone 1001"].message.startswith("phone 1001 is reachable")
    # Nothing rang: no SIP dialog anywhere, no channel left.
    await asyncio.sleep(0.5)
    assert every_dialog(pbx) == dialogs
    assert "0 active channels" in await pbx.asterisk.cli("core show channels")


async def test_an_unplugged_phone_and_a_wrong_extension_fail(pbx: RealPbx) -> None:
    results = await run_check(pbx.asterisk, extensions=["1001", UNPLUGGED, "1077"])
    assert results["phone 1001"].ok
    assert not results[f"phone {UNPLUGGED}"].ok
    assert results[f"phone {UNPLUGGED}"].message == (
        f"phone {UNPLUGGED} is unreachable: Asterisk's qualify gets no answer from it; is it "
        "plugged in and registered?"
    )
    assert not results["phone 1077"].ok
    assert results["phone 1077"].message.startswith(
        "volunteer extension 1077 is not a PJSIP endpoint on this PBX"
    )


async def test_a_wrong_secret_stops_at_the_login(pbx: RealPbx) -> None:
    results = await run_check(pbx.asterisk, secret="not-the-secret", extensions=["1001"])
    assert list(results) == ["connect", "login"]
    assert not results["login"].ok
    assert results["login"].message.startswith(
        f"login refused for AMI user {AMI_USER!r} (Authentication failed)"
    )


async def test_a_missing_outbound_context(pbx: RealPbx) -> None:
    results = await run_check(pbx.asterisk, context="dialer-outbund")
    assert results["originate"].ok  # the permission is there; the context is not
    assert not results["dialplan"].ok
    assert results["dialplan"].message.startswith(
        "the dialplan context 'dialer-outbund' is missing: add the dialer-outbound context"
    )
    assert not any(name.startswith(("allows", "refuses")) for name in results)


async def test_what_check_pbx_says_is_what_asterisk_does_with_a_call(pbx: RealPbx) -> None:
    """Every probe number, really called (from a Local channel: no phone rings):
    a refused one logs its refusal and never reaches the carrier; an allowed
    one reaches the carrier."""
    asterisk = pbx.asterisk
    probes = [*DIAL, *REFUSE]
    tag = uuid.uuid4().hex[:8]
    client = await RawAmiClient.connect("127.0.0.1", asterisk.ami_port)
    try:
        await client.login(AMI_USER, asterisk.ami_secret)
        routes = {
            probe.number: await show_route(client, "dialer-outbound", probe) for probe in probes
        }
        for probe in probes:
            client.send(
                Action.build(
                    "Originate",
                    {"Channel": f"Local/{probe.exten}@dialer-outbound", "Application": "Wait",
                     "Data": "1", "Timeout": 10000, "Async": True},
                    variables={"DIALER_CALL_ID": f"{tag}-{probe.exten}",
                               "DIALER_CALLERID": "15145550000"},
                )
            )  # fmt: skip

        def refusal(probe: Probe) -> str | None:
            found = re.search(
                rf"dialer call {tag}-{probe.exten} to {probe.exten} refused: ([-a-z]+)",
                asterisk.log(),
            )
            return found.group(1) if found else None

        async with asyncio.timeout(20):
            while not all(refusal(probe) or pbx.carrier.dialogs(probe.exten) for probe in probes):
                await asyncio.sleep(0.2)
            # The standard PBX goes back to the other tests without a call up.
            while "0 active channels" not in await asterisk.cli("core show channels"):
                await asyncio.sleep(0.2)
    finally:
        await client.close()
    for probe in probes:
        route = routes[probe.number]
        reason = refusal(probe)
        if probe in DIAL:
            assert route.verdict is Verdict.DIALS, (probe, route)
            assert pbx.carrier.dialogs(probe.exten) and reason is None, probe
        else:
            assert route.verdict is Verdict.REFUSES, (probe, route)
            assert reason is not None and not pbx.carrier.dialogs(probe.exten), probe
            assert route.how.endswith(f"goes to dialer-refuse ({reason})"), route


async def test_the_command_passes_on_the_standard_pbx(pbx: RealPbx) -> None:
    result = await asyncio.to_thread(
        command_line,
        pbx.asterisk,
        "sqlite+aiosqlite:///:memory:",
        "--extension",
        "1001",
        "--number",
        "+1 876 234 5678",  # Jamaica: the dialing policy refuses it, so must the dialplan
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "ok    phone 1001: phone 1001 is reachable" in result.stdout
    assert (
        "ok    refuses +18762345678: the number given with --number: extension _1876NXXXXXX goes "
        "to dialer-refuse (international-rate)"
    ) in lines
    assert "ok    allows +15062345678: an example CA number" in result.stdout
    assert not [line for line in lines if not line.startswith("ok    ")]
    assert pbx.asterisk.ami_secret not in result.stdout + result.stderr


# ------------------------------------------------------------- a broken PBX


def _dial_everything(files: dict[str, str]) -> None:
    """The outbound context replaced by one catch-all that dials every number."""
    pattern = re.compile(r"^\[dialer-outbound\]\n.*?(?=^\[)", re.M | re.S)
    assert len(pattern.findall(files["extensions.conf"])) == 1
    files["extensions.conf"] = pattern.sub(
        "[dialer-outbound]\n"
        "exten => _X.,1,Gosub(dialer-place-call,s,1(${EXTEN}))\n"
        " same => n,Hangup()\n\n",
        files["extensions.conf"],
    )


BROKEN_EXTENSIONS = f"""
[{REFUSE_ALL}]
exten => _X.,1,Gosub(dialer-refuse,s,1(not-allowed,${{EXTEN}}))

; Patterns whose order only Asterisk's specificity rules decide.
[{TRICKY}]
exten => _1NXX[2-9]XXXXXX,1,NoOp(set of 8)
exten => _1ZXXNXXXXXX,1,Hangup()
exten => 15145550100,1,Goto(dialer-place-call,s,1)
exten => _1514!,1,NoOp(zero or more)
 same => n,Congestion()
exten => _1514.,1,Gosub(dialer-refuse,s,1(one-or-more,${{EXTEN}}))
exten => _1-514-55X-XXXX,1,Dial(PJSIP/${{EXTEN}}@carrier)
exten => _15[1-4]4XXXXXXX,1,GotoIf($[1]?dialer-place-call,s,1)
include => {TRICKY}-more

[{TRICKY}-more]
exten => _44.,1,Gosub(dialer-place-call,s,1(${{EXTEN}}))
"""

BROKEN_MANAGER = f"""
[{NO_ORIGINATE}]
secret = {NO_ORIGINATE_SECRET}
deny = 0.0.0.0/0.0.0.0
permit = 127.0.0.1/255.255.255.255
read = call,reporting
write = call,reporting
"""


def unqualified_phones() -> str:
    return "".join(
        f"[{extension}](volunteer-endpoint)\naors = {extension}\n\n"
        f"[{extension}](volunteer-aor)\n"
        f"contact = sip:{extension}@127.0.0.1:{free_port(socket.SOCK_DGRAM)}\n"
        f"qualify_frequency = {frequency}\n\n"
        for extension, frequency in ((NEVER_QUALIFIED, 0), (NOT_QUALIFIED_YET, 86400))
    )


@pytest.fixture(scope="module")
async def broken(pbx_folder: Path) -> AsyncIterator[Asterisk]:
    asterisk, agents = await start_pbx(
        pbx_folder / "check-broken",
        [("desk", "phone_answer.xml"), ("carrier", "carrier.xml")],
        [Phone("1001", "desk"), Phone(UNPLUGGED, None)],
        appended={
            "extensions.conf": BROKEN_EXTENSIONS,
            "manager.conf": BROKEN_MANAGER,
            "pjsip.conf": unqualified_phones(),
        },
        breakage=_dial_everything,
    )
    # The carrier's SIPp never starts: its contact is a port where nothing answers.
    del agents["carrier"]
    async with pbx_running(asterisk, agents):
        await asterisk.cli("core waitfullybooted")
        await asterisk.wait_for_contacts(
            {"1001": "Avail", UNPLUGGED: "Unavail", "carrier": "Unavail"}
        )
        yield asterisk


async def test_a_dialplan_that_dials_everything_is_toll_fraud(broken: Asterisk) -> None:
    results = await run_check(broken)
    assert results["dialplan"].ok
    for probe in DIAL:
        assert results[f"allows {probe.number}"].ok
    for probe in REFUSE:
        result = results[f"refuses {probe.number}"]
        assert not result.ok
        assert f"{probe.what}: [dialer-outbound] DIALS it: extension _X. goes to " in result.message
    fraud = results["toll fraud"]
    assert not fraud.ok
    assert fraud.message.startswith(
        f"[dialer-outbound] may dial {len(REFUSE)} of the {len(REFUSE)} numbers it must refuse "
        "(+19002345678, premium rate (+1 900); "
    )
    assert "run up your phone bill on premium-rate and international calls" in fraud.message


async def test_a_dialplan_that_refuses_everything(broken: Asterisk) -> None:
    results = await run_check(broken, context=REFUSE_ALL)
    for probe in REFUSE:
        assert results[f"refuses {probe.number}"].ok
    assert "toll fraud" not in results
    for probe in DIAL:
        result = results[f"allows {probe.number}"]
        assert not result.ok
        assert result.message == (
            f"{probe.what}, which the dialer may call, is refused by [{REFUSE_ALL}]: extension "
            "_X. goes to dialer-refuse (not-allowed); add a pattern for it that goes to "
            "dialer-place-call (see asterisk-config/extensions.conf)"
        )


async def test_an_unreachable_trunk(broken: Asterisk) -> None:
    results = await run_check(broken)
    trunk = results["trunk"]
    assert not trunk.ok
    carrier_port = broken.layout.ua_ports["carrier"]
    assert trunk.message == (
        f"the carrier trunk carrier is unreachable: Asterisk's qualify gets no answer from "
        f"sip:127.0.0.1:{carrier_port}; is that the carrier's address, and does the carrier let "
        "this PBX in?"
    )


async def test_phones_qualify_has_not_judged_pass_with_a_warning(broken: Asterisk) -> None:
    results = await run_check(broken, extensions=[NEVER_QUALIFIED, NOT_QUALIFIED_YET])
    never = results[f"phone {NEVER_QUALIFIED}"]
    assert never.ok and never.warning
    assert str(never) == (
        f"warn  phone {NEVER_QUALIFIED}: phone {NEVER_QUALIFIED} is never qualified "
        "(qualify_frequency = 0 in its AOR), so an unplugged phone only shows when a call to it "
        "fails: set qualify_frequency = 30"
    )
    # Not a failure: Asterisk rings a phone it has not qualified yet.
    not_yet = results[f"phone {NOT_QUALIFIED_YET}"]
    assert not_yet.ok and not_yet.warning
    assert not_yet.message == (
        f"phone {NOT_QUALIFIED_YET} has not been qualified yet (Asterisk asks it every 86400 s), "
        "so whether it answers is not known: run check-pbx again in 86400 s"
    )


async def test_a_pbx_without_the_supervision_context_passes_with_a_warning(
    broken: Asterisk,
) -> None:
    results = await run_check(broken, supervision_context="no-such-supervise")
    supervision = results["supervision"]
    assert supervision.ok and supervision.warning
    assert str(supervision) == (
        "warn  supervision: the dialplan context 'no-such-supervise' is missing, so Listen, "
        "Whisper and Barge on the live panel ring nobody: add the no-such-supervise context "
        "from asterisk-config/extensions.conf (with dialer-spy; DIALER_SUPERVISION_CONTEXT "
        "names it)"
    )
    # A context that lacks one of the three is named for what it lacks.
    partial = await run_check(broken, supervision_context="dialer-spy-notice")
    assert partial["supervision"].warning
    assert "has no listen, whisper, barge extension" in partial["supervision"].message


async def test_a_pbx_without_power_modes_contexts_passes_with_a_warning(
    broken: Asterisk,
) -> None:
    results = await run_check(broken, power_contexts=("dialer-power", "no-such-join"))
    power = results["power mode"]
    assert power.ok and power.warning
    assert power.message.startswith(
        "the dialplan context(s) 'no-such-join' are missing, so power sessions end as soon "
        "as they start"
    )
    standard = await run_check(broken)
    assert standard["power mode"].ok and not standard["power mode"].warning


async def test_a_user_without_originate(broken: Asterisk) -> None:
    results = await run_check(broken, username=NO_ORIGINATE, secret=NO_ORIGINATE_SECRET)
    assert results["login"].ok
    assert not results["originate"].ok
    assert results["originate"].message == (
        "the AMI user may not originate calls: add `originate` to its `write =` line "
        "(write = call,originate,reporting)"
    )
    # The rest needs only `reporting`, which this user has.
    assert results["resync"].ok and results["dialplan"].ok


async def test_the_command_fails_on_the_broken_pbx(
    broken: Asterisk, sessions: async_sessionmaker[AsyncSession], pg_url: str
) -> None:
    # No --extension: the phones of every active user.
    async with sessions.begin() as session:
        for username, extension, active in (
            ("vera", "1001", True),
            ("ursula", UNPLUGGED, True),
            ("gone", "1077", False),
        ):
            session.add(
                User(
                    username=username,
                    role=Role.VOLUNTEER,
                    password_hash=password_hash(),
                    sip_extension=extension,
                    is_active=active,
                )
            )
    result = await asyncio.to_thread(command_line, broken, pg_url)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    failed = {
        line.split(":")[0].removeprefix("FAIL  ") for line in lines if line.startswith("FAIL")
    }
    assert failed == {
        *(f"refuses {probe.number}" for probe in REFUSE),
        "toll fraud",
        "trunk",
        f"phone {UNPLUGGED}",
    }
    assert "ok    phone 1001: phone 1001 is reachable" in result.stdout
    assert "1077" not in result.stdout


# ------------------------------------------------- Asterisk's choice of pattern


async def show_route(client: RawAmiClient, context: str, probe: Probe) -> Route:
    listing = await client.request_list(
        Action.build("ShowDialPlan", {"Context": context, "Extension": probe.exten})
    )
    return route_of(context, [item for item in listing if item.event == "ListDialplan"])


def first_listed(cli_output: str) -> str | None:
    found = re.search(r"'([^']+)' =>", cli_output)
    return found.group(1) if found else None


@pytest.mark.parametrize(
    ("number", "extension", "verdict"),
    [
        ("15145550100", "15145550100", Verdict.DIALS),  # a literal beats any pattern
        ("15145550199", "_1-514-55X-XXXX", Verdict.DIALS),  # dashes do not count
        ("15145660199", "_1514.", Verdict.REFUSES),  # a literal beats a set; '.' beats '!'
        ("151455", "_1514.", Verdict.REFUSES),
        ("1514", "_1514!", Verdict.REFUSES),  # '!' matches nothing at all too
        ("15244567890", "_15[1-4]4XXXXXXX", Verdict.UNKNOWN),  # a set of 4 beats N (8)
        ("16045678901", "_1NXX[2-9]XXXXXX", Verdict.REFUSES),  # N (8) beats Z (9); runs off
        ("11045678901", "_1ZXXNXXXXXX", Verdict.REFUSES),  # N is 2-9, Z 1-9; it hangs up
        ("442079460018", "_44.", Verdict.DIALS),  # from the included context
        ("33123456789", None, Verdict.REFUSES),  # nothing matches
    ],
)
async def test_the_extension_check_pbx_follows_is_the_one_asterisk_picks(
    broken: Asterisk, number: str, extension: str | None, verdict: Verdict
) -> None:
    client = await RawAmiClient.connect("127.0.0.1", broken.ami_port)
    try:
        await client.login(AMI_USER, broken.ami_secret)
        route = await show_route(client, TRICKY, Probe(f"+{number}", "a number"))
    finally:
        await client.close()
    assert first_listed(await broken.cli(f"dialplan show {number}@{TRICKY}")) == extension
    assert route.extension == extension
    assert route.verdict is verdict, route
