"""Who is asking, in which language, and may they: the request middlewares.

* the session cookie is looked up in the database on every request
  (idle and absolute expiry, sign-out everywhere), riding out a database
  outage of a few seconds so the request it carries still goes through;
* the client's address is the TCP peer, or the one a trusted reverse proxy
  names in ``X-Forwarded-For`` (``DIALER_WEB_TRUSTED_PROXIES``);
* every state-changing request carries the session's CSRF token (a form
  field or the ``X-CSRF-Token`` header) and, when the browser sends one,
  an ``Origin`` of this very site; before sign-in a double-submit cookie
  plays the token's part;
* the language is the user's, else a cookie from the switcher, else the
  browser's Accept-Language, else the deployment default;
* errors leave as JSON under ``/api/`` and as a page elsewhere.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any
from urllib.parse import urlsplit

from aiohttp import ClientConnectionResetError, web
from multidict import MultiDictProxy

from dialer.domain.compliance import CallRefused, RefusalCode
from dialer.domain.outcomes import SubmissionInvalid
from dialer.domain.vocabulary import Role, VolunteerPhone
from dialer.services.accounts import KNOWN_DEVICE_LIFETIME
from dialer.services.common import NotAllowed, RetryableError
from dialer.services.volunteer_phones import phone_choices, phone_in_use
from dialer.store.access import STAFF_ROLES
from dialer.store.engine import is_unavailable
from dialer.store.models import User, WebSession
from web.config import IpNetwork
from web.deps import config_key, deps_key, template_context_key, templates_key
from web.errors import ApiError, PageError
from web.i18n import labels
from web.i18n import translate as i18n
from web.i18n.translate import _
from web.templating import render

log = logging.getLogger(__name__)

SESSION_COOKIE = "pb_session"
PRE_SESSION_COOKIE = "pb_csrf"
LANGUAGE_COOKIE = "pb_lang"
ZONE_COOKIE = "pb_tz"
# A random token naming this browser; see set_device_cookie.
DEVICE_COOKIE = "pb_device"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_USER = web.RequestKey("pb.user", User)
_SESSION = web.RequestKey("pb.session", WebSession)
_TOKEN = web.RequestKey("pb.csrf", str)
_NEW_PRE_TOKEN = web.RequestKey("pb.new_pre_token", str)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def content_security_policy(phone_origin: str | None = None) -> str:
    """The CSP of every response; ``phone_origin`` is the browser phones' SIP
    WebSocket (DIALER_WEB_PHONE_WS_URL), the one place scripts may connect
    to besides this site."""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'" + (f" {phone_origin}" if phone_origin else ""),
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


def current_user(request: web.Request) -> User | None:
    user: User | None = request.get(_USER)
    return user


def current_session(request: web.Request) -> WebSession | None:
    found: WebSession | None = request.get(_SESSION)
    return found


def session_phone(request: web.Request) -> VolunteerPhone | None:
    """The phone the signed-in user's calls ring in this session (None: nobody signed in)."""
    user = current_user(request)
    if user is None:
        return None
    web_session = current_session(request)
    return phone_in_use(user, web_session.phone if web_session is not None else None)


def csrf_token(request: web.Request) -> str:
    token: str = request.get(_TOKEN, "")
    return token


def require_user(request: web.Request) -> User:
    user = current_user(request)
    if user is None:
        if is_api(request):
            raise ApiError(401, "unauthenticated", _("Sign in first."))
        target = request.path_qs if request.method == "GET" else "/"
        raise web.HTTPSeeOther(f"/login?next={_quote_next(target)}")
    return user


def require_staff(request: web.Request) -> User:
    user = require_user(request)
    if user.role not in STAFF_ROLES:
        raise forbidden(request)
    return user


def require_admin(request: web.Request) -> User:
    user = require_user(request)
    if user.role is not Role.ADMIN:
        raise forbidden(request)
    return user


def forbidden(request: web.Request) -> Exception:
    if is_api(request):
        return ApiError(403, "forbidden", _("You may not do this."))
    return PageError(403, _("Not allowed"), _("Your account may not open this page."))


def not_found(request: web.Request) -> Exception:
    if is_api(request):
        return ApiError(404, "not_found", _("Not found."))
    return PageError(404, _("Not found"), _("There is nothing at this address."))


def _quote_next(target: str) -> str:
    from urllib.parse import quote

    return quote(target, safe="/")


def safe_next(value: str | None, default: str = "/") -> str:
    """Only local paths: never an open redirect to another site."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(ord(ch) < 32 for ch in value):
        return default
    return value


IpAddress = IPv4Address | IPv6Address


def _parse_address(text: str) -> IpAddress | None:
    """An address as proxies write it: bare, ``1.2.3.4:port`` or ``[v6]:port``."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: IpAddress, networks: tuple[IpNetwork, ...]) -> bool:
    return any(address in network for network in networks)


def client_ip(request: web.Request) -> str:
    """The address the sign-in limits count: the TCP peer, or whom a trusted proxy names.

    ``X-Forwarded-For`` is anyone's to write, so it counts only when the
    peer is one of ``DIALER_WEB_TRUSTED_PROXIES``; then the header is read
    from the right (each proxy appends the address it saw) past the trusted
    hops, and the first other address is the client.  Anything the client
    wrote further left is never reached.
    """
    peer = request.remote or ""
    networks = request.app[config_key].trusted_networks
    peer_address = _parse_address(peer)
    if not networks or peer_address is None or not _is_trusted(peer_address, networks):
        return peer
    hops = [
        hop
        for header in request.headers.getall("X-Forwarded-For", [])
        for hop in header.split(",")
        if hop.strip()
    ]
    nearest = peer_address
    for hop in reversed(hops):
        address = _parse_address(hop)
        if address is None:
            # Garbage where a proxy should have written: believe no further.
            break
        nearest = address
        if not _is_trusted(address, networks):
            break
    return str(nearest)


def set_device_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    """Remember this browser as a known device (see ``dialer.services.accounts.sign_in``)."""
    if not token:
        return
    response.set_cookie(
        DEVICE_COOKIE,
        token,
        httponly=True,
        secure=request.app[config_key].secure_cookies,
        samesite="Strict",
        path="/",
        max_age=int(KNOWN_DEVICE_LIFETIME.total_seconds()),
    )


# -- the middlewares ---------------------------------------------------------------


async def _form_token(request: web.Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form: MultiDictProxy[Any] = await request.post()
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


def _origin_ok(request: web.Request) -> bool:
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    return urlsplit(origin).netloc == request.host


async def _check_csrf(request: web.Request) -> None:
    if not _origin_ok(request):
        raise _csrf_error(request)
    expected = csrf_token(request)
    if request.path == "/api/session" and request.method == "POST":
        # Signing in over the API: a JSON body cannot be sent cross-site
        # without a CORS preflight, which this site never grants.
        if request.content_type == "application/json":
            return
        raise _csrf_error(request)
    provided = await _form_token(request)
    if not expected or not provided or not hmac.compare_digest(expected, provided):
        raise _csrf_error(request)


def _csrf_error(request: web.Request) -> Exception:
    if is_api(request):
        return ApiError(
            403, "csrf", _("The security token is missing or wrong; reload the page and retry.")
        )
    return PageError(
        403,
        _("Security check failed"),
        _("This form is out of date or was sent from another site; reload the page and retry."),
    )


def _choose_language(request: web.Request, user: User | None) -> str:
    config = request.app[config_key]
    return (
        (i18n.normalise_language(user.language) if user is not None else None)
        or i18n.normalise_language(request.cookies.get(LANGUAGE_COOKIE))
        or i18n.from_accept_language(request.headers.get("Accept-Language"))
        or i18n.normalise_language(config.default_language)
        or "en"
    )


@web.middleware
async def context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    runtime = request.app[deps_key]
    config = request.app[config_key]
    user: User | None = None
    token = request.cookies.get(SESSION_COOKIE, "")
    if token and not request.path.startswith("/static/"):
        found = await runtime.accounts.load_session(token, policy=config.session_policy)
        if found is not None:
            web_session, user = found
            request[_SESSION] = web_session
            request[_USER] = user
            request[_TOKEN] = found[0].csrf_token
    if user is None:
        pre = request.cookies.get(PRE_SESSION_COOKIE, "")
        if not pre or len(pre) > 100:
            pre = secrets.token_urlsafe(24)
            request[_NEW_PRE_TOKEN] = pre
        request[_TOKEN] = pre
    zone = i18n.zone_or(request.cookies.get(ZONE_COOKIE), config.default_timezone)
    language = _choose_language(request, user)
    i18n.activate(language, zone)
    unread = 0
    if (
        user is not None
        and request.method == "GET"
        and not is_api(request)
        and "application/json" not in request.headers.get("Accept", "")
    ):
        # The bell on every page: one COUNT on a partial index of the unread
        # rows; the API, form posts (which redirect) and the pages' own JSON
        # polls (an import's progress) skip it.
        unread = await runtime.notifications.unread_count(user)
    request[template_context_key] = {
        "user": user,
        "csrf_token": csrf_token(request),
        "lang": language,
        # Not "languages": pages name their own lists so, and a page's value
        # would replace this one in the language switcher (defect 8).
        "switcher_languages": i18n.choices(i18n.LANGUAGES),
        "zone_name": i18n.timezone_label(zone),
        "path": request.path,
        "path_qs": request.path_qs,
        "is_staff": user is not None and user.role in STAFF_ROLES,
        "is_admin": user is not None and user.role is Role.ADMIN,
        "unread_notifications": unread,
        # What rings this session, and what else it may ring (base.html).
        "phone_now": session_phone(request),
        "phone_choices": phone_choices(user) if user is not None else [],
    }
    if request.method in UNSAFE_METHODS:
        await _check_csrf(request)
    response = await handler(request)
    new_pre = request.get(_NEW_PRE_TOKEN)
    if new_pre and not response.prepared:
        response.set_cookie(
            PRE_SESSION_COOKIE,
            new_pre,
            httponly=True,
            secure=config.secure_cookies,
            samesite="Strict",
            path="/",
        )
    return response


def _refusal_status(code: RefusalCode) -> int:
    if code is RefusalCode.NOT_FOUND:
        return 404
    if code is RefusalCode.NOT_IN_TEAM:
        return 403
    if code is RefusalCode.PBX_UNAVAILABLE:
        return 503
    return 409


def _error_page(request: web.Request, status: int, title: str, message: str) -> web.Response:
    if template_context_key not in request:
        # Failed before the page context existed (the database was away while
        # loading the session): a bare page, which needs nothing.
        bare = request.app[templates_key].get_template("bare_error.html")
        return web.Response(
            text=bare.render(title=title, message=message),
            status=status,
            content_type="text/html",
            charset="utf-8",
        )
    return render(
        request,
        request.app[templates_key],
        "error.html",
        {"title": title, "message": message, "status": status},
        status=status,
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return error.response()
    except PageError as error:
        return _error_page(request, error.status, error.title, error.message)
    except CallRefused as refused:
        code = refused.refusal.code
        retry_at = refused.refusal.retry_at
        return ApiError(
            _refusal_status(code),
            code.value,
            labels.refusal(refused.refusal),
            extra={"retry_at": retry_at.isoformat()} if retry_at else None,
        ).response()
    except SubmissionInvalid as invalid:
        return ApiError(
            422,
            "invalid",
            _("Some answers need fixing."),
            fields=labels.field_errors(invalid.errors),
        ).response()
    except NotAllowed:
        error_ = forbidden(request)
        if isinstance(error_, ApiError):
            return error_.response()
        assert isinstance(error_, PageError)
        return _error_page(request, error_.status, error_.title, error_.message)
    except RetryableError:
        return _retry(request)
    except web.HTTPException as http:
        if is_api(request) and http.status >= 400:
            http_code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
                http.status, "http_error"
            )
            message = {
                404: _("Not found."),
                405: _("This method is not allowed here."),
                413: _("The request is too large."),
            }.get(http.status, _("The request could not be served."))
            return ApiError(http.status, http_code, message).response()
        if http.status == 404:
            return _error_page(request, 404, _("Not found"), _("There is nothing at this address."))
        if http.status == 413:
            return _error_page(request, 413, _("Too large"), _("The request is too large."))
        raise
    except Exception as error:
        if isinstance(error, ConnectionResetError | ClientConnectionResetError) and (
            request.transport is None or request.transport.is_closing()
        ):
            # The client went away mid-request: nothing to answer, nothing wrong here.
            log.debug("client left during %s %s", request.method, request.path)
            return web.Response(status=499)
        if is_unavailable(error) or isinstance(error, ConnectionResetError):
            log.warning(
                "database unavailable during %s %s: %s",
                request.method,
                request.path,
                type(error).__name__,
            )
            return _retry(request)
        log.exception("unhandled error on %s %s", request.method, request.path)
        if is_api(request):
            return ApiError(500, "internal", _("Something went wrong on our side.")).response()
        return _error_page(request, 500, _("Error"), _("Something went wrong on our side."))


def _retry(request: web.Request) -> web.Response:
    message = _("The database is briefly unavailable; your entries are kept. Retry in a moment.")
    if is_api(request):
        return ApiError(503, "retry", message, headers={"Retry-After": "2"}).response()
    response = _error_page(request, 503, _("Error"), message)
    response.headers["Retry-After"] = "2"
    return response


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    config = request.app[config_key]
    headers.setdefault(
        "Content-Security-Policy", content_security_policy(config.phone_websocket_origin)
    )
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    # The browser phone needs the microphone, on this site's own pages only.
    microphone = "(self)" if config.phone_ws_url else "()"
    headers.setdefault("Permissions-Policy", f"camera=(), microphone={microphone}, geolocation=()")
    if not request.path.startswith("/static/"):
        headers.setdefault("Cache-Control", "no-store")
    if config.secure_cookies:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
