"""`dialer check-pbx` against the simulator: the checks it can answer.

The simulator knows Login, Originate, CoreShowChannels and Getvar of
PJSIP_ENDPOINT, not ShowDialPlan nor the qualify results of PJSIP_AOR and
PJSIP_CONTACT: against it the dialplan, trunk and phone checks fail, which
shows how check-pbx words an AMI that does not answer them.  Every check,
passing and failing, runs against a real Asterisk in
tests/pbx/test_check_pbx_real.py.  The last tests cover the parts without
I/O: which numbers are probed, and how a dialplan listing is read.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from ami_bridge.codec import Message
from ami_bridge.simulator import LEAST_PRIVILEGE_READ, AmiSimulator, AmiUser
from ami_bridge.tools.check import CheckResult, Verdict, check_pbx, probe_numbers, route_of
from dialer.domain.compliance import DialingPolicy

SECRET = "check-secret"
DIAL, REFUSE = probe_numbers(DialingPolicy.parse(["CA"], []))


@pytest.fixture
async def simulator() -> AsyncIterator[AmiSimulator]:
    sim = AmiSimulator(
        username="dialer",
        secret=SECRET,
        least_privilege=True,
        contexts={"dialer-outbound"},
        endpoints={"1001", "1002"},
        users=[
            AmiUser("no-originate", SECRET, LEAST_PRIVILEGE_READ, frozenset({"call", "reporting"}))
        ],
    )
    await sim.start()
    yield sim
    await sim.stop()


async def run_check(
    sim: AmiSimulator | None,
    *,
    port: int | None = None,
    username: str = "dialer",
    secret: str = SECRET,
    context: str = "dialer-outbound",
    extensions: tuple[str, ...] = ("1001",),
) -> dict[str, CheckResult]:
    results = await check_pbx(
        "127.0.0.1",
        port if port is not None else (sim.port if sim else 0),
        username,
        SecretStr(secret),
        outbound_context=context,
        dial=DIAL,
        refuse=REFUSE,
        extensions=list(extensions),
        within=2.0,
    )
    return {result.name: result for result in results}


async def test_what_the_simulator_answers_passes_in_order(simulator: AmiSimulator) -> None:
    results = await run_check(simulator, extensions=("1001", "1002"))
    assert list(results) == [
        "connect",
        "login",
        "originate",
        "resync",
        "dialplan",
        "trunk",
        "phone 1001",
        "phone 1002",
    ]
    assert all(results[name].ok for name in ("connect", "login", "originate", "resync"))
    assert simulator.active_calls == 0  # nothing rang


async def test_what_the_simulator_cannot_answer_fails_in_plain_words(
    simulator: AmiSimulator,
) -> None:
    results = await run_check(simulator)
    assert not results["dialplan"].ok
    assert results["dialplan"].message.startswith(
        "check-pbx cannot read the dialplan (ShowDialPlan: Invalid/unknown command: ShowDialPlan."
    )
    assert results["dialplan"].message.endswith(
        ", so which numbers it dials or refuses is not known"
    )
    assert not results["trunk"].ok
    assert results["trunk"].message.startswith(
        "DIALER_TRUNK is not set, so the dialplan has no trunk to dial contacts through"
    )
    # The endpoint exists, but nothing says it registered.
    assert not results["phone 1001"].ok
    assert results["phone 1001"].message.startswith(
        "phone 1001 is unreachable: it has not registered with Asterisk"
    )


async def test_cannot_connect() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    results = await run_check(None, port=free_port)
    assert not results["connect"].ok
    assert results["connect"].message.startswith(
        f"cannot connect to AMI at 127.0.0.1:{free_port} (Connection refused)"
    )


async def test_login_refused(simulator: AmiSimulator) -> None:
    results = await run_check(simulator, secret="wrong")
    assert not results["login"].ok
    assert "login refused for AMI user 'dialer' (Authentication failed)" in results["login"].message
    assert "originate" not in results


async def test_missing_write_class(simulator: AmiSimulator) -> None:
    results = await run_check(simulator, username="no-originate")
    assert not results["originate"].ok
    assert "may not originate calls: add `originate` to its `write =` line" in (
        results["originate"].message
    )


async def test_outbound_context_missing(simulator: AmiSimulator) -> None:
    results = await run_check(simulator, context="dialer-outbund")
    assert results["originate"].ok
    assert not results["dialplan"].ok
    # Without ShowDialPlan, the Originate probe's "Extension does not exist." says it.
    assert results["dialplan"].message.startswith(
        f"the dialplan context 'dialer-outbund' is missing or does not accept {DIAL[0].exten}: "
        "add the dialer-outbound context"
    )


async def test_volunteer_endpoint_unknown(simulator: AmiSimulator) -> None:
    results = await run_check(simulator, extensions=("1001", "1077"))
    assert "is not a PJSIP endpoint" not in results["phone 1001"].message
    assert not results["phone 1077"].ok
    assert "volunteer extension 1077 is not a PJSIP endpoint" in results["phone 1077"].message


async def test_the_command_exit_status(simulator: AmiSimulator, tmp_path: object) -> None:
    env = {
        **os.environ,
        "DIALER_AMI_PORT": str(simulator.port),
        "DIALER_AMI_USERNAME": "dialer",
        "DIALER_AMI_SECRET": SECRET,
        "DIALER_DATABASE_URL": "sqlite+aiosqlite:///:memory:",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dialer", "check-pbx", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    # The simulator cannot pass the dialplan checks: the passing run of the
    # command is in tests/pbx/test_check_pbx_real.py.
    bad = await asyncio.to_thread(run, "--extension", "1077")
    assert bad.returncode == 1
    assert "ok    login: logged in as 'dialer'" in bad.stdout
    assert "FAIL  phone 1077: volunteer extension 1077 is not a PJSIP endpoint" in bad.stdout
    assert SECRET not in bad.stdout + bad.stderr


def test_route_of_reads_the_priorities_in_order() -> None:
    def item(priority: int, application: str, data: str = "") -> Message:
        return Message(
            {
                "Event": "ListDialplan",
                "Context": "ctx",
                "Extension": "_X.",
                "Priority": str(priority),
                "Application": application,
                "AppData": data,
            }
        )

    place = item(2, "Gosub", "dialer-place-call,s,1(${EXTEN})")
    assert route_of("ctx", [item(1, "NoOp", "x"), place]).verdict is Verdict.DIALS
    # A gap in the priorities: Asterisk stops there and hangs up.
    assert route_of("ctx", [item(1, "NoOp"), item(3, "Dial", "PJSIP/1@t")]).verdict is (
        Verdict.REFUSES
    )
    assert route_of("ctx", [item(1, "AGI", "dial.agi")]).verdict is Verdict.UNKNOWN
    assert route_of("ctx", [item(1, "Goto", "elsewhere,s,1")]).verdict is Verdict.UNKNOWN
    assert route_of("ctx", []).how == "no extension matches it, so Asterisk refuses the call"


def test_the_probe_numbers_follow_the_dialing_policy() -> None:
    dial, refuse = probe_numbers(DialingPolicy.parse(["CA", "+33"], []), "+18092345678")
    assert [probe.number for probe in dial] == ["+33123456789", "+15062345678"]
    numbers = [probe.number for probe in refuse]
    assert numbers[0] == "+18092345678"  # --number: the policy refuses it
    assert {"+19002345678", "+15149761234", "+15145551212"} <= set(numbers)
    assert "+33891123456" in numbers and "+33884012345" in numbers  # French premium, shared cost
    assert "+441212345678" in numbers  # a country the policy does not allow
    # Allowed by the policy, the Dominican Republic is no longer a number to refuse.
    dial, refuse = probe_numbers(DialingPolicy.parse(["CA", "DO"], []))
    assert "+18092345678" in [probe.number for probe in dial]
    assert "+18092345678" not in [probe.number for probe in refuse]
