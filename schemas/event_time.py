"""Event time: ``occurred_at`` to whole epoch seconds, checked as the contract checks it.

Every event carries its time as RFC 3339 text, and the hot path needs it as epoch seconds.
Almost every producer writes ``YYYY-MM-DDTHH:MM:SSZ``. That form is checked and converted
here character by character, with the start of each day cached: about a tenth of the cost
of the contract's regular expression followed by a parse. Any other form goes through the
expression and ``datetime``, so the result is the same either way.
"""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Final

from salespulse.schemas.validator import pattern_regex

#: The contract's pattern for ``occurred_at``. The fast decoder refuses to build if a schema
#: says anything else, because :func:`canonical_seconds` implements this very language.
PATTERN: Final = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:"
    r"([0-5][0-9]|60)(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
_REGEX: Final = pattern_regex(PATTERN)

#: Epoch seconds of ``YYYY-MM-DD`` day prefixes already proven valid; a backfill spans days.
_DAY_START: dict[str, int] = {}
_DAY_CACHE_SIZE = 1 << 12
_ZERO: Final = 48  # ord("0")


def _two_digits(value: str, at: int, high: int) -> int:
    """The number in ``value[at:at+2]`` if both are ASCII digits and it is at most ``high``, else -1."""
    tens = ord(value[at]) - _ZERO
    ones = ord(value[at + 1]) - _ZERO
    if tens < 0 or tens > 9 or ones < 0 or ones > 9:
        return -1
    n = tens * 10 + ones
    return n if n <= high else -1


def _day_start(day: str) -> int:
    """Epoch seconds of a ``YYYY-MM-DD`` text that is a real date, else -1 (a cache miss)."""
    century, year, month, mday = (_two_digits(day, at, 99) for at in (0, 2, 5, 8))
    if min(century, year, month, mday) < 0 or day[4] != "-" or day[7] != "-":
        return -1
    try:
        date = dt.date(century * 100 + year, month, mday)
    except ValueError:  # month 13, day 0, February 30, year 0
        return -1
    start = calendar.timegm(date.timetuple())
    if start < 0:  # before 1970: the general path, so that -1 can only mean "not cached"
        return -1
    if len(_DAY_START) >= _DAY_CACHE_SIZE:
        _DAY_START.clear()
    _DAY_START[day] = start
    return start


def canonical_seconds(value: str) -> int:
    """Epoch seconds of a valid ``YYYY-MM-DDTHH:MM:SSZ``, or -1 for any other text.

    Whatever this accepts, :data:`PATTERN` accepts too (tests hold it to that); -1 only
    means "not the common form", never "invalid".
    """
    if len(value) != 20 or value[10] != "T" or value[13] != ":" or value[16] != ":" or value[19] != "Z":
        return -1
    day = value[0:10]
    start = _DAY_START.get(day)
    if start is None:
        start = _day_start(day)
        if start < 0:
            return -1
    hh = _two_digits(value, 11, 23)
    mm = _two_digits(value, 14, 59)
    ss = _two_digits(value, 17, 59)
    if hh < 0 or mm < 0 or ss < 0:
        return -1
    return start + hh * 3600 + mm * 60 + ss


def parse_time(value: str) -> int:
    """RFC 3339 with a zone to whole epoch seconds; ``ValueError`` if it is not one."""
    seconds = canonical_seconds(value)
    if seconds >= 0:
        return seconds
    if value[10:11] not in ("T", "t"):  # fromisoformat would take a space, or a date alone
        raise ValueError(value)
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(value)
    return int(parsed.timestamp() // 1)


def valid_seconds(value: str) -> int:
    """Epoch seconds if ``value`` matches :data:`PATTERN` and is an instant since 1970, else -1."""
    seconds = canonical_seconds(value)
    if seconds >= 0:
        return seconds
    if _REGEX.search(value) is None:
        return -1
    try:
        seconds = parse_time(value)
    except ValueError:  # matches the pattern but is no instant, e.g. February 30 or second 60
        return -1
    return max(seconds, -1)


def format_time(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
