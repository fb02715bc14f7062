"""The dialer's policy and the PBX's dialplan refuse the same +1 numbers.

Both come from dialer/domain/dial_rules.py: the policy applies the rules,
and the [dialer-outbound] patterns of asterisk-config/extensions.conf are
generated from them.  These tests run the shipped dialplan the way
Asterisk does (the most specific matching pattern wins) over every NANP
area code and exchange, and compare its verdict with the rules' and the
policy's.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import phonenumbers
import pytest

from ami_bridge.asterisk_conf import (
    Context,
    ContextMatcher,
    find_extension,
    load_config,
    parse_config,
    parse_dialplan,
    split_args,
)
from ami_bridge.outbound_rules import (
    DIALED,
    main,
    outbound_patterns,
    render_outbound_block,
    replace_outbound_block,
)
from dialer.domain.compliance import DialingPolicy, RefusalCode
from dialer.domain.dial_rules import (
    DOMESTIC_NANP_REGIONS,
    INTERNATIONAL_RATE_AREA_CODES,
    NanpReason,
    nanp_refusals,
)

# One xdist worker for the whole module: the sweep over every +1 number
# (seconds of CPU) is a module fixture, which split tests would run twice.
pytestmark = pytest.mark.xdist_group("dial_rules_sweep")

EXTENSIONS_CONF = Path(__file__).resolve().parents[2] / "asterisk-config" / "extensions.conf"
OUTBOUND = "dialer-outbound"
# An ordinary line number, and the one directory assistance answers on.
LINES = ("0184", "1212")
NOT_NANP = "not-allowed"


def _verdicts(context: Context) -> dict[str, str]:
    """Extension -> what its first priority does: DIALED or the refusal reason."""
    verdicts = {}
    for extension, steps in context.extensions().items():
        target, _exten, priority = split_args(steps[0].data)
        if target == "dialer-place-call":
            verdicts[extension] = DIALED
        else:
            assert target == "dialer-refuse", f"{extension}: {steps[0].data}"
            verdicts[extension] = split_args(priority.partition("(")[2].rstrip(")"))[0]
    return verdicts


class Dialplan:
    """[dialer-outbound] of an extensions.conf, run over numbers as Asterisk would."""

    def __init__(self, context: Context) -> None:
        self.match = ContextMatcher(context.extensions())
        self.verdicts = _verdicts(context)

    def verdict(self, digits: str) -> str:
        extension = self.match(digits)
        assert extension is not None, f"{digits} matches nothing"
        return self.verdicts[extension]


@pytest.fixture(scope="module")
def shipped() -> Dialplan:
    return Dialplan(parse_dialplan(load_config(EXTENSIONS_CONF))[OUTBOUND])


@dataclass
class Sweep:
    """One pass of a dialplan over every +1 number (see _every_plus_one_number)."""

    seen: Counter[str] = field(default_factory=Counter)
    disagreements: list[tuple[str, str, set[str]]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # NANP-shaped numbers it refuses


def _sweep(
    dialplan: Dialplan, allowed_regions: Collection[str], lines: tuple[str, ...] = LINES
) -> Sweep:
    sweep = Sweep()
    for digits in _every_plus_one_number(lines):
        asterisk = dialplan.verdict(digits)
        sweep.seen[asterisk] += 1
        rules = _rules_verdicts(digits, allowed_regions)
        if asterisk not in rules:
            sweep.disagreements.append((digits, asterisk, rules))
        if asterisk != DIALED and rules != {NOT_NANP}:
            sweep.refused.append(digits)
    return sweep


@pytest.fixture(scope="module")
def shipped_sweep(shipped: Dialplan) -> Sweep:
    """The shipped dialplan over every +1 number, once for the tests that need it."""
    return _sweep(shipped, ())


def _generated(allowed_regions: Collection[str]) -> Dialplan:
    text = f"[{OUTBOUND}]\n{render_outbound_block(allowed_regions)}"
    return Dialplan(parse_dialplan(parse_config(text))[OUTBOUND])


def _rules_verdicts(digits: str, allowed_regions: Collection[str] = ()) -> set[str]:
    """What the rules say: {DIALED}, or every reason that refuses ``digits``."""
    if len(digits) != 11 or digits[0] != "1" or digits[1] in "01" or digits[4] in "01":
        return {NOT_NANP}
    reasons = {rule.reason.value for rule in nanp_refusals(digits, allowed_regions)}
    return reasons or {DIALED}


def _every_plus_one_number(lines: tuple[str, ...] = LINES) -> Iterator[str]:
    """Every NANP area code and exchange with each of ``lines``; the shapes
    that are not NANP (an area code or exchange starting with 0 or 1) once."""
    for area_code in range(1000):
        for exchange in range(1000):
            nanp = area_code >= 200 and exchange >= 200
            for line in lines if nanp else lines[:1]:
                yield f"1{area_code:03d}{exchange:03d}{line}"


def test_the_shipped_dialplan_is_the_generated_one() -> None:
    text = EXTENSIONS_CONF.read_text(encoding="utf-8")
    assert replace_outbound_block(text, render_outbound_block()) == text, (
        "run: python -m ami_bridge.outbound_rules asterisk-config/extensions.conf"
    )
    assert main([str(EXTENSIONS_CONF), "--check"]) == 0


def test_regenerating_rewrites_only_the_block(tmp_path: Path) -> None:
    copy = tmp_path / "extensions.conf"
    original = EXTENSIONS_CONF.read_text(encoding="utf-8")
    copy.write_text(original.replace("_1NXX976XXXX", "_1NXX977XXXX"), encoding="utf-8")
    assert main([str(copy), "--check"]) == 1
    assert main([str(copy)]) == 0
    assert copy.read_text(encoding="utf-8") == original
    assert main([str(copy), "--allow", "do"]) == 0
    rewritten = copy.read_text(encoding="utf-8")
    assert "_1809NXXXXXX" not in rewritten
    assert rewritten.replace(render_outbound_block({"DO"}), "") == original.replace(
        render_outbound_block(), ""
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("allowed_regions", "lines"), [((), LINES), (("DO", "JM"), LINES[:1])], ids=["shipped", "DO,JM"]
)
def test_asterisk_and_the_rules_agree_on_every_plus_one_number(
    shipped_sweep: Sweep, allowed_regions: tuple[str, ...], lines: tuple[str, ...]
) -> None:
    """Exhaustive: 800 area codes x 800 exchanges x (an ordinary line, 1212),
    and the non-NANP shapes around them.

    Asterisk picks the most specific pattern, the rules refuse when any rule
    matches: a refusal pattern less specific than the allowed one (say an
    allowed _1787NXXXXXX against _1NXX976XXXX) would let 787-976-XXXX
    through, and this would catch it.  Where several rules refuse a number
    (500-976-XXXX), Asterisk may log either reason.
    """
    started = time.monotonic()
    if allowed_regions:
        sweep = _sweep(_generated(allowed_regions), allowed_regions, lines)
    else:
        sweep = shipped_sweep
    assert sweep.disagreements == []
    assert sum(sweep.seen.values()) == 1_000_000 + 640_000 * (len(lines) - 1)
    assert {DIALED, NOT_NANP} | {reason.value for reason in NanpReason} >= set(sweep.seen)
    assert time.monotonic() - started < 60


def test_the_shipped_dialplan_text_gives_the_same_answers_as_find_extension(
    shipped: Dialplan,
) -> None:
    """The fast matcher is Asterisk's order: checked against the step-by-step one."""
    contexts = parse_dialplan(load_config(EXTENSIONS_CONF))
    for digits in (
        "15145550184",
        "19005551212",
        "15009765555",
        "17879765555",
        "19115550123",
        "15255550123",
        "18095551212",
        "11235550123",
        "33142685300",
        "911",
    ):
        found = find_extension(contexts, OUTBOUND, digits)
        assert found is not None
        assert shipped.match(digits) == found[1], digits


@pytest.mark.slow
def test_the_policy_refuses_every_number_the_dialplan_refuses(shipped_sweep: Sweep) -> None:
    """Exhaustive over NANP area codes x exchanges x lines, for the policy `CA,US`.

    Nothing the dialer lets through reaches AMI only to be hung up on once
    the volunteer has answered (+1 500, +1 533, NXX-976 and 555-1212 did).
    """
    policy = DialingPolicy.parse(["CA", "US"], ["+1900", "+1976"])
    for digits in shipped_sweep.refused:
        refusal = policy.check(f"+{digits}")
        assert refusal is not None, f"+{digits} passes the dialer, the dialplan refuses it"
        assert refusal.code in (RefusalCode.NUMBER_NOT_ALLOWED, RefusalCode.INVALID_NUMBER)
    assert len(shipped_sweep.refused) > 60_000


def test_where_the_policy_is_stricter_than_the_dialplan_it_says_why(shipped: Dialplan) -> None:
    """Every area code, 40 exchanges each: the numbers the dialplan dials and
    `CA,US` refuses cannot exist (an unassigned area code, of which the
    dialplan has no list) or are in a US territory, which the dialplan dials
    as a domestic call and `CA,US` does not name."""
    policy = DialingPolicy.parse(["CA", "US"], ["+1900", "+1976"])
    stricter: Counter[str] = Counter()
    for area_code in range(200, 1000):
        for exchange in range(200, 1000, 20):
            number = f"+1{area_code}{exchange}0184"
            refusal = policy.check(number)
            if refusal is None or shipped.verdict(number[1:]) != DIALED:
                continue
            if refusal.code is RefusalCode.INVALID_NUMBER:
                stricter["invalid"] += 1
                continue
            region = phonenumbers.region_code_for_number(phonenumbers.parse(number))
            assert region in DOMESTIC_NANP_REGIONS - {"CA", "US"}, (number, refusal)
            stricter[region] += 1
    assert stricter["invalid"] and stricter["PR"]


@pytest.mark.parametrize(
    ("number", "allowed"),
    [
        ("+15145550184", True),
        ("+12125550123", True),
        ("+12129765555", False),  # premium rate: a 976 exchange
        ("+15149761234", False),
        ("+12125551212", False),  # directory assistance, billed per call
        ("+15145551212", False),
        ("+15005550123", False),  # non-geographic
        ("+15335550123", False),
        ("+15215550123", False),
        ("+18095550123", False),  # the Dominican Republic: international rates
    ],
)
def test_the_policy_refuses_what_the_issue_found(number: str, allowed: bool) -> None:
    policy = DialingPolicy.parse(["CA", "US"], ["+1900", "+1976"])
    refusal = policy.check(number)
    assert (refusal is None) == allowed, refusal
    if refusal is not None:
        assert refusal.code is RefusalCode.NUMBER_NOT_ALLOWED


def test_allowing_a_nanp_country_lifts_its_international_rate_rule_only() -> None:
    policy = DialingPolicy.parse(["CA", "DO"], [])
    assert policy.check("+18092345678") is None
    refusal = policy.check("+18099765555")
    assert refusal is not None and "premium-rate" in refusal.message
    assert DialingPolicy.parse(["+1"], []).check("+18762345678") is None
    assert DialingPolicy.parse(["CA"], []).check("+18762345678") is not None


def test_the_international_rate_table_covers_every_nanp_country() -> None:
    """Every +1 area code libphonenumber gives a country other than the US,
    Canada and the US territories is refused as international-rate."""
    table = {
        area_code: region
        for region, (_name, area_codes) in INTERNATIONAL_RATE_AREA_CODES.items()
        for area_code in area_codes
    }
    assert set(INTERNATIONAL_RATE_AREA_CODES) | DOMESTIC_NANP_REGIONS == set(
        phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1]
    )
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1]:
        example = phonenumbers.example_number(region)
        assert example is not None
        area_code = phonenumbers.national_significant_number(example)[:3]
        if region in DOMESTIC_NANP_REGIONS:
            assert area_code not in table, region
        else:
            assert table.get(area_code) == region, region
    patterns = {pattern.pattern for pattern in outbound_patterns()}
    assert {f"_1{area_code}NXXXXXX" for area_code in table} <= patterns


def test_the_comparison_catches_a_refusal_asterisk_would_not_pick() -> None:
    """Asterisk's most-specific-first order can hide a refusal: an allowed
    _1787NXXXXXX beats _1NXX976XXXX for 787-976-XXXX.  The rules refuse it,
    so the exhaustive comparison above would report it."""
    text = (
        f"[{OUTBOUND}]\n"
        "exten => _1787NXXXXXX,1,Gosub(dialer-place-call,s,1(${EXTEN}))\n"
        "exten => _1NXX976XXXX,1,Gosub(dialer-refuse,s,1(premium-rate,${EXTEN}))\n"
    )
    planted = Dialplan(parse_dialplan(parse_config(text))[OUTBOUND])
    assert planted.verdict("17879765555") == DIALED
    assert planted.verdict("15149765555") == "premium-rate"
    assert DIALED not in _rules_verdicts("17879765555")
