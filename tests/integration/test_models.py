"""Model constraints, checked by the real PostgreSQL schema the migrations build."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.survey import SurveyDefinition
from dialer.domain.vocabulary import CallState, Role
from dialer.store import audit
from dialer.store.models import AuditEntry, CallAttempt, Campaign, Contact, ContactPhone, User

Sessions = async_sessionmaker[AsyncSession]


async def _contact(session: AsyncSession, *numbers: str) -> Contact:
    contact = Contact(first_name="Ada", last_name="Lovelace")
    contact.phones = [ContactPhone(e164=number) for number in numbers]
    session.add(contact)
    await session.flush()
    return contact


async def test_a_number_belongs_to_one_contact(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        await _contact(session, "+15145550184")
    with pytest.raises(IntegrityError, match="uq_contact_phones_e164"):
        async with sessions.begin() as session:
            await _contact(session, "+15145550184")


async def test_the_same_number_twice_on_one_contact_is_refused(sessions: Sessions) -> None:
    with pytest.raises(IntegrityError, match="uq_contact_phones_e164"):
        async with sessions.begin() as session:
            await _contact(session, "+15145550184", "+15145550184")


async def test_numbers_must_be_e164(sessions: Sessions) -> None:
    with pytest.raises(IntegrityError, match="ck_contact_phones_e164_format"):
        async with sessions.begin() as session:
            await _contact(session, "5145550184")


@pytest.mark.parametrize("score", [0, 6, -1])
async def test_support_score_is_one_to_five(sessions: Sessions, score: int) -> None:
    with pytest.raises(IntegrityError, match="ck_contacts_support_score_range"):
        async with sessions.begin() as session:
            session.add(Contact(first_name="x", support_score=score))


async def test_support_score_bounds_are_accepted(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        session.add_all([Contact(support_score=1), Contact(support_score=5), Contact()])
    async with sessions() as session:
        scores = sorted(
            (await session.scalars(select(Contact.support_score))).all(), key=lambda s: s or 0
        )
    assert scores == [None, 1, 5]


async def test_roles_are_checked_by_the_database(sessions: Sessions) -> None:
    with pytest.raises(IntegrityError, match="ck_users_role"):
        async with sessions.begin() as session:
            await session.execute(
                text(
                    "INSERT INTO users (username, display_name, role, password_hash, "
                    "is_active, created_at) VALUES ('eve', 'Eve', 'superuser', 'x', true, now())"
                )
            )


async def test_known_roles_round_trip(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        for role in Role:
            session.add(User(username=f"u-{role}", password_hash="x", role=role))
    async with sessions() as session:
        roles = set((await session.scalars(select(User.role))).all())
    assert roles == set(Role)


async def test_a_do_not_call_flag_needs_its_date(sessions: Sessions) -> None:
    with pytest.raises(IntegrityError, match="ck_contacts_dnc_has_date"):
        async with sessions.begin() as session:
            session.add(Contact(do_not_call=True))


async def test_one_live_call_per_contact(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        contact = await _contact(session, "+15145550184")
        volunteers = [
            User(username=f"v{i}", password_hash="x", sip_extension=f"100{i}") for i in range(2)
        ]
        session.add_all(volunteers)
        await session.flush()
        session.add(
            CallAttempt(
                call_id="c1",
                contact_id=contact.id,
                volunteer_id=volunteers[0].id,
                number_e164="+15145550184",
            )
        )
    with pytest.raises(IntegrityError, match="uq_call_attempts_live_contact"):
        async with sessions.begin() as session:
            session.add(
                CallAttempt(
                    call_id="c2",
                    contact_id=contact.id,
                    volunteer_id=volunteers[1].id,
                    number_e164="+15145550184",
                )
            )
    # Once the first call has ended, the contact can be called again.
    async with sessions.begin() as session:
        await session.execute(update(CallAttempt).values(state=CallState.ENDED))
        session.add(
            CallAttempt(
                call_id="c3",
                contact_id=contact.id,
                volunteer_id=volunteers[1].id,
                number_e164="+15145550184",
            )
        )


async def test_one_live_call_per_volunteer(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        first = await _contact(session, "+15145550184")
        second = await _contact(session, "+15145550185")
        volunteer = User(username="vol", password_hash="x")
        session.add(volunteer)
        await session.flush()
        session.add(
            CallAttempt(
                call_id="c1",
                contact_id=first.id,
                volunteer_id=volunteer.id,
                number_e164="+15145550184",
            )
        )
    with pytest.raises(IntegrityError, match="uq_call_attempts_live_volunteer"):
        async with sessions.begin() as session:
            session.add(
                CallAttempt(
                    call_id="c2",
                    contact_id=second.id,
                    volunteer_id=volunteer.id,
                    number_e164="+15145550185",
                )
            )


async def test_survey_definitions_are_validated_on_the_way_in(sessions: Sessions) -> None:
    with pytest.raises(Exception, match="at least 2 choices"):
        async with sessions.begin() as session:
            session.add(
                Campaign(
                    title="t",
                    survey={
                        "questions": [
                            {
                                "id": "q1",
                                "label": "Vote?",
                                "type": "single_choice",
                                "choices": [{"value": "y", "label": "Yes"}],
                            }
                        ]
                    },
                )
            )
    async with sessions.begin() as session:
        session.add(
            Campaign(
                title="ok",
                survey={
                    "questions": [
                        {"id": "q1", "label": "Vote?", "type": "yes_no", "required": True}
                    ]
                },
            )
        )
    async with sessions() as session:
        campaign = await session.scalar(select(Campaign))
    assert campaign is not None
    assert isinstance(campaign.survey, SurveyDefinition)
    assert campaign.survey.questions[0].required


async def test_audit_log_is_append_only(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        await audit.record(session, action="x", entity_type="contact", entity_id=1, actor_label="t")
    for statement in (update(AuditEntry).values(action="y"), delete(AuditEntry)):
        with pytest.raises(DBAPIError, match="append-only"):
            async with sessions.begin() as session:
                await session.execute(statement)
    async with sessions() as session:
        actions = (await session.scalars(select(AuditEntry.action))).all()
    assert actions == ["x"]


async def test_datetimes_come_back_aware_in_utc(sessions: Sessions) -> None:
    moment = datetime(2026, 3, 8, 12, 30, tzinfo=UTC)
    async with sessions.begin() as session:
        await session.execute(
            insert(Contact).values(
                first_name="t",
                last_name="",
                tags=[],
                do_not_call=True,
                dnc_at=moment,
                notes="",
                created_at=moment,
                updated_at=moment,
            )
        )
    async with sessions() as session:
        stored = await session.scalar(select(Contact.dnc_at))
    assert stored == moment
    assert stored is not None and stored.tzinfo is not None
