"""The digest's words, numbers and dates in one language, read from ``locales/<code>.toml``.

Everything a reader of the digest sees (headings, labels, notes, chart text, dates and
number formats) comes from one catalogue file per language, so a language is a file and
no code asks which language it is writing. A catalogue must have every key of the English
one: a file that lacks some is refused when loaded, naming them.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal

import jdatetime

LOCALES = Path(__file__).with_name("locales")
DEFAULT_LOCALE = "en"
_LATIN = "0123456789,.%"
Side = Literal["left", "right"]


class UnknownLocale(ValueError):
    """No catalogue file for the asked language, or one that lacks keys."""


def _gregorian(moment: datetime) -> tuple[int, int, int]:
    return moment.year, moment.month, moment.day


def _jalali(moment: datetime) -> tuple[int, int, int]:
    day = jdatetime.date.fromgregorian(date=moment.date())
    return day.year, day.month, day.day


#: Calendars by the name a catalogue gives: (year, month 1-12, day) of a UTC moment.
CALENDARS: dict[str, Callable[[datetime], tuple[int, int, int]]] = {
    "gregorian": _gregorian,
    "jalali": _jalali,
}


@dataclass(frozen=True)
class Catalogue:
    """One language's messages and formats."""

    code: str
    lang: str
    direction: str
    calendar: str
    html_font: str
    font_files: tuple[str, ...]
    months: tuple[str, ...]
    weekdays: tuple[str, ...]
    formats: Mapping[str, str]
    windows: Mapping[str, str]
    terms: Mapping[str, str]
    messages: Mapping[str, str]
    numerals: Mapping[int, str]
    #: Rial amounts are shown as Toman (``SALESPULSE_DISPLAY_UNIT``; Persian's default).
    toman: bool = False

    def t(self, key: str, **fields: Any) -> str:
        """The message ``key`` with its fields filled in."""
        return self.messages[key].format(**fields)

    def num(self, text: str) -> str:
        """A number formatted the Python way (``1,234.5``, ``12.3%``) in this language's digits."""
        return text.translate(self.numerals)

    def window(self, window: str) -> str:
        return self.windows[window]

    def term(self, value: str) -> str:
        """A word of a fixed vocabulary (a lead source, a channel); other labels stay as they came."""
        return self.terms.get(value, value)

    def _moment(self, epoch: int, template: str) -> str:
        moment = datetime.fromtimestamp(epoch, UTC)
        year, month, day = CALENDARS[self.calendar](moment)
        text = self.formats[template].format(
            weekday=self.weekdays[moment.weekday()],
            day=day,
            month=self.months[month - 1],
            year=year,
            hour=moment.hour,
            minute=moment.minute,
        )
        return self.num(text)

    def stamp(self, epoch: int) -> str:
        """Weekday, date and time of a clock, as the digest's headings show it."""
        return self._moment(epoch, "stamp")

    def subject_stamp(self, epoch: int) -> str:
        return self._moment(epoch, "subject_stamp")

    def date(self, epoch: int) -> str:
        """Day, month and year, in the catalogue's calendar."""
        return self._moment(epoch, "date")

    def day(self, epoch: int) -> str:
        """Day and month, for chart axes."""
        return self._moment(epoch, "day")

    @property
    def characters(self) -> str:
        """Every character the catalogue's words and numbers can show."""
        words = (*self.months, *self.weekdays, *self.formats.values(), *self.windows.values())
        return "".join((*words, *self.terms.values(), *self.messages.values(), *self.numerals.values()))

    @property
    def rtl(self) -> bool:
        return self.direction == "rtl"

    @property
    def start(self) -> Side:
        """The side text starts on: where titles and first columns align."""
        return "right" if self.rtl else "left"

    @property
    def end(self) -> Side:
        return "left" if self.rtl else "right"

    def padding(self, top: str, end: str, bottom: str, start: str) -> str:
        """A CSS padding given by reading direction, in CSS's top-right-bottom-left order."""
        right, left = (start, end) if self.rtl else (end, start)
        return f"{top} {right} {bottom} {left}"


def available() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in LOCALES.glob("*.toml")))


def _read(code: str) -> dict[str, Any]:
    path = LOCALES / f"{code}.toml"
    if not code.isalpha() or not path.is_file():
        raise UnknownLocale(f"no digest catalogue for locale {code!r} (available: {', '.join(available())})")
    with path.open("rb") as handle:
        return tomllib.load(handle)


@cache
def catalogue(code: str = DEFAULT_LOCALE) -> Catalogue:
    """The catalogue of a language, checked against the English one's keys."""
    doc, english = _read(code), _read(DEFAULT_LOCALE)
    missing = [
        f"{table}.{key}"
        for table in ("locale", "calendar", "windows", "messages")
        for key in english[table]
        if key not in doc.get(table, {})
    ]
    if missing:
        raise UnknownLocale(f"the {code!r} digest catalogue lacks {', '.join(missing)}")
    info, calendar = doc["locale"], doc["calendar"]
    if info["calendar"] not in CALENDARS:
        raise UnknownLocale(f"the {code!r} catalogue names an unknown calendar {info['calendar']!r}")
    latin = _LATIN
    local = info["digits"] + info["group"] + info["decimal"] + info["percent"]
    return Catalogue(
        code=code,
        lang=info["lang"],
        direction=info["direction"],
        calendar=info["calendar"],
        html_font=info["html_font"],
        font_files=tuple(info["font_files"]),
        months=tuple(calendar["months"]),
        weekdays=tuple(calendar["weekdays"]),
        formats={k: v for k, v in calendar.items() if isinstance(v, str)},
        windows=dict(doc["windows"]),
        terms=dict(doc.get("terms", {})),
        messages=dict(doc["messages"]),
        numerals={ord(a): b for a, b in zip(latin, local, strict=True) if a != b},
    )
