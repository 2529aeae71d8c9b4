"""The data of a built digest: metrics, KPI sections and the finished digest.

These plain frozen dataclasses are what the section builder produces and what the
renderers, the file writer and the mailer consume; keeping them separate lets each of
those steps depend on the data alone rather than on one another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from salespulse.streams.report.catalogue import Catalogue
from salespulse.streams.report.formatting import COUNT, MONEY, format_change, format_money, format_value

CID_DOMAIN = "salespulse"


@dataclass(frozen=True)
class Metric:
    """One number of the digest, with its value for the previous period."""

    label: str
    value: float | Decimal | None
    previous: float | Decimal | None = None
    kind: str = COUNT
    #: True when up is good, False when down is good, None when neither (colour only).
    higher_is_better: bool | None = True
    #: False for numbers that have no history (latest prices, today's known customers).
    compare: bool = True
    #: The currency of a money metric, shown in its digits (rials as Toman where the
    #: catalogue says so); empty for a ratio of money such as CAC.
    currency: str = ""

    def text(self, cat: Catalogue) -> str:
        if self.kind == MONEY and self.currency:
            return format_money(self.value, self.currency, cat)
        return format_value(self.kind, None if self.value is None else float(self.value), cat)

    def change(self, cat: Catalogue) -> str:
        if not self.compare:
            return ""
        return format_change(self.kind, self.value, self.previous, cat, self.currency)

    def change_sentence(self, cat: Catalogue, window: str) -> str:
        """The change with its reference period, or "" for numbers without a comparison."""
        change = self.change(cat)
        if not change:
            return ""
        if self.previous is None:
            return cat.t("metric.no_previous", window=cat.window(window))
        return cat.t("metric.vs_previous", change=change, window=cat.window(window))

    @property
    def mood(self) -> str:
        """good, bad or neutral: how the change reads."""
        if not self.compare or self.value is None or self.previous is None:
            return "neutral"
        if self.value == self.previous or self.higher_is_better is None:
            return "neutral"
        return "good" if (self.value > self.previous) == self.higher_is_better else "bad"


@dataclass(frozen=True)
class Section:
    """One KPI: headline, details, an optional chart and an optional table."""

    number: int
    kpi: str
    title: str
    headline: Metric
    details: tuple[Metric, ...] = ()
    #: (Content-ID, alt text) of each chart, in display order.
    charts: tuple[tuple[str, str], ...] = ()
    table_head: tuple[str, ...] = ()
    table: tuple[tuple[str, ...], ...] = ()
    note: str = ""
    #: A short grey line under the headline in the summary grid, for numbers without a change.
    card_note: str = ""


@dataclass(frozen=True)
class Digest:
    """A built digest: the email HTML (``cid:`` images), the file HTML (``data:`` URIs),
    the plain text with the same numbers, and the PNG charts keyed by Content-ID."""

    subject: str
    html: str
    html_file: str
    text: str
    images: dict[str, bytes]
    window: str
    clock: int
    previous_clock: int
    sections: tuple[Section, ...]
    view: dict[str, Any] = field(repr=False)
    locale: str = "en"


def cid(name: str) -> str:
    return f"{name}@{CID_DOMAIN}"
