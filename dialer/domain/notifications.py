"""What a notification is about: its kinds, and the key that makes it once only.

A notification stores its kind and the ids it points at, never a rendered
sentence: the text is built when shown (or mailed), in the reader's
language, from what the reader may see then.
"""

from __future__ import annotations

from enum import StrEnum


class NotificationKind(StrEnum):
    # A calling action (campaign) of the volunteer's team became active.
    NEW_CAMPAIGN = "new_campaign"
    # Contacts of a campaign were assigned to the volunteer (one per batch).
    ASSIGNMENT = "assignment"
    # A follow-up task was handed to the user.
    TASK = "task"
    # A call-back the volunteer owns came due.
    CALLBACK_DUE = "callback_due"


def dedup_key(kind: NotificationKind, *parts: object) -> str:
    """The key unique per user: a repeated trigger (a retry, two web processes
    scanning the same call-backs) finds it taken and adds nothing."""
    return ":".join([kind.value, *(str(part) for part in parts)])[:200]
