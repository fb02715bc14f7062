"""An answered call's outcome is owed: no new call and no next contact until it
is recorded or skipped with a reason (issue 17, defect 2), and the history
shows what each outcome said (defect 7)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update

from dialer.domain.vocabulary import CallOutcome, CallState
from dialer.store.models import AuditEntry, CallAttempt, CallingListEntry, TeamMember
from tests.e2e.conftest import Browser, ClientFactory
from tests.e2e.webworld import WebWorld


async def answered_call(
    world: WebWorld,
    volunteer: Browser,
    contact: str = "ada",
    outcome: CallOutcome = CallOutcome.COMPLETED,
) -> str:
    """A call the contact answered and that has ended (as ``outcome`` says),
    with no outcome recorded yet."""
    status, call = await volunteer.api(
        "POST",
        "/api/calls",
        {"contact_id": world.contacts[contact], "campaign_id": world.campaign_id},
    )
    assert status == 201, call
    async with world.sessions.begin() as session:
        await session.execute(
            update(CallAttempt)
            .where(CallAttempt.call_id == call["call_id"])
            .values(
                state=CallState.ENDED,
                outcome=outcome,
                contact_answered_at=CallAttempt.requested_at,
                ended_at=CallAttempt.requested_at,
            )
        )
    return str(call["call_id"])


def answered(world: WebWorld, call_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "submission_id": f"sub-{call_id}",
        "call_id": call_id,
        "contact_id": world.contacts["ada"],
        "campaign_id": world.campaign_id,
        "outcome": "answered",
        "consent": True,
        "survey_answers": {"vote": "maybe", "volunteer": True, "issues": ["transit"]},
        **fields,
    }


async def test_a_pending_outcome_blocks_the_next_call_until_it_is_recorded(
    client: ClientFactory, world: WebWorld
) -> None:
    alice = await client("alice")
    call_id = await answered_call(world, alice)

    status, body = await alice.api(
        "POST",
        "/api/calls",
        {"contact_id": world.contacts["marie"], "campaign_id": world.campaign_id},
    )
    assert status == 409 and body["error"]["code"] == "outcome_pending"
    assert body["error"]["call_id"] == call_id
    assert body["error"]["contact_id"] == world.contacts["ada"]
    assert body["error"]["url"] == (
        f"/contacts/{world.contacts['ada']}?campaign={world.campaign_id}&call={call_id}"
    )

    # Next sends her back to Ada, not on to a new contact.
    response = await alice.request("GET", f"/campaigns/{world.campaign_id}/next")
    assert response.status == 303
    assert response.headers["Location"] == body["error"]["url"]
    status, found = await alice.api("GET", f"/api/campaigns/{world.campaign_id}/next")
    assert found["contact"]["id"] == world.contacts["ada"]
    assert found["outcome_pending"]["call_id"] == call_id
    status, me = await alice.api("GET", "/api/me")
    assert me["outcome_pending"]["call_id"] == call_id
    assert me["outcome_pending"]["contact_name"] == "Ada Lovelace"

    # Ada's page reopens the form for that call; Marie's says where to go.
    status, html = await alice.page(
        f"/contacts/{world.contacts['ada']}?campaign={world.campaign_id}"
    )
    assert status == 200 and f'data-pending-call="{call_id}"' in html
    status, html = await alice.page(
        f"/contacts/{world.contacts['marie']}?campaign={world.campaign_id}"
    )
    assert 'id="pending-banner"' in html and 'data-pending-elsewhere="true"' in html
    # Without its campaign, Ada's page is sent to the call's, survey and all.
    response = await alice.request("GET", f"/contacts/{world.contacts['ada']}?tab=history")
    assert response.status == 303
    assert response.headers["Location"] == body["error"]["url"] + "&tab=history"

    # Someone else is not held up by Alice's call.
    bob = await client("bob")
    status, _ = await bob.api(
        "POST",
        "/api/calls",
        {"contact_id": world.contacts["grace"], "campaign_id": world.campaign_id},
    )
    assert status == 201

    status, _ = await alice.api("POST", "/api/outcomes", answered(world, call_id))
    assert status == 201
    status, me = await alice.api("GET", "/api/me")
    assert me["outcome_pending"] is None
    status, call = await alice.api(
        "POST",
        "/api/calls",
        {"contact_id": world.contacts["marie"], "campaign_id": world.campaign_id},
    )
    assert status == 201, call


async def test_skipping_an_outcome_needs_a_reason_and_is_audited(
    client: ClientFactory, world: WebWorld
) -> None:
    bob = await client("bob")  # Bob reads French
    call_id = await answered_call(world, bob, "grace")
    path = f"/api/calls/{call_id}/skip-outcome"

    for body, field in (
        ({}, "reason"),
        ({"reason": "bored"}, "reason"),
        ({"reason": "other"}, "note"),
        ({"reason": "other", "note": "   "}, "note"),
        ({"reason": "wrong_person", "note": "x" * 501}, "note"),
        ({"reason": "wrong_person", "note": 12}, "note"),
    ):
        status, answer = await bob.api("POST", path, body)
        assert status == 422, (body, answer)
        assert field in answer["error"]["fields"], (body, answer)
    assert answer["error"]["message"] == "Certaines réponses sont à corriger."

    # Not hers to skip: another volunteer does not even see the call.
    alice = await client("alice")
    status, _ = await alice.api("POST", path, {"reason": "call_cut_off"})
    assert status == 404

    status, answer = await bob.api("POST", path, {"reason": "other", "note": " Line dropped "})
    assert status == 200 and answer == {"call_id": call_id, "skipped": True}
    status, answer = await bob.api("POST", path, {"reason": "other", "note": "again"})
    assert status == 200 and answer["skipped"] is False  # a second click changes nothing

    async with world.sessions() as session:
        call = await session.scalar(select(CallAttempt).where(CallAttempt.call_id == call_id))
        audit = await session.scalar(select(AuditEntry).where(AuditEntry.action == "outcome.skip"))
        entry = await session.scalar(
            select(CallingListEntry).where(
                CallingListEntry.contact_id == world.contacts["grace"],
                CallingListEntry.campaign_id == world.campaign_id,
            )
        )
    assert call is not None and call.outcome_skip_reason == "other"
    assert call.outcome_skip_note == "Line dropped"
    assert call.outcome_skipped_by_id == world.users["bob"]
    assert audit is not None and audit.entity_id == call_id
    assert audit.changes["reason"] == "other" and audit.actor_id == world.users["bob"]
    # The contact follows the campaign's retry rules: not settled as done.
    assert entry is not None and not entry.done

    status, html = await bob.page(
        f"/contacts/{world.contacts['grace']}?campaign={world.campaign_id}&tab=history"
    )
    assert "Résultat non saisi : Autre raison" in html and "Line dropped" in html

    # Free to call again.
    status, _ = await bob.api(
        "POST",
        "/api/calls",
        {"contact_id": world.contacts["marie"], "campaign_id": world.campaign_id},
    )
    assert status == 201


async def test_a_recorded_outcome_cannot_be_skipped(client: ClientFactory, world: WebWorld) -> None:
    alice = await client("alice")
    call_id = await answered_call(world, alice)
    status, _ = await alice.api("POST", "/api/outcomes", answered(world, call_id))
    assert status == 201
    status, body = await alice.api(
        "POST", f"/api/calls/{call_id}/skip-outcome", {"reason": "call_cut_off"}
    )
    assert status == 409 and body["error"]["code"] == "outcome_recorded"


async def test_the_history_shows_consent_survey_answers_and_mobilized(
    client: ClientFactory, world: WebWorld
) -> None:
    alice = await client("alice")
    call_id = await answered_call(world, alice)
    status, _ = await alice.api(
        "POST", "/api/outcomes", answered(world, call_id, mobilized=True, support_score=4)
    )
    assert status == 201
    status, html = await alice.page(
        f"/contacts/{world.contacts['ada']}?campaign={world.campaign_id}&tab=history"
    )
    assert status == 200
    history = html[html.index('id="tab-history"') :]
    # Question labels and the chosen choices' labels, from the campaign's survey.
    assert "Will you vote on Sunday?</span> — <strong>Maybe</strong>" in history
    assert "Would you volunteer with us?</span> — <strong>Yes</strong>" in history
    assert "Which issues matter most?</span> — <strong>Transit</strong>" in history
    assert "Agreed to answer" in history
    assert "Was mobilized" in history


async def test_an_answered_call_an_organizer_hung_up_is_owed_but_a_lost_one_is_not(
    client: ClientFactory, world: WebWorld
) -> None:
    # Hung up from the live panel while talking: the contact talked, and
    # nothing gives it an automatic outcome; it is owed like a completed call.
    alice = await client("alice")
    call_id = await answered_call(world, alice, outcome=CallOutcome.HUNG_UP_BY_OPERATOR)
    marie = {"contact_id": world.contacts["marie"], "campaign_id": world.campaign_id}
    status, body = await alice.api("POST", "/api/calls", marie)
    assert status == 409 and body["error"]["code"] == "outcome_pending"
    assert body["error"]["call_id"] == call_id
    status, html = await alice.page(
        f"/contacts/{world.contacts['ada']}?campaign={world.campaign_id}"
    )
    assert f'data-pending-call="{call_id}"' in html
    status, answer = await alice.api(
        "POST", f"/api/calls/{call_id}/skip-outcome", {"reason": "call_cut_off"}
    )
    assert status == 200 and answer["skipped"] is True

    # Lost when the PBX crashed: nobody can say how it went; it is for
    # review, and holds nobody up.
    bob = await client("bob")
    await answered_call(world, bob, "grace", outcome=CallOutcome.LOST)
    status, me = await bob.api("GET", "/api/me")
    assert me["outcome_pending"] is None
    status, body = await bob.api(
        "POST",
        "/api/calls",
        {"contact_id": world.contacts["gustave"], "campaign_id": world.campaign_id},
    )
    assert status == 201, body


async def test_an_outcome_owed_on_a_contact_out_of_view_is_skipped_where_next_leads(
    client: ClientFactory, world: WebWorld
) -> None:
    alice = await client("alice")
    call_id = await answered_call(world, alice)
    # Alice moves from the Montreal team to Quebec: Ada's record is out of her view.
    async with world.sessions.begin() as session:
        await session.execute(
            delete(TeamMember).where(
                TeamMember.user_id == world.users["alice"], TeamMember.team_id == world.team_id
            )
        )
        session.add(TeamMember(user_id=world.users["alice"], team_id=world.other_team_id))
    pending_url = f"/contacts/{world.contacts['ada']}?campaign={world.campaign_id}&call={call_id}"

    # Next on her new campaign shows its page with the skip form, not a 404.
    response = await alice.request("GET", f"/campaigns/{world.other_campaign_id}/next")
    assert response.status == 200
    html = await response.text()
    assert "Quebec canvass" in html and 'id="pending-banner"' in html
    assert f'data-call="{call_id}"' in html and 'name="skip_reason"' in html
    # The old campaign's Next (a screen left open) and the link to the call
    # lead to the same offer, never to a 404.
    response = await alice.request("GET", f"/campaigns/{world.campaign_id}/next")
    assert response.status == 303 and response.headers["Location"] == pending_url
    status, html = await alice.page(pending_url)
    assert status == 200 and f'data-call="{call_id}"' in html
    assert "Ada Lovelace" in html and "Remind people" not in html  # no record shown
    # Another contact's page offers the skip in its banner.
    status, html = await alice.page(
        f"/contacts/{world.contacts['alan']}?campaign={world.other_campaign_id}"
    )
    assert status == 200 and 'id="pending-banner"' in html
    assert 'id="pending-skip-form"' in html and f'data-call="{call_id}"' in html

    status, answer = await alice.api(
        "POST", f"/api/calls/{call_id}/skip-outcome", {"reason": "wrong_person"}
    )
    assert status == 200 and answer["skipped"] is True
    status, me = await alice.api("GET", "/api/me")
    assert me["outcome_pending"] is None
    status, body = await alice.api(
        "POST",
        "/api/calls",
        {"contact_id": world.contacts["alan"], "campaign_id": world.other_campaign_id},
    )
    assert status == 201, body
    # Ada's record was out of her view all along; with nothing owed, it says so.
    assert (await alice.request("GET", pending_url)).status == 404
