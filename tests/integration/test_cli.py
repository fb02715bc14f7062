"""The `dialer` command as a user runs it: a real process against PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.passwords import verify_password
from dialer.domain.vocabulary import (
    CallOutcome,
    CallState,
    CampaignStatus,
    DispositionOutcome,
    Role,
    VolunteerPhone,
)
from dialer.store.models import CallAttempt, Campaign, Contact, Disposition, TeamMember, User

Sessions = async_sessionmaker[AsyncSession]
CSV = Path(__file__).parent.parent / "fixtures" / "csv"


async def dialer(
    url: str,
    *args: str,
    stdin: str = "",
    cwd: Path | None = None,
    locale: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DIALER_DATABASE_URL": url, "DIALER_DEFAULT_REGION": "CA"}
    # English unless the test asks otherwise, whatever shell runs the suite.
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        env.pop(name, None)
    env.update(locale if locale is not None else {"LANG": "C.UTF-8"})
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "dialer", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=cwd,
        check=False,
    )


async def test_help_lists_every_command(pg_url: str) -> None:
    result = await dialer(pg_url, "--help")
    assert result.returncode == 0
    for command in ("db", "user", "import-contacts", "export-results"):
        assert command in result.stdout


async def test_db_upgrade_is_idempotent(pg_url: str) -> None:
    result = await dialer(pg_url, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "database upgraded to head"


async def test_user_add_with_a_password_from_stdin(pg_url: str, sessions: Sessions) -> None:
    result = await dialer(
        pg_url,
        "user",
        "add",
        "alice",
        "--role",
        "volunteer",
        "--extension",
        "1001",
        "--team",
        "Montreal",
        "--pbx",
        "east",
        "--password-stdin",
        stdin="correct horse battery\n",
    )
    assert result.returncode == 0, result.stderr
    assert "password" not in result.stdout
    async with sessions() as session:
        alice = await session.scalar(select(User).where(User.username == "alice"))
        assert alice is not None
        assert (alice.role, alice.sip_extension, alice.pbx) == (Role.VOLUNTEER, "1001", "east")
        assert verify_password(alice.password_hash, "correct horse battery")
        assert await session.scalar(select(TeamMember.user_id)) == alice.id


async def test_user_add_refuses_duplicates_and_bad_extensions(
    pg_url: str, sessions: Sessions
) -> None:
    assert (await dialer(pg_url, "user", "add", "bob")).returncode == 0
    duplicate = await dialer(pg_url, "user", "add", "bob")
    assert duplicate.returncode == 1
    assert "Error: user 'bob' already exists" in duplicate.stderr
    hostile = await dialer(
        pg_url, "user", "add", "mallory", "--extension", "1001\r\nAction: Command"
    )
    assert hostile.returncode == 1
    assert "a SIP extension may only use letters, digits" in hostile.stderr
    # The PBX name becomes an MQTT topic level and a NOTIFY payload.
    wildcard = await dialer(pg_url, "user", "add", "mallory", "--pbx", "east/#")
    assert wildcard.returncode == 1
    assert "a PBX name may only use letters, digits" in wildcard.stderr


async def test_user_phones_from_the_command_line(pg_url: str, sessions: Sessions) -> None:
    created = await dialer(
        pg_url, "user", "add", "wendy", "--phone", "browser", "--password-stdin",
        stdin="correct horse battery\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    refused = await dialer(
        pg_url, "user", "phone", "wendy", "own_number", "--own-number", "+44 20 7946 0958"
    )
    assert refused.returncode == 1
    assert "the dialing policy does not allow calls to +442079460958" in refused.stderr
    given = await dialer(
        pg_url, "user", "phone", "wendy", "own_number", "--own-number", "514 555 0123"
    )
    assert given.returncode == 0, given.stderr
    assert given.stdout.strip() == ("wendy now calls with: their own phone number (+15145550123)")
    async with sessions() as session:
        wendy = await session.scalar(select(User).where(User.username == "wendy"))
        assert wendy is not None
        assert (wendy.phone, wendy.own_number) == (VolunteerPhone.OWN_NUMBER, "+15145550123")
        # Their browser phone's extension stays theirs; its secret went with it.
        assert wendy.sip_extension == "7000" and wendy.sip_secret is None
    back = await dialer(pg_url, "user", "phone", "wendy", "browser")
    assert back.stdout.strip() == "wendy now calls with: browser (7000)"
    nobody = await dialer(pg_url, "user", "phone", "nobody", "desk")
    assert nobody.returncode == 1 and "no user 'nobody'" in nobody.stderr


async def test_import_exit_codes_and_report(
    pg_url: str, sessions: Sessions, tmp_path: Path
) -> None:
    good = await dialer(pg_url, "import-contacts", str(CSV / "good.csv"))
    assert good.returncode == 0, good.stderr
    # Marie's Paris number is imported, and flagged: the policy allows Canada only.
    assert good.stdout.strip() == (
        "4 imported, 0 updated, 0 unchanged, 0 rejected; 1 row has a number that will not be dialed"
    )
    assert (
        "line 4: +33 1 42 68 53 00 will not be dialed: "
        "the dialing policy does not allow calls to FR"
    ) in good.stderr

    errors = tmp_path / "errors.csv"
    bad = await dialer(
        pg_url, "import-contacts", str(CSV / "malformed.csv"), "--errors-file", str(errors)
    )
    assert bad.returncode == 3
    assert bad.stdout.strip() == "1 imported, 0 updated, 0 unchanged, 8 rejected"
    assert f"{CSV / 'malformed.csv'}:line 3: no phone number" in bad.stderr
    with errors.open() as handle:
        rows = list(csv.reader(handle))
    # The rejected rows as they were in the file, to correct and import again.
    assert rows[0] == [
        "line",
        "reason",
        "first_name",
        "last_name",
        "phone",
        "email",
        "support_score",
        "language",
        "timezone",
    ]
    assert rows[1][0:2] == ["3", "no phone number"] and rows[1][2:4] == ["No", "Phone"]
    assert len(rows) == 9

    # A rejected row goes back into a spreadsheet: its formulas are neutralised.
    hostile = tmp_path / "hostile.csv"
    hostile.write_text('first_name,phone\n"=HYPERLINK(""http://x.example"")",not a number\n')
    await dialer(pg_url, "import-contacts", str(hostile), "--errors-file", str(errors))
    with errors.open() as handle:
        rows = list(csv.reader(handle))
    assert rows[1][2] == '\'=HYPERLINK("http://x.example")'

    missing = await dialer(pg_url, "import-contacts", str(CSV / "no_phone.csv"))
    assert missing.returncode == 1
    assert "no phone column in the header" in missing.stderr

    empty = await dialer(pg_url, "import-contacts", str(CSV / "empty.csv"))
    assert empty.returncode == 1
    assert "the file is empty" in empty.stderr


async def test_import_keeps_values_on_file_unless_told_to_overwrite(
    pg_url: str, sessions: Sessions, tmp_path: Path
) -> None:
    assert (await dialer(pg_url, "import-contacts", str(CSV / "good.csv"))).returncode == 0
    renamed = tmp_path / "renamed.csv"
    renamed.write_text("first_name,last_name,phone\nAda,Duplicate,514 555 0184\n")
    kept = await dialer(pg_url, "import-contacts", str(renamed))
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.strip() == (
        "0 imported, 0 updated, 1 unchanged, 0 rejected; "
        "1 row differed from the contact on file, which was kept"
    )
    assert (
        f"{renamed}:line 2: Ada Lovelace, name: kept 'Ada Lovelace', the file says 'Ada Duplicate'"
    ) in kept.stderr
    changes = tmp_path / "changes.csv"
    replaced = await dialer(
        pg_url, "import-contacts", str(renamed), "--overwrite", "--changes-file", str(changes)
    )
    assert replaced.returncode == 0, replaced.stderr
    assert "name: changed 'Ada Lovelace' to 'Ada Duplicate'" in replaced.stderr
    with changes.open() as handle:
        rows = list(csv.reader(handle))
    assert rows[1][3:7] == ["name", "replaced", "Ada Lovelace", "Ada Duplicate"]
    async with sessions() as session:
        names = set((await session.scalars(select(Contact.last_name))).all())
    assert "Duplicate" in names and "Lovelace" not in names


async def test_import_speaks_the_language_of_the_environment(
    pg_url: str, sessions: Sessions, tmp_path: Path
) -> None:
    french = {"LANG": "fr_CA.UTF-8"}
    bad = await dialer(pg_url, "import-contacts", str(CSV / "malformed.csv"), locale=french)
    assert bad.returncode == 3
    assert bad.stdout.strip() == "1 importé, 0 mis à jour, 0 inchangé, 8 rejetés"
    assert f"{CSV / 'malformed.csv'}:ligne 3 : aucun numéro de téléphone" in bad.stderr
    assert "ligne 4 : nombre de chiffres incorrect : '555-12'" in bad.stderr
    assert "ligne 10 : CSV mal formé : fin de données inattendue" in bad.stderr

    empty = await dialer(pg_url, "import-contacts", str(CSV / "empty.csv"), locale=french)
    assert empty.returncode == 1
    assert "le fichier est vide" in empty.stderr

    # LC_ALL wins over LANG; a language we have no catalog for means English.
    for locale, summary in (
        ({"LANG": "fr_CA.UTF-8", "LC_ALL": "en_CA.UTF-8"}, "4 imported, 0 updated, 0 unchanged"),
        ({"LANG": "de_DE.UTF-8"}, "0 imported, 0 updated, 4 unchanged"),
    ):
        good = await dialer(pg_url, "import-contacts", str(CSV / "good.csv"), locale=locale)
        assert good.returncode == 0, good.stderr
        assert good.stdout.strip() == (
            f"{summary}, 0 rejected; 1 row has a number that will not be dialed"
        )


async def test_export_results(pg_url: str, sessions: Sessions, tmp_path: Path) -> None:
    async with sessions.begin() as session:
        volunteer = User(username="alice", password_hash="x", role=Role.VOLUNTEER)
        contact = Contact(first_name='=HYPERLINK("evil")', last_name="Lovelace")
        campaign = Campaign(
            title="GOTV",
            status=CampaignStatus.ACTIVE,
            survey={"questions": [{"id": "vote", "label": "Will you vote?", "type": "yes_no"}]},
        )
        session.add_all([volunteer, contact, campaign])
        await session.flush()
        call = CallAttempt(
            call_id="c1",
            campaign_id=campaign.id,
            contact_id=contact.id,
            volunteer_id=volunteer.id,
            number_e164="+15145550184",
            state=CallState.ENDED,
            outcome=CallOutcome.COMPLETED,
        )
        session.add(call)
        await session.flush()
        session.add(
            Disposition(
                submission_id="s1",
                call_attempt_id=call.id,
                contact_id=contact.id,
                campaign_id=campaign.id,
                volunteer_id=volunteer.id,
                outcome=DispositionOutcome.ANSWERED,
                consent=True,
                survey_answers={"vote": True},
                comments="+1 great",
            )
        )
    out = tmp_path / "results.csv"
    result = await dialer(pg_url, "export-results", "--campaign", str(campaign.id), str(out))
    assert result.returncode == 0, result.stderr
    with out.open() as handle:
        header, row = list(csv.DictReader(handle)), None
    [row] = header
    assert row["call_id"] == "c1"
    assert row["number"] == "+15145550184"  # a plain number is left alone
    assert row["first_name"] == '\'=HYPERLINK("evil")'  # a formula is neutralised
    assert row["comments"] == "'+1 great"
    assert (row["call_outcome"], row["disposition"], row["consent"]) == (
        "completed",
        "answered",
        "yes",
    )
    assert row["survey:vote"] == "yes"

    missing = await dialer(pg_url, "export-results", "--campaign", "999", str(out))
    assert missing.returncode == 1
    assert "no campaign with id 999" in missing.stderr


async def test_simulate_pbx_honours_its_options_and_stops_on_sigterm() -> None:
    from ami_bridge.codec import Message
    from ami_bridge.stream import Received
    from tests.integration.pbx_harness import make_client

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dialer", "simulate-pbx", "--port", str(port),
        "--secret", "test-secret", "--time-scale", "0.01",
        "--trunk", "local", "--no-dialplan-events",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        await asyncio.wait_for(process.stderr.readline(), 30)  # "listening on ..."
        client = make_client(port)
        async with asyncio.timeout(30):
            while True:
                try:
                    await client.start()
                    break
                except OSError:
                    await asyncio.sleep(0.1)
        events: list[Message] = []
        try:
            await client.originate(
                "PJSIP/1001",
                context="dialer-outbound",
                exten="15145550180",  # ...0: answers, then hangs up
                channel_id="c1-v",
                action_id="c1",
                timeout_ms=5000,
            )
            async with asyncio.timeout(10):
                async for item in client.stream():
                    if isinstance(item, Received):
                        events.append(item.message)
                        if (
                            item.message.event == "Hangup"
                            and item.message.get("Uniqueid") == "c1-v"
                        ):
                            break
        finally:
            await client.close()
        names = {event.event for event in events}
        assert "VarSet" not in names and "Newexten" not in names
        assert any((event.get("Channel") or "").startswith("Local/") for event in events)
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
