"""Every user-facing string goes through gettext; English and French are complete.

* the strings Babel extracts from web/ are exactly the catalogs' entries;
* the French catalog has no untranslated and no fuzzy entry;
* a template adding visible text, or a web module adding a sentence, that
  is not marked for translation makes a test fail; so does a sentence in
  the dialer modules whose messages reach people (the CLI, the importer),
  checked more strictly since their messages are lower-case;
* pages, API errors and labels come out in the user's language, else the
  browser's, else the deployment default; dates and numbers follow it.
"""

from __future__ import annotations

import ast
import re
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest
from babel.messages.pofile import read_po

from dialer.domain import i18n as shared_i18n
from dialer.services.importer import ImportReport, parse_rows
from tests.e2e.conftest import Browser, ClientFactory
from tests.e2e.importing import upload_csv
from tests.e2e.webworld import WebWorld
from web.i18n import catalog
from web.i18n import translate as i18n

WEB = Path(catalog.__file__).parents[1]
TEMPLATES = WEB / "templates"

# Visible text that is deliberately not translated, with the reason.
NOT_TRANSLATED = {
    "UTF-8",  # encoding names are technical identifiers
    "Latin-1 (ISO-8859-1)",
    "Windows-1252",
}
# Web modules whose strings are for developers, not for people using the pages.
DEVELOPER_MODULES = {"openapi.py", "catalog.py"}
DIALER = WEB.parent / "dialer"
# Sentences in those dialer modules that are data, not messages, with the reason.
STORED_AS_DATA = {
    "imported as do-not-call",  # written to the database as the contact's do-not-call reason
}
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
    assert committed == extracted, "run: python -m web.i18n.catalog update"


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


def _looks_like_a_message(text: str) -> bool:
    """Stricter: any two words separated by a space (CLI messages are lower-case)."""
    return re.search(r"[A-Za-z]{2,} +[A-Za-z]{2,}", text) is not None


def untranslated_in_module(source: str, *, strict: bool = False) -> list[str]:
    """Sentences outside gettext; ``strict`` also reads lower-case text and f-strings."""
    tree = ast.parse(source)
    ignored: set[int] = set()
    for node in ast.walk(tree):
        # Help texts of command-line options stay in English (click's own texts are).
        if isinstance(node, ast.keyword) and node.arg == "help":
            ignored.update(id(inner) for inner in ast.walk(node.value))
        # Comparing with a library's English text, or a table from it to translations.
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                if isinstance(operand, ast.Constant):
                    ignored.add(id(operand))
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    key is not None
                    and isinstance(value, ast.Call)
                    and isinstance(value.func, ast.Name)
                    and value.func.id in _TRANSLATING_CALLS
                ):
                    ignored.add(id(key))
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
                    if isinstance(argument, ast.Constant | ast.JoinedStr):
                        ignored.add(id(argument))
        if isinstance(node, ast.Raise) and node.exc is not None and not strict:
            # Exceptions raised to the logs (ApiError/PageError take translated text).
            for argument in ast.walk(node.exc):
                if isinstance(argument, ast.Constant) and isinstance(node.exc, ast.Call):
                    func = node.exc.func
                    if isinstance(func, ast.Name) and func.id in ("ValueError", "RuntimeError"):
                        ignored.add(id(argument))
    found = []
    for node in ast.walk(tree):
        if id(node) in ignored:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _looks_like_prose(node.value) or (
                strict and _looks_like_a_message(node.value) and node.value not in STORED_AS_DATA
            ):
                found.append(node.value)
        elif strict and isinstance(node, ast.JoinedStr):
            # f"created {role} {name}": the words around the values make a sentence.
            text = "".join(
                part.value if isinstance(part, ast.Constant) else "value" for part in node.values
            )
            if _looks_like_a_message(text):
                found.append(text)
    return found


def test_web_modules_mark_every_sentence() -> None:
    offenders = {
        path.name: found
        for path in sorted(WEB.glob("*.py"))
        if path.name not in DEVELOPER_MODULES
        and (found := untranslated_in_module(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


def test_dialer_modules_that_talk_to_people_mark_every_message() -> None:
    assert set(catalog.DIALER_MODULES) >= {"runtime/cli.py", "services/importer.py"}
    offenders = {
        name: found
        for name in catalog.DIALER_MODULES
        if (found := untranslated_in_module((DIALER / name).read_text("utf-8"), strict=True))
    }
    assert offenders == {}


def test_the_strict_check_catches_unmarked_cli_and_import_messages() -> None:
    def strict(source: str) -> list[str]:
        return untranslated_in_module(source, strict=True)

    assert strict('raise ImportFileError("the file is empty")') == ["the file is empty"]
    assert strict('raise ValueError("invalid email address")') == ["invalid email address"]
    assert strict('click.echo(f"created {role} {username}")') == ["created value value"]
    assert strict('RowError(line, "no phone number")') == ["no phone number"]
    assert strict('raise ImportFileError(_("the file is empty"))') == []
    assert strict('click.echo(_("created %(role)s", role=role))') == []
    assert strict('click.option("--team", help="Team to join (repeatable).")') == []
    assert strict('reasons = {"too long": pgettext("phone number", "too long")}') == []
    assert strict('click.echo(f"{file}:{row_error}")') == []
    assert strict('dnc_reason = "imported as do-not-call"') == []
    # The modules really are checked: an unmarked message slipped into one is caught.
    for name in ("runtime/cli.py", "services/importer.py"):
        source = (DIALER / name).read_text("utf-8")
        assert strict(source + '\nclick.echo("nothing to import")\n') == ["nothing to import"]


def test_the_dialer_modules_strings_are_in_the_catalog() -> None:
    locations = {filename for message in catalog.extract() for filename, _line in message.locations}
    assert {"../dialer/runtime/cli.py", "../dialer/services/importer.py"} <= locations
    french = i18n.load_all()["fr"]
    assert french.gettext("the file is empty") == "le fichier est vide"
    assert french.gettext("no phone number") == "aucun numéro de téléphone"


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


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({"LANG": "fr_CA.UTF-8"}, "fr"),
        ({"LANG": "en_US.UTF-8", "LC_MESSAGES": "fr_FR.UTF-8"}, "fr"),
        ({"LANG": "fr_CA.UTF-8", "LC_ALL": "en_CA.UTF-8"}, "en"),
        ({"LANG": "C.UTF-8"}, "en"),
        ({"LANG": "C", "LANGUAGE": "fr"}, "en"),  # as gettext: LANGUAGE is ignored under C
        ({"LANG": "de_DE.UTF-8", "LANGUAGE": "de:fr"}, "fr"),
        ({"LANG": "de_DE.UTF-8"}, "en"),
        ({}, "en"),
    ],
)
def test_the_command_line_takes_its_language_from_the_environment(
    environment: dict[str, str], expected: str
) -> None:
    assert shared_i18n.language_from_environment(environment) == expected


def test_import_reasons_and_summary_follow_the_active_language() -> None:
    data = b"name,phone,email\nA,555-12,\nB,5145550184,bad\nC,,\n"
    report = ImportReport(imported=1, updated=0, unchanged=0, rejected=3, added_to_list=1)
    english = [str(row) for row in parse_rows(data, region="CA")[1]]
    assert english == [
        "line 2: wrong number of digits: '555-12'",
        "line 3: invalid email address 'bad'",
        "line 4: no phone number",
    ]
    assert report.summary() == (
        "1 imported, 0 updated, 0 unchanged, 3 rejected; 1 added to the calling list"
    )
    token = shared_i18n.activate_scoped("fr")
    try:
        french = [str(row) for row in parse_rows(data, region="CA")[1]]
        summary = report.summary()
    finally:
        shared_i18n.deactivate(token)
    assert french == [
        "ligne 2 : nombre de chiffres incorrect : '555-12'",
        "ligne 3 : adresse courriel invalide 'bad'",
        "ligne 4 : aucun numéro de téléphone",
    ]
    assert (
        summary == "1 importé, 0 mis à jour, 0 inchangé, 3 rejetés ; 1 ajouté à la liste d'appels"
    )


async def _upload(browser: Browser, campaign_id: int, data: bytes) -> tuple[int, str]:
    form = aiohttp.FormData()
    form.add_field("csrf_token", browser.csrf)
    form.add_field("file", data, filename="contacts.csv", content_type="text/csv")
    return await upload_csv(browser, campaign_id, form)


async def test_the_import_report_speaks_the_viewers_language(
    client: ClientFactory, world: WebWorld
) -> None:
    data = b"name,phone\nA Bad,555-12\nNo Number,\n"
    french = await client("adam", language="fr")  # no language of his own: the browser's
    status, html = await _upload(french, world.campaign_id, data)
    assert status == 200, html
    assert "nombre de chiffres incorrect" in html
    assert "aucun numéro de téléphone" in html
    english = await client("olivia", language="fr")  # her own language (English) wins
    status, html = await _upload(english, world.campaign_id, data)
    assert status == 200, html
    assert "wrong number of digits" in html and "no phone number" in html
    status, html = await _upload(french, world.campaign_id, b"name,email\nA,a@example.org\n")
    assert status == 422
    assert "aucune colonne de téléphone dans l" in html
