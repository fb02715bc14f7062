"""The campaign editor's survey builder over HTTP: saving skip rules, field
errors keyed by question (422, both languages), JSON that does not parse,
JSON import; and outcomes whose required questions an answer skipped."""

from __future__ import annotations

import html as html_lib
import json
import re
from typing import Any

from dialer.store.models import Campaign
from tests.e2e.conftest import Browser, ClientFactory
from tests.e2e.test_ops import editor_form
from tests.e2e.webworld import WebWorld

SKIP_SURVEY: dict[str, Any] = {
    "language": "fr",
    "questions": [
        {
            "id": "vote",
            "label": "Irez-vous voter ?",
            "type": "single_choice",
            "required": True,
            "choices": [
                {"value": "yes", "label": "Oui, c'est sûr"},
                {"value": "no", "label": "Non"},
            ],
            "skip": [{"when": "no", "to": "volunteer"}],
        },
        {
            "id": "certainty",
            "label": "Êtes-vous sûr ?",
            "type": "scale",
            "min": 1,
            "max": 5,
            "required": True,
        },
        {
            "id": "volunteer",
            "label": "Bénévole ?",
            "type": "yes_no",
            "skip": [{"when": "no", "to": None}],
        },
        {"id": "remarks", "label": "Remarques", "type": "text", "required": True},
    ],
}


async def save_survey(browser: Browser, world: WebWorld, survey: Any) -> tuple[int, str]:
    text = survey if isinstance(survey, str) else json.dumps(survey)
    response = await browser.form(
        f"/ops/campaigns/{world.campaign_id}/edit", editor_form(world, survey=text)
    )
    async with response:
        return response.status, await response.text()


def builder_errors(page: str) -> dict[str, str]:
    found = re.search(r'<script type="application/json" id="sb-errors">(.*?)</script>', page, re.S)
    assert found, "no builder errors on the page"
    errors: dict[str, str] = json.loads(found.group(1))
    return errors


async def test_the_builder_saves_skip_rules_and_the_call_screen_carries_them(
    client: ClientFactory, world: WebWorld
) -> None:
    olivia = await client("olivia")
    status, _ = await save_survey(olivia, world, SKIP_SURVEY)
    assert status == 303
    async with world.sessions() as session:
        campaign = await session.get(Campaign, world.campaign_id)
    assert campaign is not None
    assert campaign.survey.language == "fr"
    assert campaign.survey.questions[0].skip_data() == [{"when": "no", "to": "volunteer"}]
    # The editor offers the builder, its script, and the saved JSON to export.
    status, page = await olivia.page(f"/ops/campaigns/{world.campaign_id}/edit")
    assert status == 200
    assert 'id="sb-app"' in page and "survey_builder.js" in page
    assert '"to": "volunteer"' in html_lib.unescape(page)
    # The call screen, in English: the rules as data, Oui/Non in the survey's language.
    alice = await client("alice", language="en")
    _, call_page = await alice.page(
        f"/contacts/{world.contacts['ada']}?campaign={world.campaign_id}"
    )
    assert "survey_form.js" in call_page
    rules = re.search(r'data-question="vote"[^>]*data-skip=\'([^\']*)\'', call_page)
    assert rules and json.loads(html_lib.unescape(rules.group(1))) == [
        {"when": "no", "to": "volunteer"}
    ]
    volunteer = call_page[call_page.index('data-question="volunteer"') :]
    assert 'value="true"> Oui' in volunteer and 'value="false"> Non' in volunteer
    assert 'lang="fr"' in call_page[call_page.index('data-question="vote"') - 200 :]


async def test_problems_are_field_errors_at_each_question(
    client: ClientFactory, world: WebWorld
) -> None:
    broken = json.loads(json.dumps(SKIP_SURVEY))
    broken["questions"][0]["skip"] = [{"when": "no", "to": "vote"}]
    broken["questions"][2]["skip"] = [{"when": "maybe"}]
    broken["questions"][3]["label"] = ""
    # Olivia's account says English; Adam (an admin) has no preference: his browser's.
    for who, language, backward, required in (
        ("olivia", "en", "Skip to a question that comes after this one.", "Required."),
        ("adam", "fr", "Sautez vers une question qui vient après celle-ci.", "Obligatoire."),
    ):
        editor = await client(who, language=language)
        status, page = await save_survey(editor, world, broken)
        assert status == 422
        errors = builder_errors(page)
        assert errors["survey.questions.0.skip.0.to"] == backward
        assert errors["survey.questions.3.label"] == required
        # The rule on question 3 is checked once its own fields are valid.
        assert "survey.questions.2.skip.0.when" in errors
        assert 'id="survey-error"' in page  # the summary above the builder
        # The submitted JSON comes back for the builder to show, with its mistakes.
        assert '"to": "vote"' in html_lib.unescape(page)
    async with world.sessions() as session:
        campaign = await session.get(Campaign, world.campaign_id)
    assert campaign is not None and campaign.survey.questions[0].id == "vote"
    assert campaign.survey.questions[0].skip == ()  # unchanged


async def test_json_that_does_not_parse_is_reported_with_its_line(
    client: ClientFactory, world: WebWorld
) -> None:
    adam = await client("adam", language="fr")
    status, page = await save_survey(adam, world, '{"questions": [\n  {"id": "a",,}\n]}')
    assert status == 422
    text = html_lib.unescape(page)
    assert "Le JSON du questionnaire n'est pas valide (ligne 2, colonne" in text
    # Nothing to show at a question: the JSON opens by itself.
    assert re.search(r'<details id="sb-json-box"\s+open>', page)


async def test_json_import_replaces_the_survey(client: ClientFactory, world: WebWorld) -> None:
    olivia = await client("olivia")
    imported = {
        "questions": [
            {"id": "first", "label": "First?", "type": "yes_no", "skip": [{"when": "yes"}]},
            {"id": "second", "label": "Second", "type": "text"},
        ]
    }
    status, _ = await save_survey(olivia, world, imported)
    assert status == 303
    async with world.sessions() as session:
        campaign = await session.get(Campaign, world.campaign_id)
    assert campaign is not None
    assert [q.id for q in campaign.survey.questions] == ["first", "second"]
    assert campaign.survey.language is None
    assert campaign.survey.skipped({"first": True}) == {"second"}


async def test_outcomes_skip_the_questions_an_answer_skipped(
    client: ClientFactory, world: WebWorld
) -> None:
    olivia = await client("olivia")
    assert (await save_survey(olivia, world, SKIP_SURVEY))[0] == 303
    alice = await client("alice")

    async def submit(number: int, answers: dict[str, Any]) -> tuple[int, Any]:
        return await alice.api(
            "POST",
            "/api/outcomes",
            {
                "submission_id": f"sub-skip-{number:04d}",
                "contact_id": world.contacts["ada"],
                "campaign_id": world.campaign_id,
                "outcome": "answered",
                "consent": True,
                "survey_answers": answers,
            },
        )

    # "certainty" and "remarks" are required, but "no" then "no" skipped them.
    status, body = await submit(1, {"vote": "no", "volunteer": False})
    assert status == 201, body
    # An answer to a question the survey skipped is refused, at that question.
    status, body = await submit(2, {"vote": "no", "certainty": 3, "volunteer": False})
    assert status == 422
    assert set(body["error"]["fields"]) == {"survey.certainty"}
    # Asked, a required question is still required.
    status, body = await submit(3, {"vote": "yes", "volunteer": True})
    assert status == 422
    assert set(body["error"]["fields"]) == {"survey.certainty", "survey.remarks"}
