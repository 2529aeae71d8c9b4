"""Money: exact amounts in each currency's minor unit, and their value in the reporting currency.

Amounts arrive as JSON numbers, decoded as decimals (never floats), and are kept as Python
integers counting the currency's minor unit (CLDR's digits: 2 for USD, 0 for IRR and JPY, 3
for KWD), so sums are exact in any order and never overflow. ``IRT`` (Toman), ``IRHR`` and
``IRHT`` are stored as rials with the exact factors 10, 1,000 and 10,000. Prices are only
ever compared as ratios, never summed, so they keep a finer unit: millionths of the
currency's major unit. A value finer than its unit is rounded half to even, and counted.

Windows keep their sums per currency; the reporting currency is applied when they are read,
by each bucket's UTC day, with the newest rate on or before that day (:meth:`Rates.to_reporting`,
the one function every amount goes through), so a new rates file changes no state. A
currency with no rate for a day has no value in the reporting currency: never 1.0.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from decimal import (
    MAX_EMAX,
    MAX_PREC,
    MIN_EMIN,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)
from typing import Any, Final

#: Decimal arithmetic that never rounds: sums and products of exact amounts stay exact.
EXACT: Final = Context(
    prec=MAX_PREC,
    Emax=MAX_EMAX,
    Emin=MIN_EMIN,
    rounding=ROUND_HALF_EVEN,
    traps=[InvalidOperation, DivisionByZero, Overflow],
)

#: CLDR's minor-unit digits (``currencyData/fractions``) where they are not the default 2, as
#: babel's ``get_currency_precision`` has them; tests/test_money.py compares every code babel
#: knows. A table, not babel itself: babel's data costs a worker about 6.5 MB.
DIGITS: Final[dict[str, int]] = {
    "ADP": 0, "AFN": 0, "ALL": 0, "BHD": 3, "BIF": 0, "BYR": 0, "CLF": 4, "CLP": 0, "COP": 0,
    "DJF": 0, "ESP": 0, "GNF": 0, "HUF": 0, "IDR": 0, "IQD": 0, "IRR": 0, "ISK": 0, "ITL": 0,
    "JOD": 3, "JPY": 0, "KMF": 0, "KPW": 0, "KRW": 0, "KWD": 3, "LAK": 0, "LBP": 0, "LUF": 0,
    "LYD": 3, "MGA": 0, "MGF": 0, "MMK": 0, "MRO": 0, "OMR": 3, "PYG": 0, "RWF": 0, "SLL": 0,
    "SOS": 0, "STD": 0, "SYP": 0, "TMM": 0, "TND": 3, "TRL": 0, "UGX": 0, "UYI": 0, "UYW": 4,
    "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0, "YER": 0, "ZMK": 0, "ZWD": 0,
}  # fmt: skip
DEFAULT_DIGITS: Final = 2

#: Codes that are not ISO 4217 but name a multiple of one (WooCommerce and Iranian payment
#: plugins): stored as that currency, times the exact factor.
ALIASES: Final[dict[str, tuple[str, int]]] = {
    "IRT": ("IRR", 10),  # Toman
    "IRHR": ("IRR", 1_000),  # a thousand rials
    "IRHT": ("IRR", 10_000),  # ten thousand rials
}

#: Prices are kept in millionths of the currency's major unit, whatever the currency.
PRICE_DIGITS: Final = 6

#: Seconds in a UTC day: rates are dated by day, and an hour bucket converts by its day.
DAY: Final = 86400

#: Event types whose amount converts at the rate of its own UTC day (a won deal, a spend);
#: every other amount (an open opportunity, a price, a quota) at the newest rate.
DATED: Final = frozenset({"deal.won", "marketing.spend"})
#: A UTC day after every rate's: the day at which :meth:`Rates.rate` gives the newest rate.
NEWEST: Final = 1 << 40

#: The event fields that hold money (the currency is the ``currency`` field next to them).
AMOUNT: Final = "amount"
PRICE: Final = "price"


def digits(currency: str) -> int:
    """The currency's minor-unit digits (CLDR)."""
    return DIGITS.get(currency, DEFAULT_DIGITS)


def stored(currency: str) -> str:
    """The currency an amount in ``currency`` is kept in (``IRT`` is kept as ``IRR``)."""
    alias = ALIASES.get(currency)
    return currency if alias is None else alias[0]


def to_units(value: Any, currency: str, price: bool) -> tuple[str, int, bool]:
    """An event's amount (an exact ``Decimal``, or an ``int``) as (stored currency, integer
    units, rounded): units are the stored currency's minor unit, or millionths of its major
    unit for a price. A finer value is rounded half to even and ``rounded`` is True."""
    alias = ALIASES.get(currency)
    factor = 1
    if alias is not None:
        currency, factor = alias
    places = PRICE_DIGITS if price else DIGITS.get(currency, DEFAULT_DIGITS)
    if isinstance(value, int):
        return currency, value * factor * 10**places, False
    scaled = value.scaleb(places, EXACT)
    if factor != 1:
        scaled = EXACT.multiply(scaled, factor)
    units = int(scaled)
    if units == scaled:
        return currency, units, False
    return currency, int(scaled.to_integral_value(ROUND_HALF_EVEN, EXACT)), True


def normalize(data: dict[str, Any], field: str) -> bool:
    """Replace an event's money ``field`` and its ``currency`` with integer units and the stored
    currency (:func:`to_units`); True if the value had to be rounded."""
    currency, units, rounded = to_units(data[field], data["currency"], field == PRICE)
    data[field] = units
    data["currency"] = currency
    return rounded


def major(units: int, currency: str, price: bool = False) -> Decimal:
    """Integer units back as an exact decimal of the currency's major unit."""
    return Decimal(units).scaleb(-(PRICE_DIGITS if price else digits(currency)), EXACT)


def money_fields(schemas: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Event type -> its money field, for every schema whose data has ``amount`` or ``price``
    next to ``currency``; new event types with money are normalised without a change here."""
    fields: dict[str, str] = {}
    for schema in schemas:
        data = schema["properties"]["data"]["properties"]
        for name in (AMOUNT, PRICE):
            if name in data and "currency" in data:
                fields[schema["properties"]["type"]["const"]] = name
    return fields


class Rates:
    """Rates into the reporting currency by currency and UTC day (``SALESPULSE_FX_RATES``).

    A rate is reporting units per unit of the currency, dated by a UTC day; a day's rate is
    the newest dated on or before it, so a day before a currency's first rate has none. The
    reporting currency itself converts at exactly 1 without a line. With no reporting currency
    configured nothing converts and no reporting series exist.
    """

    __slots__ = ("currency", "days", "rates")

    def __init__(self, currency: str = "", table: Mapping[str, Mapping[int, Decimal]] | None = None) -> None:
        self.currency = currency
        self.days: dict[str, list[int]] = {}
        self.rates: dict[str, list[Decimal]] = {}
        for code, by_day in (table or {}).items():
            ordered = sorted(by_day.items())
            self.days[code] = [day for day, _ in ordered]
            self.rates[code] = [rate for _, rate in ordered]

    @property
    def enabled(self) -> bool:
        return bool(self.currency)

    def rate(self, currency: str, day: int) -> Decimal | None:
        """Reporting units per unit of ``currency`` on UTC day ``day`` (days since 1970), if any."""
        if currency == self.currency:
            return Decimal(1)
        days = self.days.get(currency)
        if days is None:
            return None
        i = bisect.bisect_right(days, day)
        return self.rates[currency][i - 1] if i else None

    def unconverted(self, kind: str, currency: str, t: int) -> bool:
        """Whether an event of type ``kind`` at ``t`` (epoch seconds) with an amount in
        ``currency`` has no rate to be converted at: counted, as it is applied, in
        ``salespulse_fx_unconverted_total``. Never with no reporting currency."""
        return bool(self.currency) and self.rate(currency, t // DAY if kind in DATED else NEWEST) is None

    def to_reporting(self, units: int, currency: str, day: int, price: bool = False) -> Decimal | None:
        """An amount in integer units of a stored currency (as events are kept) in the reporting
        currency's major unit, exactly, at the rate of UTC day ``day``; None without a rate.

        Use the amount's own date for what happened on a date (a won deal, a spend) and the
        read's day for what stands now (an open opportunity, a quota, a price)."""
        rate = self.rate(currency, day)
        if rate is None:
            return None
        return EXACT.multiply(major(units, currency, price), rate)

    def digits(self) -> int:
        """The reporting currency's minor-unit digits, to which shown totals are rounded."""
        return digits(self.currency)


def quantized(value: Decimal, places: int) -> Decimal:
    """``value`` to ``places`` decimals, half to even: how a reporting total is shown."""
    return value.quantize(Decimal(1).scaleb(-places), ROUND_HALF_EVEN, EXACT)


def json_default(value: object) -> str:
    """orjson's ``default``: an exact amount as a plain decimal string (``"25000000000000000"``),
    which JSON readers cannot round, as they would a number past 2**53."""
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
