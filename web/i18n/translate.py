"""Translations and locale-aware formatting for the web layer.

Catalogs are the ``.po`` files under ``web/locale``; they are compiled in
memory when the app starts, so a fresh clone needs no build step and no
``.mo`` file can drift from its ``.po``.  The language and time zone of
the request being served live in context variables set by a middleware:
``_()`` and the Jinja filters read them.  The catalog machinery and that
context live in :mod:`dialer.domain.i18n`, shared with the command line and the
importer (whose row reasons thus come out in the viewer's language).
"""

from __future__ import annotations

import gettext as gettext_module
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime, format_time, format_timedelta
from babel.numbers import format_decimal, format_percent

from dialer.domain import i18n as shared
from dialer.domain.i18n import DOMAIN as DOMAIN
from dialer.domain.i18n import LANGUAGES as LANGUAGES
from dialer.domain.i18n import LOCALE_DIR as LOCALE_DIR
from dialer.domain.i18n import _ as _
from dialer.domain.i18n import compile_catalog as compile_catalog
from dialer.domain.i18n import current as current
from dialer.domain.i18n import ngettext as ngettext
from dialer.domain.i18n import normalise_language as normalise_language
from dialer.domain.i18n import pgettext as pgettext
from dialer.domain.i18n import po_path as po_path
from dialer.domain.i18n import translations_for as translations_for

# The request's language, time zone and catalog (the context the importer reads too).
RequestLocale = shared.ActiveLocale


def load_all() -> dict[str, gettext_module.NullTranslations]:
    translations_for.cache_clear()
    return {language: translations_for(language) for language in LANGUAGES}


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
    return shared.activate(language, zone)


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
