"""Live call state: what a call's state looks like on the panels, and publishing it.

Payloads go to the in-process broadcaster, which the MQTT publisher and the
live panels follow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.vocabulary import CallOutcome, CallState, outcome_owed
from dialer.live.broadcaster import Broadcaster
from dialer.services.common import Clock
from dialer.store import calls
from dialer.store.models import CallAttempt, Disposition, PowerSession, utcnow


class CallPublisher:
    """Announces calls' states and campaigns' counters to whoever follows them live."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        broadcaster: Broadcaster,
        clock: Clock = utcnow,
    ) -> None:
        self.sessions = sessions
        self.broadcaster = broadcaster
        self.clock = clock
        # Each volunteer's last call whose outcome was recorded here: its
        # end, stored or announced late, must not put them back in wrap-up.
        self._outcome_recorded: dict[int, str] = {}

    def publish_call(
        self,
        call: CallAttempt,
        *,
        names: Mapping[str, str] | None = None,
        event_at: datetime | None = None,
    ) -> None:
        """Announce a call's state, with ``names`` (see :func:`call_names`) if known."""
        payload = call_payload(call)
        if event_at is not None:
            # When the PBX news behind this state was read: lets anyone
            # downstream (the panel, MQTT consumers, benchmarks) see the lag.
            payload["event_at"] = _iso(event_at)
        # Carried along so that a live panel, here or in another process,
        # shows the call without a database round trip of its own.
        known = names if names is not None else call_names(call)
        if known:
            payload.update(known)
        self.broadcaster.publish(
            "call", call.call_id, payload, present=call.state is not CallState.ENDED
        )
        status = volunteer_status(
            call.state, call.outcome, contact_answered=call.contact_answered_at is not None
        )
        if status == WRAP_UP and self._outcome_recorded.get(call.volunteer_id) == call.call_id:
            status = AVAILABLE
        self._publish_status(call.volunteer_id, status, call.call_id)

    def publish_session(self, row: PowerSession) -> None:
        """Announce a volunteer's power session: its state, since when, how it went."""
        self.broadcaster.publish(
            "session",
            str(row.volunteer_id),
            session_payload(row),
            present=row.ended_at is None,
        )

    def publish_outcome_recorded(self, volunteer_id: int, call_id: str, *, ended: bool) -> None:
        """The outcome of ``call_id`` is saved: its volunteer is available again.

        Only once the call has ended, and only while the volunteer's shown
        status is about this call: one who already started another call
        stays on it.
        """
        self._outcome_recorded[volunteer_id] = call_id
        if not ended:
            return  # the end of the call makes them available (see publish_call)
        shown = self.broadcaster.current("volunteer", str(volunteer_id))
        if shown is not None and shown.payload.get("call_id") != call_id:
            return
        self._publish_status(volunteer_id, AVAILABLE, call_id)

    async def settle_wrap_ups(self) -> int:
        """Show as available every volunteer shown wrapping up a call whose
        outcome is now recorded or skipped; returns how many.

        For a worker, whose live state every process follows: the outcome
        may have been saved by a web process elsewhere, which only the
        database (and a NOTIFY) tells this one.  Costs nothing while nobody
        is wrapping up.
        """
        wrapping = {
            str(event.payload.get("call_id")): int(event.payload["volunteer_id"])
            for event in self.broadcaster.snapshot("volunteer")
            if event.payload.get("status") == WRAP_UP and event.payload.get("call_id")
        }
        if not wrapping:
            return 0
        async with self.sessions() as session:
            settled = await calls.settled_calls(session, wrapping)
        for call_id in settled:
            self.publish_outcome_recorded(wrapping[call_id], call_id, ended=True)
        return len(settled)

    def _publish_status(self, volunteer_id: int, status: str, call_id: str) -> None:
        self.broadcaster.publish(
            "volunteer",
            str(volunteer_id),
            {
                "volunteer_id": volunteer_id,
                "status": status,
                "call_id": call_id,
                "since": _iso(self.clock()),
            },
        )

    async def final_states(self, call_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The last payload of each of these calls that has ended."""
        async with self.sessions() as session:
            rows = await session.scalars(
                select(CallAttempt).where(
                    CallAttempt.call_id.in_(call_ids), CallAttempt.state == CallState.ENDED
                )
            )
            return {call.call_id: call_payload(call) for call in rows}

    async def campaign_counters(self, campaign_id: int) -> dict[str, Any]:
        """Live numbers for one campaign: dials, reached, contact rate, outcomes.

        Two grouped queries on indexed columns, cheap enough to run after a
        batch of calls ends; the dashboard's full statistics live elsewhere.
        """
        async with self.sessions() as session:
            calls = (
                await session.execute(
                    select(
                        CallAttempt.outcome,
                        func.count(),
                        func.count(CallAttempt.contact_answered_at),
                    )
                    .where(CallAttempt.campaign_id == campaign_id)
                    .group_by(CallAttempt.outcome)
                )
            ).all()
            recorded = (
                await session.execute(
                    select(Disposition.outcome, func.count())
                    .where(Disposition.campaign_id == campaign_id)
                    .group_by(Disposition.outcome)
                )
            ).all()
        dials = sum(count for _, count, _ in calls)
        reached = sum(answered for _, _, answered in calls)
        return {
            "campaign_id": campaign_id,
            "dials": dials,
            "reached": reached,
            "contact_rate": round(reached / dials, 4) if dials else None,
            "live_calls": sum(count for outcome, count, _ in calls if outcome is None),
            "call_outcomes": {o.value: n for o, n, _ in calls if o is not None},
            "outcomes": {o.value: n for o, n in recorded},
        }

    async def publish_campaign_counters(self, campaign_ids: Iterable[int]) -> None:
        for campaign_id in set(campaign_ids):
            counters = await self.campaign_counters(campaign_id)
            self.broadcaster.publish("campaign", str(campaign_id), counters)


def session_payload(row: PowerSession) -> dict[str, Any]:
    """A power session as the panels and MQTT show it (docs/mqtt.md)."""
    return {
        "session_id": row.id,
        "volunteer_id": row.volunteer_id,
        "campaign_id": row.campaign_id,
        "state": row.state.value,
        "since": _iso(row.state_since),
        "started_at": _iso(row.requested_at),
        "calls": row.calls,
        "waited_seconds": round(row.waited_seconds, 1),
        "paused": row.paused_at is not None,
        "pause_reason": row.pause_reason,
        "last_call": row.last_call,
        "waiting_note": row.waiting_note,
        "waiting_reason": row.waiting_reason,
        "waiting_until": _iso(row.waiting_until),
        "ended_at": _iso(row.ended_at),
        "end_reason": row.end_reason,
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


# A volunteer's statuses, as the live panel, its labels and MQTT consumers
# know them (docs/mqtt.md).
AVAILABLE = "idle"
WRAP_UP = "wrap_up"


def volunteer_status(
    state: CallState, outcome: CallOutcome | None, *, contact_answered: bool
) -> str:
    if state in (CallState.REQUESTED, CallState.RINGING_VOLUNTEER):
        return "ringing"
    if state is CallState.ENDED:
        # A call whose outcome is owed (the same rule as the pending
        # outcome that blocks the next call) leaves the volunteer wrapping
        # up until it is recorded or skipped
        # (CallPublisher.publish_outcome_recorded); one that reached no one
        # has its automatic outcome already, and a lost one is for review.
        owed = outcome_owed(outcome, contact_answered=contact_answered)
        return WRAP_UP if owed else AVAILABLE
    return "on_call"


def call_names(call: CallAttempt) -> dict[str, str] | None:
    """The volunteer's and the contact's display names, if ``call`` has them loaded.

    Never loads them: a lazy load outside a session is an error here.
    """
    if {"volunteer", "contact"} & inspect(call).unloaded:
        return None
    volunteer, contact = call.volunteer, call.contact
    if volunteer is None or contact is None:
        return None
    return {
        "volunteer_name": volunteer.display_name or volunteer.username,
        "contact_name": contact.full_name,
    }


def call_payload(call: CallAttempt) -> dict[str, Any]:
    return {
        "call_id": call.call_id,
        "state": call.state.value,
        "outcome": call.outcome.value if call.outcome else None,
        "failure_reason": call.failure_reason,
        "volunteer_id": call.volunteer_id,
        "contact_id": call.contact_id,
        "campaign_id": call.campaign_id,
        "number": call.number_e164,
        "caller_id": call.caller_id,
        "requested_at": _iso(call.requested_at),
        "volunteer_answered_at": _iso(call.volunteer_answered_at),
        "contact_answered_at": _iso(call.contact_answered_at),
        "ended_at": _iso(call.ended_at),
        "dial_status": call.dial_status,
        "needs_review": call.needs_review,
        # Dialed for a power session (dialer.services.power), or None.
        "power_session_id": call.power_session_id,
    }
