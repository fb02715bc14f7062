"""CSV export of a campaign's results: one row per call attempt."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any, TextIO

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.i18n import _
from dialer.store.models import CallAttempt, Campaign, Contact, Disposition, User

BASE_COLUMNS = (
    "call_id",
    "contact_id",
    "first_name",
    "last_name",
    "number",
    "volunteer",
    "caller_id",
    "requested_at",
    "contact_answered_at",
    "ended_at",
    "call_state",
    "call_outcome",
    "dial_status",
    "disposition",
    "consent",
    "mobilized",
    "support_score",
    "callback_at",
    "comments",
)
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9][0-9.]*\Z")
# Spreadsheets execute cells starting with these (CSV/formula injection).
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class ExportError(Exception):
    pass


def spreadsheet_safe(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        value = ";".join(str(item) for item in value)
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    if text.startswith(_FORMULA_PREFIXES) and not _PLAIN_NUMBER.match(text):
        return "'" + text
    return text


async def export_results(session: AsyncSession, campaign_id: int, out: TextIO) -> int:
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None:
        raise ExportError(_("no campaign with id %(id)s", id=campaign_id))
    question_ids = [question.id for question in campaign.survey.questions]
    writer = csv.writer(out)
    writer.writerow([*BASE_COLUMNS, *(f"survey:{qid}" for qid in question_ids)])
    statement = (
        select(CallAttempt, Contact, User.username, Disposition)
        .join(Contact, Contact.id == CallAttempt.contact_id)
        .join(User, User.id == CallAttempt.volunteer_id)
        .outerjoin(Disposition, Disposition.call_attempt_id == CallAttempt.id)
        .where(CallAttempt.campaign_id == campaign_id)
        .order_by(CallAttempt.requested_at, CallAttempt.id)
    )
    count = 0
    result = await session.stream(statement)
    async for call, contact, username, disposition in result:
        writer.writerow(_row(call, contact, username, disposition, question_ids))
        count += 1
    return count


def _row(
    call: CallAttempt,
    contact: Contact,
    username: str,
    disposition: Disposition | None,
    question_ids: Iterable[str],
) -> list[str]:
    answers = disposition.survey_answers if disposition else {}
    values: list[Any] = [
        call.call_id,
        contact.id,
        contact.first_name,
        contact.last_name,
        call.number_e164,
        username,
        call.caller_id,
        call.requested_at,
        call.contact_answered_at,
        call.ended_at,
        call.state.value,
        call.outcome.value if call.outcome else None,
        call.dial_status,
        disposition.outcome.value if disposition else None,
        disposition.consent if disposition else None,
        disposition.mobilized if disposition else None,
        disposition.support_score if disposition else None,
        disposition.callback_at if disposition else None,
        disposition.comments if disposition else None,
    ]
    values.extend(answers.get(qid) for qid in question_ids)
    return [spreadsheet_safe(value) for value in values]


class ExportService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def export_results(self, campaign_id: int, out: TextIO) -> int:
        """Write the campaign's results to ``out``; raises :class:`ExportError`."""
        async with self._sessions() as session:
            return await export_results(session, campaign_id, out)
