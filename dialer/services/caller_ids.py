"""Caller IDs: which numbers a call may present to the contact.

A campaign lists its own; the default (DIALER_DEFAULT_CALLER_ID) serves the
others.  Only numbers the shipped dialplan accepts are offered, so a click
is refused up front rather than after the volunteer answered.
"""

from __future__ import annotations

import logging
import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dialer.domain.vocabulary import CampaignStatus
from dialer.services.access import scope_of
from dialer.store.models import Campaign, User

log = logging.getLogger(__name__)

_CALLER_ID = re.compile(r"\+?[0-9]{8,15}")
_SEPARATORS = re.compile(r"[ .()-]")


def usable_caller_id(number: str) -> bool:
    """Whether the PBX will present ``number`` to the contact: 8 to 15 digits (E.164).

    [dialer-place-call] in asterisk-config/extensions.conf keeps only the
    digits and hangs up on anything shorter or longer, but only once the
    volunteer has answered; checking here refuses the click instead.  Only
    digits, an optional leading + and the usual separators are accepted:
    the dialplan's digit filter would turn ``+15145550100;ext=9`` or ``x12``
    into another number (the extension glued on), and letters into nothing.
    """
    return _CALLER_ID.fullmatch(_SEPARATORS.sub("", number)) is not None


def campaign_caller_ids(campaign: Campaign, default_caller_id: str) -> list[str]:
    """The caller IDs a campaign's calls may present: its own list, else the default.

    Empty when every call of the campaign would be refused for want of one.
    """
    numbers = list(campaign.allowed_caller_ids) or (
        [default_caller_id] if default_caller_id else []
    )
    return [number for number in numbers if usable_caller_id(number)]


class CallerIds:
    def __init__(self, default_caller_id: str) -> None:
        if default_caller_id and not usable_caller_id(default_caller_id):
            # The PBX would hang up every call presenting it; as unset, clicks
            # that have nothing better are refused up front (no_caller_id).
            log.warning(
                "the default caller ID %r (DIALER_DEFAULT_CALLER_ID) is not a phone number "
                "of 8 to 15 digits (no extension, no letters); ignored",
                default_caller_id,
            )
            default_caller_id = ""
        self.default = default_caller_id

    async def allowed(
        self, session: AsyncSession, user: User, campaign: Campaign | None
    ) -> list[str]:
        """The caller IDs ``user`` may call from; empty when a call would be refused."""
        if campaign is not None:
            return campaign_caller_ids(campaign, self.default)
        # Outside a campaign: the default plus those of the user's active campaigns.
        choices = [self.default] if self.default else []
        scope = await scope_of(session, user)
        statement = select(Campaign.allowed_caller_ids).where(
            Campaign.status == CampaignStatus.ACTIVE, scope.campaign_filter()
        )
        for caller_ids in await session.scalars(statement):
            choices.extend(
                number
                for number in caller_ids
                if number not in choices and usable_caller_id(number)
            )
        return choices
