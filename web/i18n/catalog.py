"""Extracting the translatable strings and keeping the catalogs in step.

``python -m web.i18n.catalog update`` extracts every marked string from the web
package (Python and templates) and from the dialer modules that talk to
people (:data:`DIALER_MODULES`: the command line, the CSV importer and the
errors they show) with Babel, writes ``messages.pot`` and
merges it into each language's ``.po`` (new strings come out untranslated
or fuzzy, which the test suite refuses until someone translates them).
``python -m web.i18n.catalog check`` prints what is missing and exits non-zero.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir, extract_from_file
from babel.messages.pofile import read_po, write_po

from web.i18n.translate import LANGUAGES, LOCALE_DIR, po_path

WEB_DIR = Path(__file__).parent.parent
DIALER_DIR = WEB_DIR.parent / "dialer"
# Dialer modules whose messages reach people (the CLI's output, import reports).
DIALER_MODULES = (
    "runtime/cli.py",
    "services/importer.py",
    "services/users.py",
    "services/volunteer_phones.py",
    "domain/number_reasons.py",
    "domain/passwords.py",
    "domain/survey.py",
    "services/export.py",
    "services/contact_edits.py",
    "services/notifications.py",
)
POT_PATH = LOCALE_DIR / "messages.pot"
METHOD_MAP = [
    ("**/static/**", "ignore"),
    ("**/locale/**", "ignore"),
    ("templates/**.html", "jinja2"),
    ("**.py", "python"),
]
OPTIONS_MAP = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "trimmed": "false"}}
KEYWORDS = {
    "_": None,
    "gettext": None,
    "ngettext": (1, 2),
    "pgettext": ((1, "c"), 2),
}


def extract() -> Catalog:
    catalog = Catalog(
        project="phone bank",
        version="1",
        domain="messages",
        charset="utf-8",
        copyright_holder="the phone bank authors",
    )
    for filename, lineno, message, comments, context in extract_from_dir(
        str(WEB_DIR), METHOD_MAP, OPTIONS_MAP, keywords=KEYWORDS, comment_tags=("TRANSLATORS:",)
    ):
        catalog.add(
            message,
            None,
            [(filename, lineno)],
            auto_comments=comments,
            context=context,
        )
    for name in DIALER_MODULES:
        # Locations are relative to web/, like the web package's own.
        for lineno, message, comments, context in extract_from_file(
            "python",
            DIALER_DIR / name,
            keywords=KEYWORDS,
            comment_tags=("TRANSLATORS:",),
        ):
            catalog.add(
                message,
                None,
                [(f"../dialer/{name}", lineno)],
                auto_comments=comments,
                context=context,
            )
    return catalog


def read(language: str) -> Catalog:
    with po_path(language).open("rb") as handle:
        return read_po(handle, locale=language, domain="messages")


def write(catalog: Catalog, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        write_po(handle, catalog, width=100, sort_output=True, omit_header=False)


def update(languages: Iterable[str] = LANGUAGES) -> None:
    write(extract(), POT_PATH)
    for language in languages:
        # A fresh template each time: Catalog.update shares message objects.
        template = extract()
        path = po_path(language)
        if path.exists():
            catalog = read(language)
        else:
            catalog = Catalog(
                locale=language,
                domain="messages",
                charset="utf-8",
                project="phone bank",
                version="1",
                copyright_holder="the phone bank authors",
            )
        catalog.update(template, no_fuzzy_matching=True)
        catalog.fuzzy = False
        catalog.obsolete.clear()
        if language == "en":
            # The source language: every entry translates to itself.
            for message in catalog:
                if message.id and not (
                    all(message.string) if isinstance(message.string, tuple) else message.string
                ):
                    message.string = message.id
        write(catalog, path)


def problems(language: str) -> list[str]:
    """What keeps the catalog from being complete and in step with the code."""
    found: list[str] = []
    template = extract()
    catalog = read(language)
    wanted = {
        (message.id if isinstance(message.id, str) else message.id[0])
        for message in template
        if message.id
    }
    have = {
        (message.id if isinstance(message.id, str) else message.id[0])
        for message in catalog
        if message.id
    }
    found.extend(
        f"missing from the {language} catalog: {msgid!r}" for msgid in sorted(wanted - have)
    )
    found.extend(
        f"no longer used, still in the {language} catalog: {msgid!r}"
        for msgid in sorted(have - wanted)
    )
    for message in catalog:
        if not message.id:
            continue
        key = message.id if isinstance(message.id, str) else message.id[0]
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy:
            found.append(f"fuzzy in the {language} catalog: {key!r}")
        if not all(strings):
            found.append(f"untranslated in the {language} catalog: {key!r}")
    return found


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "check"
    if command == "update":
        update()
        return 0
    if command == "check":
        issues = [issue for language in LANGUAGES for issue in problems(language)]
        for issue in issues:
            print(issue)
        return 1 if issues else 0
    print("usage: python -m web.i18n.catalog [update|check]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
