"""The dialplans and trunks the simulator imitates, as data: :data:`TRUNKS`
names the ways a contact can be dialed (the shipped ``carrier`` dialplan,
or the lab one over a SIP trunk or through a ``Local`` channel), and
:data:`SHIPPED_REFUSALS` what the shipped
``asterisk-config/extensions.conf`` refuses to dial, matched with the
dialplan's own pattern rules from :mod:`ami_bridge.asterisk_conf`.  The
steps a call plays through these dialplans are in
:mod:`ami_bridge.simulator.calls`.
"""

from __future__ import annotations

from typing import Literal

from ami_bridge.asterisk_conf import pattern_matches, sort_extensions
from ami_bridge.outbound_rules import DIALED, outbound_patterns

Trunk = Literal["carrier", "pjsip", "local"]
TRUNKS: tuple[Trunk, ...] = ("carrier", "pjsip", "local")


def _shipped_refusals() -> tuple[tuple[str, str], ...]:
    reasons = {
        found.pattern: found.reason
        for found in outbound_patterns()
        if found.reason != DIALED and found.pattern.startswith("_1")
    }
    return tuple((pattern, reasons[pattern]) for pattern in sort_extensions(list(reasons)))


# What [dialer-outbound] of the shipped extensions.conf refuses among the
# numbers its _1NXXNXXXXXX pattern would dial: (pattern, reason given to
# dialer-refuse), generated from the same rules as the file and in the order
# Asterisk tries them.  tests/integration/test_simulator.py keeps it equal to
# the file.
SHIPPED_REFUSALS: tuple[tuple[str, str], ...] = _shipped_refusals()


def shipped_refusal(number: str) -> str | None:
    """Why the shipped dialplan refuses ``number`` (E.164 digits), or None."""
    for pattern, reason in SHIPPED_REFUSALS:
        if pattern_matches(pattern, number):
            return reason
    return None


def format_seconds(value: float) -> str:
    """A duration as a dialplan argument: ``30``, not ``30.0``."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
