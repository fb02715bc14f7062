"""AMI users and what they may see and do, as manager.conf grants it: a
user's read permissions, narrowed by the event mask its client asks for at
login or with ``Events``, pick the event classes its session receives, and
its write permissions are checked against each action's authority in
:mod:`ami_bridge.simulator.actions`; :data:`LEAST_PRIVILEGE_READ` and
:data:`LEAST_PRIVILEGE_WRITE` are those of the least-privilege user that
``dialer check-pbx`` accepts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The permissions of the AMI user the recordings were made with, and of the
# least-privilege user in least_privilege_user_call_and_resync.ami.
FULL_READ = frozenset({"call", "system", "reporting", "agent", "dialplan", "originate"})
FULL_WRITE = frozenset({"call", "originate", "system", "reporting"})
LEAST_PRIVILEGE_READ = frozenset({"call", "reporting"})
LEAST_PRIVILEGE_WRITE = frozenset({"call", "originate", "reporting"})

EVENT_CLASSES = frozenset(
    {
        "system", "call", "log", "verbose", "command", "agent", "user", "config", "dtmf",
        "reporting", "cdr", "dialplan", "originate", "agi", "cc", "aoc", "test", "security",
        "message",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class AmiUser:
    """An entry of manager.conf: who may log in, read which events, do what."""

    username: str
    secret: str = field(repr=False)
    read: frozenset[str] = FULL_READ
    write: frozenset[str] = FULL_WRITE

    @classmethod
    def least_privilege(cls, username: str, secret: str) -> AmiUser:
        """``read = call,reporting``, ``write = call,originate,reporting``: no
        FullyBooted, no VarSet/Newexten, ``Command`` refused."""
        return cls(username, secret, LEAST_PRIVILEGE_READ, LEAST_PRIVILEGE_WRITE)


def parse_event_mask(text: str) -> frozenset[str]:
    """The event classes an event mask names: ``on``, ``off`` or a list."""
    lowered = text.strip().lower()
    if lowered in ("on", "yes", "true", "1"):
        return EVENT_CLASSES
    if lowered in ("off", "no", "false", "0", ""):
        return frozenset()
    return frozenset(part.strip() for part in lowered.split(",")) & EVENT_CLASSES
