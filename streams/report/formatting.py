"""How the digest prints numbers, changes, dates and colours.

The plain-text mail, the HTML mail and the charts must show every number the same way,
and the tests compare against these exact strings, so the formatting rules and the
colour palette live in one module that all of them share.
"""

from __future__ import annotations

from decimal import Decimal

from salespulse.agents.money import digits
from salespulse.streams.report.catalogue import Catalogue, catalogue

# Colours: one palette for charts and HTML.
BLUE, ORANGE, GREEN, RED, GREY, INK = "#2b6cb0", "#dd6b20", "#2f855a", "#c53030", "#718096", "#1a202c"


COUNT, PERCENT, SCORE, MONEY, INDEX = "count", "percent", "score", "money", "index"


def format_value(kind: str, value: float | None, cat: Catalogue | None = None) -> str:
    """How the digest prints a number of the given kind; ``n/a`` when there is none."""
    cat = cat or catalogue()
    if value is None:
        return cat.t("n/a")
    if kind == COUNT:
        return cat.num(f"{value:,.0f}")
    if kind == PERCENT:
        return cat.num(f"{value:.1%}")
    if kind == SCORE:
        return cat.num(f"{value:+.1f}")
    if kind == MONEY:
        return cat.num(f"{value:,.2f}")
    if kind == INDEX:
        return cat.num(f"{value:.3f}")
    raise ValueError(f"unknown kind {kind!r}")


def shown_money(value: float | Decimal, currency: str, cat: Catalogue) -> tuple[Decimal, str, int]:
    """An exact amount as shown: (amount, unit, decimals). Rials are shown as Toman (a tenth)
    when the catalogue says so, with a decimal only where a rial is left over."""
    amount = Decimal(value)
    if currency == "IRR" and cat.toman:
        toman = amount.scaleb(-1)
        return toman, cat.t("currency.toman"), 0 if toman == toman.to_integral_value() else 1
    return amount, currency, digits(currency)


def format_money(
    value: float | Decimal | None, currency: str, cat: Catalogue | None = None, sign: bool = False
) -> str:
    """An amount in its currency's digits (``25,000,000,000,000,000`` rials, ``1,234.50`` dollars),
    exactly: the digits of the decimal, never of a float."""
    cat = cat or catalogue()
    if value is None:
        return cat.t("n/a")
    amount, _, places = shown_money(value, currency, cat)
    return cat.num(f"{amount:{'+' if sign else ''},.{places}f}")


def unit_name(currency: str, cat: Catalogue) -> str:
    """The name an amount's unit is shown with: its code, or Toman for rials shown as Toman."""
    return shown_money(0, currency, cat)[1]


def format_change(
    kind: str,
    value: float | Decimal | None,
    previous: float | Decimal | None,
    cat: Catalogue | None = None,
    currency: str = "",
) -> str:
    """The change against the previous period: absolute (and relative for counts and money);
    money with a ``currency`` in its digits, exactly."""
    cat = cat or catalogue()
    if value is None:
        return ""
    if previous is None:
        return cat.t("change.no_previous")  # shown as "no value for the previous <window>"
    delta: float | Decimal
    if isinstance(value, Decimal) and isinstance(previous, Decimal):
        delta = value - previous  # money, exactly
    else:
        delta = float(value) - float(previous)
    if delta == 0:
        return cat.t("change.same")
    if kind == PERCENT:
        return cat.t("change.pp", delta=cat.num(f"{delta * 100:+.1f}"))
    if kind == SCORE:
        return cat.t("change.pts", delta=cat.num(f"{delta:+.1f}"))
    if kind == INDEX:
        return cat.num(f"{delta:+.3f}")
    if kind == MONEY and currency:
        text = format_money(delta, currency, cat, sign=True)
    else:
        text = cat.num(f"{delta:+,.0f}" if kind == COUNT else f"{delta:+,.2f}")
    if not previous:
        return cat.t("change.new", delta=text)
    return cat.t("change.relative", delta=text, relative=cat.num(f"{float(delta) / float(previous):+.1%}"))


def _compact(value: float, cat: Catalogue) -> str:
    for limit, size in ((1e12, "trillion"), (1e9, "billion"), (1e6, "million"), (1e3, "thousand")):
        if abs(value) >= limit:
            return cat.t(f"compact.{size}", value=cat.num(f"{value / limit:.1f}"))
    return cat.num(f"{value:.0f}")
