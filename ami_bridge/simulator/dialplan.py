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

from ami_bridge.asterisk_conf import pattern_matches

Trunk = Literal["carrier", "pjsip", "local"]
TRUNKS: tuple[Trunk, ...] = ("carrier", "pjsip", "local")

# What [dialer-outbound] of the shipped extensions.conf refuses among the
# numbers its _1NXXNXXXXXX pattern would dial: (pattern, reason given to
# dialer-refuse).  tests/integration/test_simulator.py keeps it equal to
# the file.
SHIPPED_REFUSALS: tuple[tuple[str, str], ...] = (
    ("_1900NXXXXXX", "premium-rate"),
    ("_1NXX976XXXX", "premium-rate"),
    ("_1NXX5551212", "directory-assistance"),
    *(
        (f"_1{area}NXXXXXX", "non-geographic")
        for area in ("700", "500", "533", "544", "566", "577", "588")
    ),
    *(
        (f"_1{area}NXXXXXX", "international-rate")
        for area in (
            "242", "246", "264", "268", "284", "345", "441", "473", "649", "658", "664",
            "721", "758", "767", "784", "809", "829", "849", "868", "869", "876",
        )
    ),
)  # fmt: skip


def shipped_refusal(number: str) -> str | None:
    """Why the shipped dialplan refuses ``number`` (E.164 digits), or None."""
    for pattern, reason in SHIPPED_REFUSALS:
        if pattern_matches(pattern, number):
            return reason
    return None


def format_seconds(value: float) -> str:
    """A duration as a dialplan argument: ``30``, not ``30.0``."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
