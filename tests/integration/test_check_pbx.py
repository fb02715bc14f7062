"""`dialer check-pbx` against the simulator: one test per failure it reports."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from ami_bridge.check import CheckResult, check_pbx
from ami_bridge.simulator import LEAST_PRIVILEGE_READ, AmiSimulator, AmiUser

SECRET = "check-secret"


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
        probe_number="15145550184",
        extensions=list(extensions),
        within=2.0,
    )
    return {result.name: result for result in results}


async def test_everything_in_order(simulator: AmiSimulator) -> None:
    results = await run_check(simulator, extensions=("1001", "1002"))
    assert all(result.ok for result in results.values()), results
    assert list(results) == [
        "connect",
        "login",
        "originate",
        "resync",
        "endpoint 1001",
        "endpoint 1002",
    ]
    assert simulator.active_calls == 0  # nothing rang


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
    assert not results["dialplan"].ok
    assert "the dialplan context 'dialer-outbund' is missing" in results["dialplan"].message


async def test_volunteer_endpoint_unknown(simulator: AmiSimulator) -> None:
    results = await run_check(simulator, extensions=("1001", "1077"))
    assert results["endpoint 1001"].ok
    assert not results["endpoint 1077"].ok
    assert "volunteer extension 1077 is not a PJSIP endpoint" in results["endpoint 1077"].message


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

    good = await asyncio.to_thread(run, "--extension", "1001")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "ok    endpoint 1001: PJSIP endpoint 1001 exists" in good.stdout
    assert SECRET not in good.stdout + good.stderr
    bad = await asyncio.to_thread(run, "--extension", "1077")
    assert bad.returncode == 1
    assert "FAIL  endpoint 1077" in bad.stdout
