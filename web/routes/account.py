"""The signed-in person's own account: changing their password, and the phone
this session's calls ring."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dialer.domain.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, WeakPassword
from dialer.services.accounts import LoginRefusalCode, PasswordChangeRefused
from dialer.services.volunteer_phones import phone_choices
from web.deps import config_key, deps_key, templates_key
from web.forms import read_form
from web.i18n.translate import _
from web.input_guard import unstorable
from web.security import client_ip, current_session, require_user, safe_next
from web.templating import render

routes = web.RouteTableDef()


def _page(
    request: web.Request,
    *,
    errors: dict[str, str] | None = None,
    changed: int | None = None,
    status: int = 200,
) -> web.Response:
    context: dict[str, Any] = {
        "errors": errors or {},
        "changed": changed,
        "min_length": MIN_PASSWORD_LENGTH,
        "max_length": MAX_PASSWORD_LENGTH,
    }
    return render(request, request.app[templates_key], "account.html", context, status=status)


@routes.get("/account")
async def account_page(request: web.Request) -> web.Response:
    require_user(request)
    return _page(request)


@routes.post("/account/phone")
async def choose_phone(request: web.Request) -> web.Response:
    """The header's "Calls ring" choice, for this session (the page's form; no script needed)."""
    user = require_user(request)
    form = await read_form(request)
    offered = {choice.value: choice for choice in phone_choices(user)}
    chosen = offered.get(str(form.get("phone", "")))
    web_session = current_session(request)
    if chosen is not None and web_session is not None:
        await request.app[deps_key].accounts.set_session_phone(web_session.id, chosen)
    raise web.HTTPSeeOther(safe_next(str(form.get("next", "")), "/"))


@routes.post("/account/password")
async def change_password(request: web.Request) -> web.Response:
    user = require_user(request)
    web_session = current_session(request)
    form = await read_form(request)
    # Never stripped nor cut: a password is what was typed, spaces included.
    fields = {
        name: value if isinstance((value := form.get(name, "")), str) else ""
        for name in ("current_password", "new_password", "new_password_again")
    }
    errors: dict[str, str] = {}
    for name, value in fields.items():
        if not value:
            errors[name] = _("Required.")
        elif unstorable(value):
            errors[name] = _("This value is not valid.")
        elif len(value) > MAX_PASSWORD_LENGTH:
            errors[name] = _("At most %(count)s characters.", count=MAX_PASSWORD_LENGTH)
    if "new_password_again" not in errors and (
        fields["new_password"] != fields["new_password_again"]
    ):
        errors["new_password_again"] = _("The two new passwords differ.")
    if errors or web_session is None:
        return _page(request, errors=errors, status=422)
    try:
        ended = await request.app[deps_key].accounts.change_own_password(
            user,
            session_id=web_session.id,
            current=fields["current_password"],
            new=fields["new_password"],
            ip=client_ip(request),
            limits=request.app[config_key].login_limits,
        )
    except WeakPassword as weak:
        return _page(request, errors={"new_password": str(weak)}, status=422)
    except PasswordChangeRefused as refused:
        if refused.code is LoginRefusalCode.TOO_MANY_ATTEMPTS:
            message = _("Too many wrong passwords; wait a few minutes and try again.")
            return _page(request, errors={"current_password": message}, status=429)
        return _page(
            request,
            errors={"current_password": _("This is not your current password.")},
            status=422,
        )
    return _page(request, changed=ended)
