"""Translations shared by the web app, the command line and the importer.

There is one catalog, the ``.po`` files under ``web/locale`` (extracted by
``python -m web.i18n.catalog update`` from the web package and from the dialer
modules that talk to people).  They are compiled in memory on first use, so
no ``.mo`` file can drift from its ``.po``.

The language in use lives in a context variable: the web app sets it for
each request (the viewer's language), the ``dialer`` command sets it once
from the environment (``LC_ALL``, ``LC_MESSAGES``, ``LANG``, as gettext
does).  ``_()`` reads it, so the same importer speaks the viewer's language
on the web and the terminal's on the command line; with nothing set it
speaks English.
"""

from __future__ import annotations

import gettext as gettext_module
import io
import os
from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import tzinfo
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALE_DIR = Path(__file__).resolve().parents[2] / "web" / "locale"
DOMAIN = "messages"
LANGUAGES = ("en", "fr")
DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True, slots=True)
class ActiveLocale:
    language: str
    zone: tzinfo
    translations: gettext_module.NullTranslations


_current: ContextVar[ActiveLocale | None] = ContextVar("request_locale", default=None)


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


def normalise_language(value: str | None) -> str | None:
    """``fr-CA``, ``fr_ca``, ``FR`` -> ``fr`` when we have it; None otherwise."""
    if not value:
        return None
    primary = value.strip().replace("_", "-").split("-")[0].lower()
    return primary if primary in LANGUAGES else None


def language_from_environment(environ: Mapping[str, str] | None = None) -> str:
    """The language a terminal asks for, the way gettext reads it.

    The locale is the first of ``LC_ALL``, ``LC_MESSAGES`` and ``LANG`` that
    is set (``fr_CA.UTF-8`` -> ``fr``); ``LANGUAGE`` (``fr:en``) refines it
    unless the locale is ``C``/``POSIX``.  Anything we have no catalog for
    means English.
    """
    env = os.environ if environ is None else environ
    locale_name = next(
        (env[name] for name in ("LC_ALL", "LC_MESSAGES", "LANG") if env.get(name)), ""
    )
    base = locale_name.split(".")[0].split("@")[0]
    if base in ("", "C", "POSIX"):
        return DEFAULT_LANGUAGE
    for candidate in [*env.get("LANGUAGE", "").split(":"), base]:
        language = normalise_language(candidate)
        if language is not None:
            return language
    return DEFAULT_LANGUAGE


def activate(language: str, zone: tzinfo | None = None) -> ActiveLocale:
    """Speak ``language`` in the current context (a request, a command)."""
    chosen = ActiveLocale(language, zone or ZoneInfo("UTC"), translations_for(language))
    _current.set(chosen)
    return chosen


def activate_scoped(language: str, zone: tzinfo | None = None) -> Token[ActiveLocale | None]:
    """Like :func:`activate`, returning a token for :func:`deactivate`."""
    return _current.set(ActiveLocale(language, zone or ZoneInfo("UTC"), translations_for(language)))


def deactivate(token: Token[ActiveLocale | None]) -> None:
    _current.reset(token)


def reset() -> None:
    """Forget the language chosen in this context: English again."""
    _current.set(None)


def current() -> ActiveLocale:
    found = _current.get()
    if found is None:
        return ActiveLocale(DEFAULT_LANGUAGE, ZoneInfo("UTC"), gettext_module.NullTranslations())
    return found


# -- marking and translating -------------------------------------------------


def _(message: str, **values: Any) -> str:
    """Translate ``message`` for the current context; ``%(name)s`` placeholders."""
    text = current().translations.gettext(message)
    return text % values if values else text


def ngettext(singular: str, plural: str, count: int, **values: Any) -> str:
    text = current().translations.ngettext(singular, plural, count)
    values.setdefault("num", count)
    return text % values


def pgettext(context: str, message: str, **values: Any) -> str:
    text = current().translations.pgettext(context, message)
    return text % values if values else text
