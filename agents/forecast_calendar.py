"""Fiscal calendars and their periods, for the forecast (``SALESPULSE_FISCAL_CALENDAR``).

Two calendars: ``gregorian`` with a fiscal year that starts in a given month (``gregorian``
starts in January, ``gregorian:4`` in April), and ``jalali``, the Iranian calendar whose
year starts on 1 Farvardin. Periods are written ``YYYY`` (a fiscal year), ``YYYY-Qn`` (a
fiscal quarter) and ``YYYY-MM`` (a month of the calendar). A Gregorian fiscal year is named
after the calendar year it starts in: with ``gregorian:4``, ``2026`` runs from April 2026 to
March 2027 and ``2026-Q4`` is January to March 2027; ``2027-01`` is January 2027 whatever the
fiscal year. A Jalali year is its own: ``1405-Q1`` is Farvardin to Khordad 1405.

Everything is in UTC days (``epoch seconds // 86400``); months are numbered ``year * 12 +
month - 1`` in the calendar's own years, so a period is a contiguous range of them. Jalali
dates come from jdatetime, which costs about 12 µs a conversion, so the month of a day is
remembered.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Final

import jdatetime

DAY: Final = 86400
#: ``date.toordinal()`` of 1970-01-01: epoch days are ordinals less this.
_EPOCH: Final = dt.date(1970, 1, 1).toordinal()
_PERIOD: Final = re.compile(r"([0-9]{4})(?:-Q([1-4])|-([0-9]{2}))?\Z")
_SETTING: Final = re.compile(r"(gregorian)(?::([0-9]{1,2}))?\Z|(jalali)\Z")
#: Days whose month is remembered, before the memory starts again.
_MONTHS_KEPT: Final = 1 << 14


def epoch_day(date: dt.date) -> int:
    return date.toordinal() - _EPOCH


def iso_day(day: int) -> str:
    """An epoch day as ``YYYY-MM-DD`` (Gregorian, UTC)."""
    return dt.date.fromordinal(day + _EPOCH).isoformat()


def parse_day(text: str) -> int:
    """A contract date (``YYYY-MM-DD``, already validated) as an epoch day."""
    return epoch_day(dt.date.fromisoformat(text))


@dataclass(frozen=True)
class Period:
    """A fiscal year, quarter or month: its name, its months and its days ``[start, end)``."""

    name: str
    kind: str  # "year", "quarter" or "month"
    first_month: int
    last_month: int
    start: int
    end: int

    @property
    def days(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class FiscalCalendar:
    """A calendar (``gregorian`` or ``jalali``) and the month its fiscal year starts in."""

    kind: str = "gregorian"
    start_month: int = 1
    _months: dict[int, int] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def parse(cls, setting: str) -> FiscalCalendar:
        """``gregorian``, ``gregorian:N`` (N = 1..12, the fiscal year's first month) or ``jalali``."""
        match = _SETTING.match(setting.strip().lower())
        if match is None:
            raise ValueError(
                f"SALESPULSE_FISCAL_CALENDAR={setting!r}: expected gregorian, gregorian:N (the month,"
                " 1-12, the fiscal year starts in) or jalali"
            )
        if match.group(3):
            return cls("jalali")
        start = int(match.group(2) or 1)
        if not 1 <= start <= 12:
            raise ValueError(f"SALESPULSE_FISCAL_CALENDAR={setting!r}: the start month must be 1 to 12")
        return cls("gregorian", start)

    @property
    def setting(self) -> str:
        """The canonical setting: what ``/forecast`` answers as its calendar."""
        if self.kind == "jalali" or self.start_month == 1:
            return self.kind
        return f"{self.kind}:{self.start_month}"

    # -- days and months ---------------------------------------------------------------
    def month_of(self, day: int) -> int:
        """The calendar month an epoch day falls in, as ``year * 12 + month - 1``."""
        month = self._months.get(day)
        if month is None:
            date = dt.date.fromordinal(day + _EPOCH)
            if self.kind == "jalali":
                jdate = jdatetime.date.fromgregorian(date=date)
                month = jdate.year * 12 + jdate.month - 1
            else:
                month = date.year * 12 + date.month - 1
            if len(self._months) >= _MONTHS_KEPT:
                self._months.clear()
            self._months[day] = month
        return month

    def month_start(self, month: int) -> int:
        """The first epoch day of a calendar month."""
        year, index = divmod(month, 12)
        if self.kind == "jalali":
            return epoch_day(jdatetime.date(year, index + 1, 1).togregorian())
        return epoch_day(dt.date(year, index + 1, 1))

    def fiscal_year(self, month: int) -> int:
        """The fiscal year a calendar month belongs to (named after the year it starts in)."""
        return (month - (self.start_month - 1)) // 12

    def year_months(self, year: int) -> tuple[int, int]:
        first = year * 12 + self.start_month - 1
        return first, first + 11

    # -- periods -----------------------------------------------------------------------
    def period(self, name: str) -> Period:
        """A period from its name; :class:`ValueError` says what a name must look like."""
        match = _PERIOD.match(name)
        if match is None:
            raise ValueError(f"period {name!r} is not YYYY, YYYY-Qn (n = 1-4) or YYYY-MM")
        year = int(match.group(1))
        quarter, month = match.group(2), match.group(3)
        if month is not None and not 1 <= int(month) <= 12:
            raise ValueError(f"period {name!r}: the month must be 01 to 12")
        if year < 1:
            raise ValueError(f"period {name!r}: there is no year 0")
        first, last = self.year_months(year)
        kind = "year"
        if quarter is not None:
            first, last, kind = first + 3 * (int(quarter) - 1), first + 3 * int(quarter) - 1, "quarter"
        elif month is not None:
            first = last = year * 12 + int(month) - 1
            kind = "month"
        try:
            start, end = self.month_start(first), self.month_start(last + 1)
        except (ValueError, OverflowError):
            raise ValueError(f"period {name!r} is outside the dates this calendar can name") from None
        return Period(name, kind, first, last, start, end)

    def period_of(self, day: int, kind: str) -> Period:
        """The fiscal year, quarter or month an epoch day falls in."""
        month = self.month_of(day)
        year = self.fiscal_year(month)
        if kind == "year":
            return self.period(f"{year:04d}")
        if kind == "quarter":
            return self.period(f"{year:04d}-Q{(month - self.year_months(year)[0]) // 3 + 1}")
        return self.period(f"{month // 12:04d}-{month % 12 + 1:02d}")

    def sub_periods(self, period: Period) -> list[Period]:
        """The quarters of a year, the months of a quarter; none for a month."""
        year = self.fiscal_year(period.first_month)
        if period.kind == "year":
            return [self.period(f"{year:04d}-Q{q}") for q in range(1, 5)]
        if period.kind == "quarter":
            return [
                self.period(f"{m // 12:04d}-{m % 12 + 1:02d}")
                for m in range(period.first_month, period.last_month + 1)
            ]
        return []

    def horizon(self, day: int) -> int:
        """The first day of the history kept at ``day``: the start of the previous fiscal year."""
        year = self.fiscal_year(self.month_of(day))
        return self.month_start(self.year_months(year - 1)[0])
