"""Every user-facing string goes through gettext; English and French are complete.

* the strings Babel extracts from web/ are exactly the catalogs' entries;
* the French catalog has no untranslated and no fuzzy entry;
* a template adding visible text, or a web module adding a sentence, that
  is not marked for translation makes a test fail;
* pages, API errors and labels come out in the user's language, else the
  browser's, else the deployment default; dates and numbers follow it.
"""

from __future__ import annotations

import ast
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from tests.e2e.conftest import ClientFactory
from tests.e2e.webworld import WebWorld
from web import catalog, i18n

WEB = Path(catalog.__file__).parent
TEMPLATES = WEB / "templates"

# Visible text that is deliberately not translated, with the reason.
NOT_TRANSLATED = {
    "UTF-8",  # encoding names are technical identifiers
    "Latin-1 (ISO-8859-1)",
    "Windows-1252",
}
# Web modules whose strings are for developers, not for people using the pages.
DEVELOPER_MODULES = {"openapi.py", "catalog.py"}
_TRANSLATING_CALLS = {"_", "ngettext", "pgettext", "gettext"}
_NON_UI_CALLS = {
    # logging and exceptions for the logs, route declarations, SQL, headers
    "debug",
    "info",
    "warning",
    "error",
    "exception",
    "critical",
    "getLogger",
    "get",
    "post",
    "delete",
    "put",
    "add_static",
    "setdefault",
    "startswith",
    "compile",
}


def test_catalogs_match_the_code_and_french_is_complete() -> None:
    problems = catalog.problems("fr") + catalog.problems("en")
    assert problems == []


def test_the_template_file_is_in_step_with_the_code() -> None:
    with catalog.POT_PATH.open("rb") as handle:
        pot = read_po(handle)
    committed = {message.id for message in pot if message.id}
    extracted = {message.id for message in catalog.extract() if message.id}
    assert committed == extracted, "run: python -m web.catalog update"


def test_catalogs_compile_and_french_differs() -> None:
    translations = i18n.load_all()
    assert translations["fr"].gettext("Hang up") == "Raccrocher"
    assert translations["en"].gettext("Hang up") == "Hang up"


class _VisibleText(HTMLParser):
    ATTRIBUTES = frozenset({"title", "placeholder", "aria-label", "alt", "label"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        for name, value in attrs:
            if name in self.ATTRIBUTES and value:
                self._check(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._check(data)

    def _check(self, text: str) -> None:
        cleaned = text.replace("\x00", " ").strip()
        if cleaned in NOT_TRANSLATED:
            return
        if re.search(r"[^\W\d_]{2,}", cleaned):
            self.found.append(cleaned)


def untranslated_in_template(source: str) -> list[str]:
    """Visible text of a template outside gettext: Jinja constructs become blanks."""
    without_trans = re.sub(r"{%-?\s*trans\b.*?{%-?\s*endtrans\s*-?%}", "\x00", source, flags=re.S)
    blanked = re.sub(r"{{.*?}}|{%.*?%}|{#.*?#}", "\x00", without_trans, flags=re.S)
    parser = _VisibleText()
    parser.feed(blanked)
    parser.close()
    return parser.found


def test_templates_mark_every_visible_string() -> None:
    offenders = {
        path.name: found
        for path in sorted(TEMPLATES.glob("*.html"))
        if (found := untranslated_in_template(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


def test_the_template_check_catches_unmarked_text() -> None:
    assert untranslated_in_template("<p>Hello there</p>") == ["Hello there"]
    assert untranslated_in_template('<input placeholder="Search">') == ["Search"]
    assert untranslated_in_template("<p>{{ _('Hello there') }}</p>") == []
    assert untranslated_in_template("<p>{% trans %}Hi {{ x }}{% endtrans %}</p>") == []
    assert untranslated_in_template("<p>{{ name }} · 3/5 —</p>") == []


def _looks_like_prose(text: str) -> bool:
    """Words and spaces, the way people read them (not identifiers, paths or CSS)."""
    if not re.search(r"[A-Za-z]{2,}\s+[A-Za-z]{2,}", text):
        return False
    if re.fullmatch(r"[\w.\-:/@ %{}()*,'=;$\[\]]*", text) and not re.search(r"[A-Z][a-z]+ ", text):
        return False
    return not text.startswith(("/", "SELECT", "text/", "application/"))


def untranslated_in_module(source: str) -> list[str]:
    tree = ast.parse(source)
    ignored: set[int] = set()
    for node in ast.walk(tree):
        # Docstrings, and arguments of calls that translate or never reach people.
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ignored.add(id(body[0].value))
        if isinstance(node, ast.Call):
            name = (
                node.func.id
                if isinstance(node.func, ast.Name)
                else node.func.attr
                if isinstance(node.func, ast.Attribute)
                else ""
            )
            if name in _TRANSLATING_CALLS or name in _NON_UI_CALLS:
                for argument in ast.walk(node):
                    if isinstance(argument, ast.Constant):
                        ignored.add(id(argument))
        if isinstance(node, ast.Raise) and node.exc is not None:
            # Exceptions raised to the logs (ApiError/PageError take translated text).
            for argument in ast.walk(node.exc):
                if isinstance(argument, ast.Constant) and isinstance(node.exc, ast.Call):
                    func = node.exc.func
                    if isinstance(func, ast.Name) and func.id in ("ValueError", "RuntimeError"):
                        ignored.add(id(argument))
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in ignored
            and _looks_like_prose(node.value)
        ):
            found.append(node.value)
    return found


def test_web_modules_mark_every_sentence() -> None:
    offenders = {
        path.name: found
        for path in sorted(WEB.glob("*.py"))
        if path.name not in DEVELOPER_MODULES
        and (found := untranslated_in_module(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


def test_the_module_check_catches_unmarked_sentences() -> None:
    assert untranslated_in_module('message = "Wrong username or password."') == [
        "Wrong username or password."
    ]
    assert untranslated_in_module('message = _("Wrong username or password.")') == []
    assert untranslated_in_module('log.warning("could not load the roster")') == []
    assert untranslated_in_module('CODE = "too_many_attempts"') == []


def test_language_negotiation() -> None:
    assert i18n.from_accept_language("fr-CA,fr;q=0.9,en;q=0.8") == "fr"
    assert i18n.from_accept_language("de-DE,de;q=0.9,en;q=0.5") == "en"
    assert i18n.from_accept_language("de, es;q=0.5") is None
    assert i18n.from_accept_language("en;q=0, fr;q=0.1") == "fr"
    assert i18n.normalise_language("FR_ca") == "fr"


async def test_pages_follow_the_user_then_the_browser(
    client: ClientFactory, world: WebWorld
) -> None:
    anonymous_fr = await client(language="fr-CA,fr;q=0.9")
    status, html = await anonymous_fr.page("/login")
    assert status == 200
    assert 'lang="fr"' in html and "Se connecter" in html
    anonymous_de = await client(language="de")
    _, html = await anonymous_de.page("/login")
    assert 'lang="en"' in html and "Sign in" in html

    # Bob's own language (French) wins over his browser's English.
    bob = await client("bob", language="en")
    _, html = await bob.page("/campaigns")
    assert "Mes actions d'appel" in html
    alice = await client("alice", language="fr")
    _, html = await alice.page("/campaigns")
    assert "My calling actions" in html

    # The switcher changes the user's language for good.
    response = await alice.form("/lang", {"language": "fr", "next": "/campaigns"})
    assert response.status == 303 and response.headers["Location"] == "/campaigns"
    _, html = await alice.page("/campaigns")
    assert "Mes actions d'appel" in html
    again = await client("alice", language="en")
    _, html = await again.page("/campaigns")
    assert 'lang="fr"' in html


async def test_api_errors_and_labels_are_translated(client: ClientFactory, world: WebWorld) -> None:
    bob = await client("bob")  # French
    status, body = await bob.api("POST", "/api/outcomes", {"submission_id": "x"})
    assert status == 422 and body["error"]["code"] == "invalid"
    assert body["error"]["message"] == "Certaines réponses sont à corriger."
    alice = await client("alice")
    status, body = await alice.api(
        "POST",
        "/api/outcomes",
        {
            "submission_id": "sub-en-0001",
            "contact_id": world.contacts["ada"],
            "campaign_id": world.campaign_id,
            "outcome": "call_back_later",
        },
    )
    assert status == 422
    assert body["error"]["fields"] == {"callback_at": "Say when to call back."}


@pytest.mark.parametrize(
    ("language", "number", "expected"), [("en", 1234.5, "1,234.5"), ("fr", 1234.5, "1\u202f234,5")]
)
def test_numbers_follow_the_locale(language: str, number: float, expected: str) -> None:
    i18n.activate(language, i18n.zone_or("America/Toronto", "UTC"))
    assert i18n.fmt_number(number) == expected
