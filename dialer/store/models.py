"""The data model: SQLAlchemy 2 typed declarative classes.

Runs on PostgreSQL (production) and SQLite (the embedded demo), so only
portable types are used; JSON columns that carry structure (surveys,
calling hours) are validated by pydantic on the way in.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    literal_column,
    text,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from dialer.domain.notifications import NotificationKind
from dialer.domain.survey import CallingHours, SurveyDefinition
from dialer.domain.vocabulary import (
    CallOutcome,
    CallState,
    CampaignStatus,
    DialingMode,
    DispositionOutcome,
    PhoneType,
    PowerNextCall,
    PowerSessionState,
    Role,
    TaskStatus,
    VolunteerPhone,
)

M = TypeVar("M", bound=BaseModel)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

LIVE_STATES_SQL = "state <> 'ended'"
# Calls that may owe an outcome: answered, none recorded, none skipped.
# Only IS [NOT] NULL tests, so the planner proves a query's filter implies
# it whatever values the query binds.
OUTCOME_OWED_SQL = (
    "contact_answered_at IS NOT NULL AND outcome_recorded_at IS NULL AND outcome_skipped_at IS NULL"
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite has no time zone type and hands back naive values; normalising
    here keeps comparisons in Python from mixing naive and aware times.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused; pass an aware datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class PydanticJSON(TypeDecorator[M]):
    """A JSON column holding one validated pydantic model."""

    impl = JSON
    cache_ok = True

    def __init__(self, model: type[M]) -> None:
        super().__init__()
        self.model = model

    def process_bind_param(self, value: M | dict[str, Any] | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        validated = value if isinstance(value, self.model) else self.model.model_validate(value)
        return validated.model_dump(mode="json")

    def process_result_value(self, value: Any, dialect: Dialect) -> M | None:
        if value is None:
            return None
        return self.model.model_validate(value)


def enum_column(enum: type[StrEnum], name: str) -> SAEnum:
    # Stored as plain strings with a CHECK constraint: portable, readable in
    # psql, and adding a value is a constraint change rather than ALTER TYPE.
    return SAEnum(
        enum,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When its members may make calls outside any campaign, in the contact's time.
    calling_hours: Mapped[CallingHours] = mapped_column(
        PydanticJSON(CallingHours), default=CallingHours
    )

    members: Mapped[list[TeamMember]] = relationship(back_populates="team", cascade="all")


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("length(username) >= 2", name="username_length"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(320))
    role: Mapped[Role] = mapped_column(enum_column(Role, "role"), default=Role.VOLUNTEER)
    password_hash: Mapped[str] = mapped_column(String(255))
    sip_extension: Mapped[str | None] = mapped_column(String(40), unique=True)
    # The PBX (worker) the desk phone is registered on, as in DIALER_PBX_NAME;
    # None: the PBX of the process taking the request.
    pbx: Mapped[str | None] = mapped_column(String(100))
    language: Mapped[str | None] = mapped_column(String(16))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    phone: Mapped[VolunteerPhone] = mapped_column(
        enum_column(VolunteerPhone, "volunteer_phone"),
        default=VolunteerPhone.DESK,
        server_default=VolunteerPhone.DESK.value,
    )
    # The browser phone's SIP password: generated, never typed or shown to
    # anyone but its own user's browser; Asterisk reads it through the
    # ps_auths view (migration 0013).  None unless the phone is the browser.
    sip_secret: Mapped[str | None] = mapped_column(String(64))
    # The own-number phone: E.164, and who approved it for the dialer to call
    # (an organizer or admin; the volunteer cannot set it alone).
    own_number: Mapped[str | None] = mapped_column(String(20))
    own_number_approved_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    own_number_approved_at: Mapped[datetime | None]

    memberships: Mapped[list[TeamMember]] = relationship(back_populates="user", cascade="all")


class TeamMember(Base):
    __tablename__ = "team_members"

    team_id: Mapped[int] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    joined_at: Mapped[datetime] = mapped_column(default=utcnow)

    team: Mapped[Team] = relationship(back_populates="members")
    user: Mapped[User] = relationship(back_populates="memberships")


class Contact(Base):
    __tablename__ = "contacts"
    __table_args__ = (
        CheckConstraint(
            "support_score IS NULL OR (support_score >= 1 AND support_score <= 5)",
            name="support_score_range",
        ),
        CheckConstraint("NOT do_not_call OR dnc_at IS NOT NULL", name="dnc_has_date"),
        # The contact list's order, and its keyset pages (migration 0011); with
        # what the list's filters read, so walking it needs no table rows.
        Index(
            "ix_contacts_name_order",
            "last_name",
            "first_name",
            "id",
            postgresql_include=["do_not_call", "support_score", "language", "tags"],
        ),
        Index("ix_contacts_support_score", "support_score"),
        # Pattern ops: the language filter is "fr" or "fr-%" whatever the collation.
        Index(
            "ix_contacts_language", "language", postgresql_ops={"language": "varchar_pattern_ops"}
        ),
        # Search by any part of "first last" and of the email (ILIKE '%...%').
        # PostgreSQL alone builds these (the migration skips them on SQLite);
        # their expressions are written as PostgreSQL prints them back, so the
        # comparison of the migrations with these models finds them equal.
        Index(
            "ix_contacts_full_name_trgm",
            literal_column("((first_name::text || ' '::text) || last_name::text)").label(
                "full_name"
            ),
            postgresql_using="gin",
            postgresql_ops={"full_name": "gin_trgm_ops"},
        ).ddl_if(dialect="postgresql"),
        Index(
            "ix_contacts_email_trgm",
            literal_column("lower(email::text)").label("email_lower"),
            postgresql_using="gin",
            postgresql_ops={"email_lower": "gin_trgm_ops"},
        ).ddl_if(dialect="postgresql"),
        # The tag filter: CAST(tags AS JSONB) ?| tags.
        Index("ix_contacts_tags", literal_column("((tags)::jsonb)"), postgresql_using="gin").ddl_if(
            dialect="postgresql"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    first_name: Mapped[str] = mapped_column(String(200), default="")
    last_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(320))
    language: Mapped[str | None] = mapped_column(String(16))
    address: Mapped[str | None] = mapped_column(String(500))
    area: Mapped[str | None] = mapped_column(String(200))
    # An IANA zone set by hand; wins over the zone guessed from the number.
    timezone: Mapped[str | None] = mapped_column(String(64))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    support_score: Mapped[int | None] = mapped_column(Integer)
    do_not_call: Mapped[bool] = mapped_column(Boolean, default=False)
    dnc_reason: Mapped[str | None] = mapped_column(String(500))
    dnc_at: Mapped[datetime | None] = mapped_column()
    notes: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    phones: Mapped[list[ContactPhone]] = relationship(
        back_populates="contact", cascade="all, delete-orphan", order_by="ContactPhone.id"
    )

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class ContactPhone(Base):
    __tablename__ = "contact_phones"
    __table_args__ = (
        # A number identifies one person: imports merge duplicates on it.
        UniqueConstraint("e164", name="uq_contact_phones_e164"),
        CheckConstraint("e164 LIKE '+%'", name="e164_format"),
        # Search by digits anywhere in a number (substr(e164, 2) LIKE '%514555%').
        # On the digits, not on e164 itself: pg_trgm answers = too, and the
        # planner took this index for the imports' lookups of whole numbers
        # (1.8 s for 2,000 numbers, against milliseconds on the unique index).
        Index(
            "ix_contact_phones_digits_trgm",
            literal_column("substr(e164::text, 2)").label("e164_digits"),
            postgresql_using="gin",
            postgresql_ops={"e164_digits": "gin_trgm_ops"},
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    e164: Mapped[str] = mapped_column(String(20))
    phone_type: Mapped[PhoneType] = mapped_column(
        enum_column(PhoneType, "phone_type"), default=PhoneType.OTHER
    )
    wrong_number: Mapped[bool] = mapped_column(Boolean, default=False)
    do_not_call: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    contact: Mapped[Contact] = relationship(back_populates="phones")


class Campaign(Base):
    """A "calling action": who calls whom, when, with which script."""

    __tablename__ = "campaigns"
    __table_args__ = (
        CheckConstraint("max_attempts >= 1", name="max_attempts_positive"),
        CheckConstraint("retry_delay_minutes >= 0", name="retry_delay_non_negative"),
        CheckConstraint(
            "ends_at IS NULL OR starts_at IS NULL OR ends_at > starts_at", name="window_ordered"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    brief: Mapped[str] = mapped_column(Text, default="")
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"))
    status: Mapped[CampaignStatus] = mapped_column(
        enum_column(CampaignStatus, "campaign_status"), default=CampaignStatus.DRAFT
    )
    scheduled_on: Mapped[date | None] = mapped_column(Date)
    starts_at: Mapped[datetime | None] = mapped_column()
    ends_at: Mapped[datetime | None] = mapped_column()
    allowed_caller_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    calling_hours: Mapped[CallingHours] = mapped_column(
        PydanticJSON(CallingHours), default=CallingHours
    )
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    retry_delay_minutes: Mapped[int] = mapped_column(Integer, default=240)
    survey: Mapped[SurveyDefinition] = mapped_column(
        PydanticJSON(SurveyDefinition), default=SurveyDefinition
    )
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Click-to-call, or power sessions as well (migration 0016).
    dialing_mode: Mapped[DialingMode] = mapped_column(
        enum_column(DialingMode, "dialing_mode"), default=DialingMode.CLICK
    )
    # In power mode, when the next contact is dialed after an answered call (0017).
    power_next_call: Mapped[PowerNextCall] = mapped_column(
        enum_column(PowerNextCall, "power_next_call"), default=PowerNextCall.AFTER_OUTCOME
    )

    team: Mapped[Team | None] = relationship()


class Attendance(Base):
    __tablename__ = "attendances"

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    attending: Mapped[bool] = mapped_column(Boolean, default=True)
    marked_at: Mapped[datetime] = mapped_column(default=utcnow)


class CallingListEntry(Base):
    """One contact on a campaign's list, optionally assigned to a volunteer."""

    __tablename__ = "calling_list_entries"
    __table_args__ = (
        UniqueConstraint("campaign_id", "contact_id", name="uq_calling_list_campaign_contact"),
        Index("ix_calling_list_volunteer", "campaign_id", "volunteer_id"),
        # "On a list of a campaign in view", probed from a contact.
        Index("ix_calling_list_contact_campaign", "contact_id", "campaign_id"),
        # The call-backs not done: "call-back due" from a contact, or all of them.
        Index(
            "ix_calling_list_callbacks",
            "contact_id",
            "campaign_id",
            "callback_at",
            postgresql_where=text("NOT done AND callback_at IS NOT NULL"),
            sqlite_where=text("NOT done AND callback_at IS NOT NULL"),
        ),
        # A volunteer's open list in next-contact order (dialer.services.lists):
        # callback_at ascending puts NULLs last, as the order wants.
        Index(
            "ix_calling_list_next",
            "campaign_id",
            "volunteer_id",
            "callback_at",
            "attempts",
            text("next_attempt_at NULLS FIRST"),
            "id",
            postgresql_where=text("NOT done"),
        ).ddl_if(dialect="postgresql"),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    volunteer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    callback_at: Mapped[datetime | None] = mapped_column()
    # True once a disposition closes the contact for this campaign.
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)


class CallAttempt(Base):
    __tablename__ = "call_attempts"
    __table_args__ = (
        # The atomic claims: at most one live call per contact and per
        # volunteer, enforced by the database across every worker process.
        Index(
            "uq_call_attempts_live_contact",
            "contact_id",
            unique=True,
            postgresql_where=text(LIVE_STATES_SQL),
            sqlite_where=text(LIVE_STATES_SQL),
        ),
        Index(
            "uq_call_attempts_live_volunteer",
            "volunteer_id",
            unique=True,
            postgresql_where=text(LIVE_STATES_SQL),
            sqlite_where=text(LIVE_STATES_SQL),
        ),
        Index("ix_call_attempts_campaign_contact", "campaign_id", "contact_id"),
        Index("ix_call_attempts_state", "state"),
        # A contact's calls: never called, last called.
        Index("ix_call_attempts_contact_requested", "contact_id", "requested_at"),
        # A volunteer's latest calls: the outcome they owe (migration 0011).
        Index("ix_call_attempts_volunteer_requested", "volunteer_id", "requested_at"),
        # A campaign's calls in time order: the dashboard's last hours, the export (0012).
        Index("ix_call_attempts_campaign_requested", "campaign_id", "requested_at"),
        # A campaign's live calls, for the dashboard (migration 0012).
        Index(
            "ix_call_attempts_campaign_live",
            "campaign_id",
            postgresql_where=text("ended_at IS NULL"),
            sqlite_where=text("ended_at IS NULL"),
        ),
        # A power session's calls: its live one, its latest (0016).
        Index(
            "ix_call_attempts_power_session",
            "power_session_id",
            "requested_at",
            postgresql_where=text("power_session_id IS NOT NULL"),
            sqlite_where=text("power_session_id IS NOT NULL"),
        ),
        # The answered calls whose outcome nobody has given yet: the one a
        # volunteer owes is looked up before every call they start (0014).
        Index(
            "ix_call_attempts_outcome_owed",
            "volunteer_id",
            "requested_at",
            postgresql_where=text(OUTCOME_OWED_SQL),
            sqlite_where=text(OUTCOME_OWED_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64), unique=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    phone_id: Mapped[int | None] = mapped_column(
        ForeignKey("contact_phones.id", ondelete="SET NULL")
    )
    number_e164: Mapped[str] = mapped_column(String(20))
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    caller_id: Mapped[str | None] = mapped_column(String(40))
    # What the volunteer took this call on (their usual phone or, this
    # session, their own number); None on calls from before migration 0013.
    volunteer_phone: Mapped[VolunteerPhone | None] = mapped_column(
        enum_column(VolunteerPhone, "volunteer_phone")
    )
    # Which worker/PBX owns the call; several workers share one database.
    pbx: Mapped[str] = mapped_column(String(100), default="default")
    state: Mapped[CallState] = mapped_column(
        enum_column(CallState, "call_state"), default=CallState.REQUESTED
    )
    outcome: Mapped[CallOutcome | None] = mapped_column(enum_column(CallOutcome, "call_outcome"))
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    needs_review: Mapped[bool] = mapped_column(Boolean, default=False)
    originate_sent_at: Mapped[datetime | None] = mapped_column()
    volunteer_channel: Mapped[str | None] = mapped_column(String(200))
    volunteer_uniqueid: Mapped[str | None] = mapped_column(String(100))
    contact_channel: Mapped[str | None] = mapped_column(String(200))
    contact_uniqueid: Mapped[str | None] = mapped_column(String(100))
    linkedid: Mapped[str | None] = mapped_column(String(100))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    volunteer_answered_at: Mapped[datetime | None] = mapped_column()
    contact_answered_at: Mapped[datetime | None] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column()
    dial_status: Mapped[str | None] = mapped_column(String(40))
    volunteer_hangup_cause: Mapped[int | None] = mapped_column(Integer)
    contact_hangup_cause: Mapped[int | None] = mapped_column(Integer)
    # An answered call's outcome the volunteer chose not to record, and why
    # (dialer.services.outcomes.SKIP_REASONS): until then it is "pending".
    outcome_skipped_at: Mapped[datetime | None] = mapped_column()
    # When a disposition was stored for this call (dialer.store.outcomes
    # keeps it, as the only writer of dispositions): the outcome owed is
    # then found through a small index instead of a volunteer's whole history.
    # Migration 0014 dated only the answered, unskipped calls of before it:
    # a call never answered may have a disposition and no date.
    outcome_recorded_at: Mapped[datetime | None] = mapped_column()
    outcome_skip_reason: Mapped[str | None] = mapped_column(String(40))
    outcome_skip_note: Mapped[str | None] = mapped_column(String(500))
    outcome_skipped_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The power session this call was dialed for (0016): its volunteer leg is
    # then a Local channel into the session's conference.  No foreign key:
    # SQLite cannot add one to this table without rebuilding it, which would
    # drop its counter triggers (0012).  Nothing dangles: a session is only
    # deleted with its volunteer, whose calls go with them.
    power_session_id: Mapped[int | None] = mapped_column(Integer)

    volunteer: Mapped[User] = relationship(foreign_keys=[volunteer_id])
    contact: Mapped[Contact] = relationship()


class HangupRequest(Base):
    """A hang-up asked for by a volunteer or ops, waiting for its PBX's worker.

    A row rather than a message so a web process can ask without the worker
    in the same process, and a worker restart does not forget the request.
    """

    __tablename__ = "hangup_requests"
    __table_args__ = (
        Index(
            "ix_hangup_requests_waiting",
            "pbx",
            postgresql_where=text("handled_at IS NULL"),
            sqlite_where=text("handled_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64))
    pbx: Mapped[str] = mapped_column(String(100))
    # "volunteer" or "operator": it decides the call's outcome.
    requested_by: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    handled_at: Mapped[datetime | None] = mapped_column()


class PowerSession(Base):
    """A volunteer calling in power mode: their phone called once, the next
    contact dialed for them after each call (dialer.domain.power, 0016).

    ``state`` follows from the other columns and the session's calls
    (dialer.domain.power.session_state); it is stored for the live panel.
    """

    __tablename__ = "power_sessions"
    __table_args__ = (
        # One session at a time per volunteer, whatever process starts it.
        Index(
            "uq_power_sessions_live_volunteer",
            "volunteer_id",
            unique=True,
            postgresql_where=text("ended_at IS NULL"),
            sqlite_where=text("ended_at IS NULL"),
        ),
        # A worker's sessions, every pass.
        Index(
            "ix_power_sessions_live_pbx",
            "pbx",
            postgresql_where=text("ended_at IS NULL"),
            sqlite_where=text("ended_at IS NULL"),
        ),
        Index("ix_power_sessions_campaign", "campaign_id", "requested_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # Kept when the campaign is deleted, as its calls are (they name the session).
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    pbx: Mapped[str] = mapped_column(String(100), default="default")
    # What is called for the session: the volunteer's desk, browser or own number.
    phone: Mapped[VolunteerPhone] = mapped_column(enum_column(VolunteerPhone, "volunteer_phone"))
    # The campaign's caller ID an own-number volunteer is called from.
    caller_id: Mapped[str | None] = mapped_column(String(40))
    state: Mapped[PowerSessionState] = mapped_column(
        enum_column(PowerSessionState, "power_session_state"),
        default=PowerSessionState.CONNECTING,
    )
    # When ``state`` began: how long a volunteer has waited, on the panel.
    state_since: Mapped[datetime] = mapped_column(default=utcnow)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The worker claimed the session and sent the Originate of the leg.
    leg_sent_at: Mapped[datetime | None] = mapped_column()
    leg_answered_at: Mapped[datetime | None] = mapped_column()
    leg_channel: Mapped[str | None] = mapped_column(String(200))
    paused_at: Mapped[datetime | None] = mapped_column()
    pause_reason: Mapped[str | None] = mapped_column(String(200))
    # No contact after the current one: the session ends once it is wrapped up.
    last_call: Mapped[bool] = mapped_column(Boolean, default=False)
    # The volunteer asked to leave: the worker hangs their leg up.
    leave_requested_at: Mapped[datetime | None] = mapped_column()
    # Why no contact is being dialed while waiting (none callable right now).
    waiting_note: Mapped[str | None] = mapped_column(String(300))
    # The same as codes, for each reader's language: "list:<empty reason>" or
    # "refusal:<RefusalCode>", and the time it names (None: none).
    waiting_reason: Mapped[str | None] = mapped_column(String(64))
    waiting_until: Mapped[datetime | None] = mapped_column()
    calls: Mapped[int] = mapped_column(Integer, default=0)
    # Time spent in ``waiting``, summed as the session leaves it.
    waited_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    ended_at: Mapped[datetime | None] = mapped_column()
    end_reason: Mapped[str | None] = mapped_column(String(200))

    volunteer: Mapped[User] = relationship(foreign_keys=[volunteer_id])
    campaign: Mapped[Campaign | None] = relationship()


class SupervisionRequest(Base):
    """An organizer's listen, whisper or barge on a live call, waiting for its
    PBX's worker (0015).

    A row for the same reasons as :class:`HangupRequest`: the web process that
    took the click need not be the worker's, and a restart must not forget it.
    The channel to spy on is not here: the worker takes it from what it tracks
    of the call, never from the request.
    """

    __tablename__ = "supervision_requests"
    __table_args__ = (
        Index(
            "ix_supervision_requests_waiting",
            "pbx",
            postgresql_where=text("handled_at IS NULL"),
            sqlite_where=text("handled_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64))
    pbx: Mapped[str] = mapped_column(String(100))
    # "listen", "whisper" or "barge" (dialer.domain.ports.SpyMode).
    mode: Mapped[str] = mapped_column(String(20))
    # Whose phone rings: the organizer's (None once their account is deleted).
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    handled_at: Mapped[datetime | None] = mapped_column()


class WorkerHeartbeat(Base):
    """A running worker says, every few seconds, that it serves its PBX.

    A row rather than a lock or MQTT presence: web processes on other hosts
    read it with no broker configured, a worker that hangs stops refreshing
    it (a lock would still be held), and it tells who (host, pid), since
    when, and whether the PBX answers.  ``seen_at`` is the database's clock,
    so the hosts' clocks need not agree.  A clean stop deletes the row.
    """

    __tablename__ = "worker_heartbeats"

    pbx: Mapped[str] = mapped_column(String(100), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column()
    seen_at: Mapped[datetime] = mapped_column()
    ami_connected: Mapped[bool] = mapped_column(Boolean)


class Disposition(Base):
    """What the volunteer recorded about a call (or a contact, for manual notes)."""

    __tablename__ = "dispositions"
    __table_args__ = (
        CheckConstraint(
            "support_score IS NULL OR (support_score >= 1 AND support_score <= 5)",
            name="support_score_range",
        ),
        # A contact's outcomes, latest last: the "last outcome" filter and column.
        Index("ix_dispositions_contact_latest", "contact_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Client-chosen key that makes a re-sent submission a no-op.
    submission_id: Mapped[str] = mapped_column(String(64), unique=True)
    call_attempt_id: Mapped[int | None] = mapped_column(
        ForeignKey("call_attempts.id", ondelete="SET NULL"), unique=True
    )
    # Indexed by ix_dispositions_contact_latest.
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    volunteer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    outcome: Mapped[DispositionOutcome] = mapped_column(
        enum_column(DispositionOutcome, "disposition_outcome")
    )
    consent: Mapped[bool | None] = mapped_column(Boolean)
    survey_answers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    comments: Mapped[str] = mapped_column(Text, default="")
    mobilized: Mapped[bool | None] = mapped_column(Boolean)
    support_score: Mapped[int | None] = mapped_column(Integer)
    callback_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FollowUpTask(Base):
    __tablename__ = "follow_up_tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    assignee_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    disposition_id: Mapped[int | None] = mapped_column(
        ForeignKey("dispositions.id", ondelete="SET NULL")
    )
    description: Mapped[str] = mapped_column(Text)
    due_on: Mapped[date | None] = mapped_column(Date)
    status: Mapped[TaskStatus] = mapped_column(
        enum_column(TaskStatus, "task_status"), default=TaskStatus.OPEN
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column()


class AuditEntry(Base):
    """Append-only: the migration installs triggers refusing UPDATE and DELETE."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # Who, when there is no user: "cli", "worker", "import".
    actor_label: Mapped[str] = mapped_column(String(100), default="")
    action: Mapped[str] = mapped_column(String(100))
    entity_type: Mapped[str] = mapped_column(String(50))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    changes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


# Tables of the web layer (migration 0002): sessions live in the database
# rather than in memory so several `dialer web` processes behind a load
# balancer share them, and a sign-out or an expiry takes effect everywhere.
class WebSession(Base):
    """One signed-in browser.  The cookie holds a random token; only its hash is stored."""

    __tablename__ = "web_sessions"

    # SHA-256 of the cookie's token, hex: a leaked table does not sign anyone in.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    # "Don't ask again this session" before dialing a number.
    confirm_before_dial: Mapped[bool] = mapped_column(Boolean, default=True)
    # The phone this session's calls ring (None: the user's usual phone).
    phone: Mapped[VolunteerPhone | None] = mapped_column(
        enum_column(VolunteerPhone, "volunteer_phone")
    )
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")


class LoginFailure(Base):
    """A failed sign-in, counted by the rate limit (per username and per address)."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100), index=True)
    ip: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # Set when the attempt came from a device known to this user (migration
    # 0004): such attempts count against that device only, not the account or address.
    device: Mapped[str | None] = mapped_column(String(64), index=True)


class KnownDevice(Base):
    """A browser this user has signed in from: a lockout does not shut it out.

    The browser keeps a random token in a long-lived cookie; the table keeps
    its SHA-256, once per user who signed in with it.
    """

    __tablename__ = "known_devices"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class ContactNote(Base):
    """A comment on a contact's record, typed during or after a call."""

    __tablename__ = "contact_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    call_id: Mapped[str | None] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ImportJob(Base):
    """A CSV import running in the background, and its report once it ends.

    A row rather than memory so that, behind a load balancer, any web process
    can show the progress of an import another process is running.  The
    process running it refreshes ``updated_at``; a running job that stops
    being refreshed was cut short (its process stopped).
    """

    __tablename__ = "import_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    file_name: Mapped[str] = mapped_column(String(200))
    # "running", "done", "failed" (the file as a whole was refused) or "interrupted".
    state: Mapped[str] = mapped_column(String(20), default="running")
    bytes_total: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0)
    rows_done: Mapped[int] = mapped_column(Integer, default=0)
    # The counts, ignored columns and the first rejected rows (see dialer.services.importer).
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()


class ImportJobRow(Base):
    """One line of a background import's full report (migration 0010).

    The job's ``report`` keeps the counts and the first few hundred lines for
    the page; these rows keep every one for the downloads: ``kind`` is
    "rejected" (data: the original cells and the reason), "change" (a
    field-level change or conflict on a contact) or "flagged" (a number the
    dialing policy refuses).
    """

    __tablename__ = "import_job_rows"
    __table_args__ = (Index("ix_import_job_rows_job_kind", "job_id", "kind", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("import_jobs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    line: Mapped[int] = mapped_column(Integer)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class Notification(Base):
    """An in-app notification for one user (migration 0009).

    It keeps its kind and what it points at, not a sentence: the text is
    built when shown, in the reader's language.  ``dedup_key`` is unique per
    user, so a repeated trigger adds nothing.  ``dispatched_at`` is set by
    the one process that claims it for MQTT and email.
    """

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("user_id", "dedup_key", name="uq_notifications_user_key"),
        # The bell's count on every page: only the unread rows are indexed.
        Index(
            "ix_notifications_unread",
            "user_id",
            postgresql_where=text("read_at IS NULL"),
            sqlite_where=text("read_at IS NULL"),
        ),
        Index(
            "ix_notifications_undispatched",
            "id",
            postgresql_where=text("dispatched_at IS NULL"),
            sqlite_where=text("dispatched_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[NotificationKind] = mapped_column(
        enum_column(NotificationKind, "notification_kind")
    )
    dedup_key: Mapped[str] = mapped_column(String(200))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    task_id: Mapped[int | None] = mapped_column(
        ForeignKey("follow_up_tasks.id", ondelete="CASCADE")
    )
    # Numbers the text needs (how many contacts were assigned), never names.
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    read_at: Mapped[datetime | None] = mapped_column()
    dispatched_at: Mapped[datetime | None] = mapped_column()


class NotificationPreference(Base):
    """A user's choice about notification emails; no row: emails on (when SMTP is set up)."""

    __tablename__ = "notification_preferences"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    email: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CampaignCounter(Base):
    """A campaign's running totals for its dashboard (migration 0012).

    One amount per (campaign, volunteer, name): the volunteer is 0 for what
    belongs to nobody (the list's counts, outcomes whose volunteer is gone).
    The database keeps them, in the transaction of the rows they count:
    dialer.store.counters says how, and which names there are.  No foreign
    keys: triggers write these rows while a campaign's delete cascades.
    """

    __tablename__ = "campaign_counters"

    campaign_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    volunteer_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    amount: Mapped[int] = mapped_column(BigInteger)


class CampaignCounterDelta(Base):
    """A change to a :class:`CampaignCounter` not folded into it yet (PostgreSQL; migration 0012).

    Appended, never updated, so that counting takes no row lock; folded into
    ``campaign_counters`` now and then (dialer.store.counters).
    """

    __tablename__ = "campaign_counter_deltas"
    __table_args__ = (Index("ix_campaign_counter_deltas_campaign", "campaign_id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    campaign_id: Mapped[int] = mapped_column(Integer)
    volunteer_id: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(BigInteger)
