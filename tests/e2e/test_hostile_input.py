"""Characters no database column can hold, and JSON built to exhaust the parser.

NUL bytes and lone surrogates cannot be stored in PostgreSQL text, nor even
encoded as UTF-8; JSON nested thousands deep exhausts the parser's stack.
Each is refused with a 400 or a 422 that says what is wrong, before any of
it reaches the database, and nothing is logged as an unhandled error.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from sqlalchemy import func, select
from sqlalchemy import text as sql
from sqlalchemy.exc import DBAPIError
from yarl import URL

from dialer.store.models import ContactNote, WebSession
from tests.e2e.conftest import Browser, ClientFactory
from tests.e2e.webworld import PASSWORD, Served, WebWorld


def _assert_quiet(caplog: pytest.LogCaptureFixture) -> None:
    loud = [
        record
        for record in caplog.records
        if record.levelno >= logging.ERROR or record.exc_info or record.exc_text
    ]
    assert not loud, "\n".join(record.getMessage() for record in loud)
    # The SQL and its parameters are what the traceback used to carry.
    assert "[parameters:" not in caplog.text and "[SQL:" not in caplog.text


async def _raw(browser: Browser, method: str, path: str, **kwargs: object) -> tuple[int, str]:
    # encoded=True: the path goes out exactly as written, %00 and all.
    url = URL(browser.base + path, encoded=True)
    async with browser.http.request(method, url, allow_redirects=False, **kwargs) as response:  # type: ignore[arg-type]
        return response.status, await response.text()


@pytest.mark.parametrize(
    "path",
    [
        "/contacts?q=%00",
        "/contacts?q=ada%00lovelace",
        "/contacts?tag=%00",
        "/ops/dnc?q=%00",
        "/contacts?q%00=1",
        "/api/calls/%00",
        "/api/calls/abc%00def",
        "/contacts/%00",
    ],
)
async def test_nul_bytes_in_the_address_are_refused(
    client: ClientFactory, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    olivia = await client("olivia")
    caplog.clear()
    status, body = await _raw(olivia, "GET", path)
    assert status in (400, 404), (status, body)
    if status == 400:
        assert "character" in body.lower()
    if path.startswith("/api/"):
        assert '"code"' in body  # the API's JSON error shape
    _assert_quiet(caplog)


async def test_a_form_with_a_nul_byte_is_refused_before_it_is_read(
    client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    browser = await client()
    caplog.clear()
    response = await browser.form("/login", {"username": "alice\x00", "password": "x" * 12})
    assert response.status == 400
    assert "character" in (await response.text()).lower()
    _assert_quiet(caplog)


NOTE_BODIES = {
    "nul": "call back\x00 later",
    "surrogate": "call back \ud800 later",
}


@pytest.mark.parametrize("kind", sorted(NOTE_BODIES))
async def test_json_strings_with_nul_or_a_lone_surrogate_get_a_field_error(
    client: ClientFactory, world: WebWorld, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    alice = await client("alice")
    caplog.clear()
    status, body = await alice.api(
        "POST", f"/api/contacts/{world.contacts['ada']}/notes", {"body": NOTE_BODIES[kind]}
    )
    assert status == 422, body
    assert body["error"]["code"] == "invalid"
    assert "body" in body["error"]["fields"]
    _assert_quiet(caplog)
    async with world.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(ContactNote)) == 0


async def test_nested_keys_and_list_items_are_named_in_the_field_error(
    client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await client("alice")
    caplog.clear()
    status, body = await alice.api(
        "POST",
        "/api/outcomes",
        {"submission_id": "x", "answers": {"q1": ["fine", "bad\x00"]}},
    )
    assert status == 422, body
    assert body["error"]["fields"] == {"answers.q1[1]": body["error"]["fields"]["answers.q1[1]"]}
    status, body = await alice.api("POST", "/api/outcomes", {"answers": {"\ud800": "yes"}})
    assert status == 422, body
    assert list(body["error"]["fields"]) == ["answers"]
    _assert_quiet(caplog)


async def test_sign_in_with_a_nul_username_is_refused_without_a_database_error(
    client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    browser = await client()
    caplog.clear()
    status, body = await browser.api(
        "POST", "/api/session", {"username": "alice\x00", "password": "x" * 12}, csrf=False
    )
    assert status == 422, body
    assert "username" in body["error"]["fields"]
    _assert_quiet(caplog)


@pytest.mark.parametrize("depth", [65, 20_000])
async def test_json_nested_too_deep_is_refused(
    client: ClientFactory, caplog: pytest.LogCaptureFixture, depth: int
) -> None:
    alice = await client("alice")
    caplog.clear()
    nested = '{"submission_id": "x", "answers": {"q": ' + "[" * depth + "]" * depth + "}}"
    status, body = await alice.api(
        "POST",
        "/api/outcomes",
        data=nested,
        headers={"Content-Type": "application/json"},
    )
    assert status == 400, body
    assert body["error"]["code"] == "bad_json"
    assert "deep" in body["error"]["message"]
    _assert_quiet(caplog)


async def test_brackets_inside_strings_do_not_count_as_nesting(
    client: ClientFactory, world: WebWorld
) -> None:
    alice = await client("alice")
    text = "[[[{{{" * 100 + '\\"]]]' * 10
    status, body = await alice.api(
        "POST", f"/api/contacts/{world.contacts['ada']}/notes", {"body": text}
    )
    assert status == 201, body


async def test_a_user_agent_that_is_not_utf8_is_refused_before_it_is_stored(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """Header bytes that are not UTF-8 arrive as lone surrogates; the session
    stores the User-Agent, so such a sign-in used to fail in the driver."""
    body = json.dumps({"username": "alice", "password": PASSWORD}).encode()
    host, port = served.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /api/session HTTP/1.1\r\n"
        + f"Host: {host}:{port}\r\n".encode()
        + b"User-Agent: Mozilla \xff\xfe\r\n"
        + b"Content-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"invalid_characters" in answer
    _assert_quiet(caplog)
    async with served.runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(WebSession)) == 0


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        # Fails in the server: SQLAlchemy would list the parameters.
        ("SELECT CAST(:typed AS text), 1 / 0", "division by zero"),
        # Fails in the driver, which would quote the value it could not encode.
        ("SELECT CAST(:typed AS integer)", "cannot be interpreted as an integer"),
    ],
)
async def test_a_database_error_is_logged_without_its_sql_parameters(
    served: Served, caplog: pytest.LogCaptureFixture, statement: str, reason: str
) -> None:
    """Should a statement still fail in the database, the error (and so the
    log) shows the SQL and why, but never the values a user typed."""
    secret = "hunter2-do-not-log"
    async with served.runtime.sessions() as session:
        with pytest.raises(DBAPIError) as raised:
            await session.execute(sql(statement), {"typed": secret})
    logging.getLogger("test").error("failed", exc_info=raised.value)
    assert reason in caplog.text
    assert secret not in caplog.text


@pytest.mark.parametrize(
    "path",
    [
        # "²".isdigit() is true, yet int("²") fails: ids are read as decimal digits only.
        "/api/campaigns/{c}/next?owner=%C2%B2",
        "/ops/campaigns/{c}/import?job=%C2%B2",
        "/contacts?campaign=%C2%B2",
    ],
)
async def test_superscript_digits_in_an_id_are_no_id(
    client: ClientFactory, world: WebWorld, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    olivia = await client("olivia")
    status, _body = await _raw(olivia, "GET", path.format(c=world.campaign_id))
    assert status < 500
    _assert_quiet(caplog)
