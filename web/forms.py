"""Reading HTML forms safely: length limits, types, field-level errors."""

from __future__ import annotations

from datetime import date, datetime, time, tzinfo
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from web.errors import PageError
from web.i18n.translate import _
from web.input_guard import unstorable

# Any single field longer than this is refused outright (hostile input).
MAX_FIELD = 20_000


def parse_id(raw: object) -> int | None:
    """A row id typed in a query or a form: ASCII-decimal digits that fit the
    column (``"²".isdigit()`` is true, yet ``int("²")`` fails); else None."""
    if not isinstance(raw, str) or not raw.isdecimal() or len(raw) > 9:
        return None
    return int(raw)


class FormErrors(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


async def read_form(request: web.Request) -> MultiDictProxy[Any]:
    form: MultiDictProxy[Any] = await request.post()
    for key, value in form.items():
        if isinstance(value, str) and (len(value) > MAX_FIELD or len(key) > 200):
            raise PageError(413, _("Too large"), _("A field of this form is too long."))
    return form


class Reader:
    """Pulls typed values out of a form, collecting every error at once."""

    def __init__(self, form: MultiDictProxy[Any]) -> None:
        self.form = form
        self.errors: dict[str, str] = {}

    def raw(self, name: str) -> str:
        value = self.form.get(name, "")
        return value if isinstance(value, str) else ""

    def text(self, name: str, *, max_length: int, required: bool = False) -> str:
        value = self.raw(name).strip()
        if unstorable(value):
            # A NUL byte or a lone surrogate: no column can hold it.
            self.errors[name] = _("This value is not valid.")
            return ""
        if required and not value:
            self.errors[name] = _("Required.")
        elif len(value) > max_length:
            self.errors[name] = _("At most %(count)s characters.", count=max_length)
        return value[:max_length]

    def integer(
        self, name: str, *, low: int, high: int, required: bool = False, default: int | None = None
    ) -> int | None:
        value = self.raw(name).strip()
        if not value:
            if required:
                self.errors[name] = _("Required.")
            return default
        try:
            number = int(value)
        except ValueError:
            self.errors[name] = _("Enter a whole number.")
            return default
        if not low <= number <= high:
            self.errors[name] = _("Enter a number from %(low)s to %(high)s.", low=low, high=high)
            return default
        return number

    def day(self, name: str) -> date | None:
        value = self.raw(name).strip()
        if not value:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            self.errors[name] = _("Enter a date.")
            return None

    def clock(self, name: str, default: time | None = None) -> time | None:
        value = self.raw(name).strip()
        if not value:
            return default
        try:
            return time.fromisoformat(value)
        except ValueError:
            self.errors[name] = _("Enter a time.")
            return default

    def local_datetime(self, name: str, zone: tzinfo) -> datetime | None:
        value = self.raw(name).strip()
        if not value:
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            self.errors[name] = _("Enter a date and time.")
            return None
        return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment

    def flag(self, name: str) -> bool:
        return self.raw(name) in ("1", "on", "true", "yes")

    def check(self) -> None:
        if self.errors:
            raise FormErrors(self.errors)
