"""Faster phonenumbers lookups for the bulk import's worker processes, same answers.

Profiled on a 100,000-row voter file, the bulk import's workers spent two
thirds of their time in phonenumbers, most of it finding which region a +1
number belongs to: ``region_code_for_number`` tries the 25 NANP regions in
turn, and for each one matches the number against up to 11 patterns, one
Python call and one ``re`` cache look-up at a time; ``to_e164`` and the
dialing policy's check asked it four times per number (the row check now
asks once: :func:`dialer.domain.numbers.check_number`, then the policy's
``check_number``).  :func:`install` replaces four of the library's internal
helpers, in the process that calls it, with versions that give the same
answers faster:

- ``_region_code_for_number_from_list``: one regular expression per list
  of regions and number length, the regions' patterns as alternatives in
  the library's order (the first one matching wins, as in its loop), and
  the answer for the last number remembered (the same number is asked
  about several times in a row);
- ``_number_type_helper``: one regular expression per region and length,
  the number types as alternatives in the library's order;
- ``normalize_digits_only``: a regular expression for ASCII text, the
  library's own loop for anything else;
- ``_maybe_strip_extension``: the library searches every number for an
  extension with one long expression, trying it at each character; text of
  only ASCII digits, spaces and ``()+-./`` holds none (each of its forms
  needs a letter, ``#``, ``~``, ``,`` or ``;``) and is answered at once.

It also turns on the library's own cache of compiled patterns
(``phonenumbers.enable_pattern_cache``), which spares the ``re`` module's
cache look-up of the international and national prefixes' patterns that
each ``parse`` compiles.

Each combined expression is built from the library's own patterns, with
the same rules (a pattern applies only to the lengths it lists; an empty
pattern never matches), and any that does not compile falls back to the
library's function.  ``tests/unit/test_bulk_numbers.py`` compares the
answers of both on numbers of many regions and shapes.  Only the import's
worker processes call :func:`install`: the web and worker processes keep
the library as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import phonenumbers
import phonenumbers.phonenumberutil as util
import phonenumbers.re_util as re_util
from phonenumbers import PhoneNumberType
from phonenumbers.phonemetadata import PhoneMetadata

# The number types _number_type_helper tests, in its order, before fixed line and mobile.
_SPECIAL_TYPES = (
    ("premium_rate", PhoneNumberType.PREMIUM_RATE),
    ("toll_free", PhoneNumberType.TOLL_FREE),
    ("shared_cost", PhoneNumberType.SHARED_COST),
    ("voip", PhoneNumberType.VOIP),
    ("personal_number", PhoneNumberType.PERSONAL_NUMBER),
    ("pager", PhoneNumberType.PAGER),
    ("uan", PhoneNumberType.UAN),
    ("voicemail", PhoneNumberType.VOICEMAIL),
)
_FIXED_LINE = -1  # "fixed line, then ask about mobile" (see _fast_number_type)
_NON_DIGITS = re.compile(r"[^0-9]+")

# Text in which _EXTN_PATTERN can find no extension (see the module's docstring).
_NO_EXTENSION = re.compile(r"[0-9 ()+\-./]*")

_ORIGINALS: dict[str, Callable[..., Any]] = {
    "_region_code_for_number_from_list": util._region_code_for_number_from_list,
    "_number_type_helper": util._number_type_helper,
    "normalize_digits_only": util.normalize_digits_only,
    "_maybe_strip_extension": util._maybe_strip_extension,
}
# The library's pattern cache as it was before install() (None: off).
_patterns_before: dict[str, re.Pattern[str]] | None = None


def _pattern(desc: Any, length: int) -> str | None:
    """The desc's pattern if it may match a number of ``length`` digits, as
    _is_number_matching_desc and _match_national_number decide."""
    if desc is None:
        return None
    if len(desc.possible_length) > 0 and length not in desc.possible_length:
        return None
    pattern = desc.national_number_pattern
    if pattern is None or len(pattern) == 0:
        return None
    return str(pattern)


def _type_alternatives(metadata: Any, length: int) -> tuple[str, list[tuple[int, str]]] | None:
    """The general pattern and the (type, pattern) alternatives of ``metadata``
    for numbers of ``length`` digits, in _number_type_helper's order; None
    when no number of that length can be valid there."""
    general = _pattern(metadata.general_desc, length)
    if general is None:
        return None
    alternatives = [
        (int(kind), pattern)
        for name, kind in _SPECIAL_TYPES
        if (pattern := _pattern(getattr(metadata, name), length)) is not None
    ]
    fixed = _pattern(metadata.fixed_line, length)
    if fixed is not None:
        alternatives.append((_FIXED_LINE, fixed))
    # The library asks about mobile only when its pattern differs from fixed line's.
    if not metadata.same_mobile_and_fixed_line_pattern:
        mobile = _pattern(metadata.mobile, length)
        if mobile is not None:
            alternatives.append((int(PhoneNumberType.MOBILE), mobile))
    return (general, alternatives) if alternatives else None


def _valid_body(general: str, alternatives: Sequence[tuple[int, str]]) -> str:
    # The lookahead is the general pattern matching the whole number; then any type.
    return rf"(?=(?:{general})\Z)(?:" + "|".join(f"(?:{p})" for _k, p in alternatives) + ")"


@dataclass(frozen=True, slots=True)
class _TypeMatcher:
    metadata: Any  # held so that its id, the cache's key, is never reused
    regex: re.Pattern[str] | None  # None: no number of this length is valid here
    kinds: tuple[int, ...]


_type_matchers: dict[tuple[int, int], _TypeMatcher | None] = {}


def _type_matcher(metadata: Any, length: int) -> _TypeMatcher | None:
    """None when the combined expression cannot be built: use the library's function."""
    key = (id(metadata), length)
    if key in _type_matchers:
        matcher = _type_matchers[key]
        if matcher is None or matcher.metadata is metadata:
            return matcher
    found = _type_alternatives(metadata, length)
    if found is None:
        matcher = _TypeMatcher(metadata, None, ())
    else:
        general, alternatives = found
        body = "|".join(f"(?P<t{i}>(?:{p}))" for i, (_k, p) in enumerate(alternatives))
        try:
            regex = re.compile(rf"(?=(?:{general})\Z)(?:{body})")
        except re.error:
            matcher = None
        else:
            matcher = _TypeMatcher(metadata, regex, tuple(kind for kind, _p in alternatives))
    _type_matchers[key] = matcher
    return matcher


def _fast_number_type(national_number: str, metadata: Any) -> int:
    matcher = _type_matcher(metadata, len(national_number))
    if matcher is None:
        return int(_ORIGINALS["_number_type_helper"](national_number, metadata))
    if matcher.regex is None:
        return int(PhoneNumberType.UNKNOWN)
    match = matcher.regex.fullmatch(national_number)
    if match is None:
        return int(PhoneNumberType.UNKNOWN)
    group = match.lastgroup
    if group is None or not group.startswith("t"):
        return int(_ORIGINALS["_number_type_helper"](national_number, metadata))
    kind = matcher.kinds[int(group[1:])]
    if kind != _FIXED_LINE:
        return kind
    if metadata.same_mobile_and_fixed_line_pattern or util._is_number_matching_desc(
        national_number, metadata.mobile
    ):
        return int(PhoneNumberType.FIXED_LINE_OR_MOBILE)
    return int(PhoneNumberType.FIXED_LINE)


@dataclass(frozen=True, slots=True)
class _RegionMatcher:
    regions: Any  # the library's list, held: its id is the cache's key
    regex: re.Pattern[str] | None
    names: tuple[str, ...]


_region_matchers: dict[tuple[int, int], _RegionMatcher | None] = {}
# The last number asked about and its answer: (regions, national number, region).
_last_region: tuple[Any, str, str | None] | None = None


def _region_matcher(regions: Any, length: int) -> _RegionMatcher | None:
    key = (id(regions), length)
    if key in _region_matchers:
        matcher = _region_matchers[key]
        if matcher is None or matcher.regions is regions:
            return matcher
    parts: list[str] = []
    names: list[str] = []
    for region_code in regions:
        metadata = PhoneMetadata.metadata_for_region(region_code.upper(), None)
        if metadata is None:
            continue
        if metadata.leading_digits is not None:
            # The library's re.match: the leading digits, then anything.
            body = rf"(?:{metadata.leading_digits})[\s\S]*"
        else:
            found = _type_alternatives(metadata, length)
            if found is None:
                continue  # never valid at this length: the library moves on too
            body = _valid_body(*found)
        parts.append(f"(?P<r{len(names)}>{body})")
        names.append(region_code)
    try:
        regex = re.compile("|".join(parts)) if parts else None
    except re.error:
        _region_matchers[key] = None
        return None
    matcher = _RegionMatcher(regions, regex, tuple(names))
    _region_matchers[key] = matcher
    return matcher


def _fast_region_code(numobj: Any, regions: Any) -> str | None:
    global _last_region
    national_number = util.national_significant_number(numobj)
    last = _last_region
    if last is not None and last[0] is regions and last[1] == national_number:
        return last[2]
    matcher = _region_matcher(regions, len(national_number))
    if matcher is None:
        found: str | None = _ORIGINALS["_region_code_for_number_from_list"](numobj, regions)
    elif matcher.regex is None:
        found = None
    else:
        match = matcher.regex.fullmatch(national_number)
        group = None if match is None else match.lastgroup
        if match is None:
            found = None
        elif group is None or not group.startswith("r"):
            found = _ORIGINALS["_region_code_for_number_from_list"](numobj, regions)
        else:
            found = matcher.names[int(group[1:])]
    _last_region = (regions, national_number, found)
    return found


def _fast_normalize_digits_only(number: Any, keep_non_digits: bool = False) -> str:
    text = str(number)
    if text.isascii():
        # For ASCII, unicodedata.digit knows only 0-9.
        return text if keep_non_digits else _NON_DIGITS.sub("", text)
    return str(_ORIGINALS["normalize_digits_only"](text, keep_non_digits))


def _fast_strip_extension(number: str) -> tuple[str, str]:
    if _NO_EXTENSION.fullmatch(number):
        return "", number
    extension, rest = _ORIGINALS["_maybe_strip_extension"](number)
    return str(extension), str(rest)


_FAST: dict[str, Callable[..., Any]] = {
    "_region_code_for_number_from_list": _fast_region_code,
    "_number_type_helper": _fast_number_type,
    "normalize_digits_only": _fast_normalize_digits_only,
    "_maybe_strip_extension": _fast_strip_extension,
}


def install() -> None:
    """Use the faster helpers in this process (the bulk import's workers)."""
    global _patterns_before
    if util._maybe_strip_extension is not _fast_strip_extension:
        _patterns_before = re_util._COMPILED_PATTERNS  # type: ignore[attr-defined]
    for name, function in _FAST.items():
        setattr(util, name, function)
    phonenumbers.enable_pattern_cache()


def uninstall() -> None:
    """Put the library's own helpers back."""
    global _last_region
    for name, function in _ORIGINALS.items():
        setattr(util, name, function)
    _last_region = None
    re_util._COMPILED_PATTERNS = _patterns_before  # type: ignore[attr-defined]


@contextmanager
def installed() -> Iterator[None]:
    install()
    try:
        yield
    finally:
        uninstall()
