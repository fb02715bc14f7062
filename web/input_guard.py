"""Input no database column can hold, refused where it enters.

PostgreSQL text cannot store a NUL byte, and a lone surrogate (half of a
UTF-16 pair, which JSON's ``\\ud800`` escape or a header decoded with
``surrogateescape`` can produce) cannot even be encoded as UTF-8.  Either
one, passed on as a query parameter, used to fail deep in the driver: a 500,
and a traceback in the log.  JSON nested thousands deep exhausted the
parser's stack the same way.

So they are refused at the door, once for every handler:

* :func:`input_guard`, a middleware, checks the path, the query string,
  the User-Agent (stored with each session) and URL-encoded form bodies:
  a 400 that says why, as JSON under ``/api/`` and as a page elsewhere;
* :func:`parse_json_object`, which the API's body reader calls, limits the
  nesting before parsing and names the offending field in a 422.

Multipart bodies (file uploads) are streamed by their handlers and not read
here; their text fields go through :class:`web.forms.Reader`, which refuses
the same characters field by field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from web.errors import ApiError, PageError
from web.i18n.translate import _

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Deeper than any request the product takes (an outcome's answers are four
# levels down) and far below the parser's recursion limit.
MAX_JSON_DEPTH = 32

_FORM_TYPE = "application/x-www-form-urlencoded"
# Headers whose value is stored (the session's User-Agent) or trusted for an address.
# The User-Agent is stored with each session.  X-Forwarded-For is not checked:
# client_ip reads only addresses from it, and only from trusted proxies.
_CHECKED_HEADERS = ("User-Agent",)
# A JSON string, escapes included: what is inside one never counts as nesting.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_A_BRACKET = re.compile(rb"[^\[\]{}]")


def unstorable(text: str) -> bool:
    """Whether ``text`` holds a NUL byte or a lone surrogate."""
    if "\x00" in text:
        return True
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _refusal(request: web.Request) -> Exception:
    message = _(
        "The request contains a character that cannot be stored (a NUL byte or a lone "
        "surrogate). Remove it and try again."
    )
    if request.path.startswith("/api/"):
        return ApiError(400, "invalid_characters", message)
    return PageError(400, _("Bad request"), message)


def _any_unstorable(values: Iterable[Any]) -> bool:
    return any(isinstance(value, str) and unstorable(value) for value in values)


@web.middleware
async def input_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a request whose address, stored headers or form hold unstorable characters."""
    query = request.query
    if (
        unstorable(request.path)
        or _any_unstorable(query.keys())
        or _any_unstorable(query.values())
        or _any_unstorable(request.headers.get(name, "") for name in _CHECKED_HEADERS)
    ):
        raise _refusal(request)
    if request.content_type == _FORM_TYPE and request.can_read_body:
        # Read once here; aiohttp keeps the parsed form for the handler.
        form: MultiDictProxy[Any] = await request.post()
        if _any_unstorable(form.keys()) or _any_unstorable(form.values()):
            raise _refusal(request)
    return await handler(request)


# -- JSON bodies ---------------------------------------------------------------------


def _too_deep(body: bytes, limit: int) -> bool:
    brackets = _NOT_A_BRACKET.sub(b"", _JSON_STRING.sub(b"", body))
    depth = 0
    for byte in brackets:
        if byte in b"[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _first_unstorable(value: Any, path: str) -> str | None:
    """The path of the first string holding an unstorable character, else None.

    A key is reported by the path of the object holding it ("" at the top).
    The depth is already bounded, so the recursion is too.
    """
    if isinstance(value, str):
        return path if unstorable(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if unstorable(key):
                return path
            found = _first_unstorable(item, f"{path}.{key}" if path else key)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _first_unstorable(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def parse_json_object(body: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """Parse a request body that must be a JSON object of storable strings.

    400 ``bad_json`` when it is not JSON, not an object, or nested deeper
    than ``max_depth``; 422 ``invalid`` naming the field (``answers.q1[1]``)
    whose text holds a NUL byte or a lone surrogate.
    """
    if _too_deep(body, max_depth):
        raise ApiError(
            400,
            "bad_json",
            _("The request body is nested too deep (at most %(count)s levels).", count=max_depth),
        )
    try:
        value = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "bad_json", _("The request body is not valid JSON.")) from None
    if not isinstance(value, dict):
        raise ApiError(400, "bad_json", _("The request body must be a JSON object."))
    field = _first_unstorable(value, "")
    if field is not None:
        message = _("This text contains a character that cannot be stored.")
        raise ApiError(
            422,
            "invalid",
            _("Some answers need fixing.") if field else message,
            fields={field: message} if field else None,
        )
    return value
