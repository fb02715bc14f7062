"""Translations and locale-aware formatting for the web layer.

Catalogs are the ``.po`` files under ``web/locale``; they are compiled in
memory when the app starts, so a fresh clone needs no build step and no
``.mo`` file can drift from its ``.po``.  The language and time zone of
the request being served live in context variables set by a middleware:
``_()`` and the Jinja filters read them.
"""

from __future__ import annotations

import gettext as gettext_module
import io
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime, format_time, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal, format_percent
from babel.support import Translations

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
LANGUAGES = ("en", "fr")


@dataclass(frozen=True, slots=True)
class RequestLocale:
    language: str
    zone: tzinfo
    translations: gettext_module.NullTranslations


_current: ContextVar[RequestLocale | None] = ContextVar("request_locale", default=None)


def po_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def compile_catalog(language: str) -> gettext_module.NullTranslations:
    """Read the ``.po`` file and compile it to an in-memory ``.mo``."""
    path = po_path(language)
    if not path.exists():
        return gettext_module.NullTranslations()
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=language, domain=DOMAIN)
    buffer = io.BytesIO()
    # Fuzzy entries are never used: a half-checked translation is worse than English.
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return Translations(fp=buffer, domain=DOMAIN)


@cache
def translations_for(language: str) -> gettext_module.NullTranslations:
    return compile_catalog(language)


def load_all() -> dict[str, gettext_module.NullTranslations]:
    translations_for.cache_clear()
    return {language: translations_for(language) for language in LANGUAGES}


def normalise_language(value: str | None) -> str | None:
    """``fr-CA``, ``fr_ca``, ``FR`` -> ``fr`` when we have it; None otherwise."""
    if not value:
        return None
    primary = value.strip().replace("_", "-").split("-")[0].lower()
    return primary if primary in LANGUAGES else None


def from_accept_language(header: str | None) -> str | None:
    """The best of our languages for an Accept-Language header."""
    if not header:
        return None
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        ranked.append((-quality, index, tag))
    for negative_quality, _, tag in sorted(ranked):
        if negative_quality >= 0:
            break
        language = normalise_language(tag)
        if language is not None:
            return language
    return None


def zone_or(name: str | None, fallback: str) -> ZoneInfo:
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo(fallback)


def activate(language: str, zone: tzinfo) -> RequestLocale:
    current = RequestLocale(language, zone, translations_for(language))
    _current.set(current)
    return current


def current() -> RequestLocale:
    found = _current.get()
    if found is None:
        return RequestLocale("en", ZoneInfo("UTC"), gettext_module.NullTranslations())
    return found


# -- marking and translating -------------------------------------------------


def _(message: str, **values: Any) -> str:
    """Translate ``message`` for the current request; ``%(name)s`` placeholders."""
    text = current().translations.gettext(message)
    return text % values if values else text


def ngettext(singular: str, plural: str, count: int, **values: Any) -> str:
    text = current().translations.ngettext(singular, plural, count)
    values.setdefault("num", count)
    return text % values


def pgettext(context: str, message: str, **values: Any) -> str:
    text = current().translations.pgettext(context, message)
    return text % values if values else text


# -- formatting ----------------------------------------------------------------


def _babel_locale() -> str:
    return current().language


def fmt_datetime(moment: datetime | None, fmt: str = "medium", zone: tzinfo | None = None) -> str:
    if moment is None:
        return ""
    return format_datetime(moment, fmt, tzinfo=zone or current().zone, locale=_babel_locale())


def fmt_time(moment: datetime | time | None, fmt: str = "short", zone: tzinfo | None = None) -> str:
    if moment is None:
        return ""
    if isinstance(moment, datetime):
        return format_time(moment, fmt, tzinfo=zone or current().zone, locale=_babel_locale())
    return format_time(moment, fmt, locale=_babel_locale())


def fmt_date(day: date | datetime | None, fmt: str = "medium") -> str:
    if day is None:
        return ""
    if isinstance(day, datetime):
        day = day.astimezone(current().zone).date()
    return format_date(day, fmt, locale=_babel_locale())


def fmt_number(value: float | int | None, fmt: str | None = None) -> str:
    if value is None:
        return ""
    return format_decimal(value, format=fmt, locale=_babel_locale())


def fmt_percent(value: float | None) -> str:
    if value is None:
        return ""
    return format_percent(value, format="#,##0.#%", locale=_babel_locale())


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return format_timedelta(timedelta(seconds=seconds), threshold=1.1, locale=_babel_locale())


def fmt_clock(seconds: float | None) -> str:
    """A call timer, ``m:ss`` (digits read the same in every supported locale)."""
    if seconds is None:
        return ""
    whole = max(0, int(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


def language_name(code: str) -> str:
    """A language's own name ("English", "français"): shown as-is to everyone."""
    try:
        name = Locale.parse(code.replace("-", "_")).get_display_name(code.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return code
    return (name or code)[:1].upper() + (name or code)[1:]


def language_label(code: str | None) -> str:
    """A contact's language, named in the viewer's language ("French" / "français")."""
    if not code:
        return ""
    try:
        name = Locale.parse(code.replace("-", "_")).get_display_name(_babel_locale())
    except (UnknownLocaleError, ValueError):
        return code
    return name or code


def timezone_label(zone: tzinfo) -> str:
    return str(getattr(zone, "key", zone))


def choices(codes: Iterable[str]) -> list[tuple[str, str]]:
    return [(code, language_name(code)) for code in codes]
