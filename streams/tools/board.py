"""Terminal rendering of a KPI view, shared by ``salespulse kpis`` and the live demo board,
of the detractor cases (``salespulse detractors``) and of the forecast (``salespulse forecast``).

One row per headline number, one column per window; with a previous view, arrows show the
change, and rows whose alert condition holds (the defaults of prometheus/rules) turn red.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from rich.table import Table
from rich.text import Text

from salespulse.agents.money import digits
from salespulse.agents.rolling import WINDOW_NAMES

Getter = Callable[[dict[str, Any]], float | Decimal | None]
Row = tuple[str, Getter, str, Callable[[float | Decimal], bool] | None]

#: (label, getter on one window's summary, format, alert when true); money rows follow "Win rate".
ROWS: list[Row] = [
    ("Leads", lambda w: w["leads"]["leads"], "{:,.0f}", None),
    ("Opportunities", lambda w: w["leads"]["opportunities"], "{:,.0f}", None),
    ("Lead attainment", lambda w: w["leads"]["attainment"], "{:.0%}", lambda v: v < 0.7),
    ("Customers acquired", lambda w: w["acquisition"]["customers_acquired"], "{:,.0f}", None),
    ("Lead conversion", lambda w: w["acquisition"]["conversion"], "{:.1%}", None),
    ("Deals won", lambda w: w["sales"]["deals_won"], "{:,.0f}", None),
    ("Win rate", lambda w: w["sales"]["win_rate"], "{:.1%}", None),
    ("Customers engaged", lambda w: w["engagement"]["customers_engaged"], "{:,.0f}", None),
    ("Activities", lambda w: w["engagement"]["activities"], "{:,.0f}", None),
    ("At-risk share", lambda w: w["engagement"]["at_risk_share"], "{:.1%}", lambda v: v > 0.2),
    ("eNPS", lambda w: w["enps"]["enps"], "{:+.1f}", lambda v: v < 0),
    ("Expansion rate", lambda w: w["expansion"]["expansion_rate"], "{:.1%}", None),
    ("NPS", lambda w: w["nps"]["nps"], "{:+.1f}", lambda v: v < 0),
    ("NPS responses", lambda w: w["nps"]["responses"], "{:,.0f}", None),
    ("Detractors open", lambda w: w["detractors"]["open"], "{:,.0f}", None),
    ("Detractors overdue", lambda w: w["detractors"]["overdue"], "{:,.0f}", lambda v: v > 0),
    ("Detractor follow-up rate", lambda w: w["detractors"]["follow_up_rate"], "{:.0%}", None),
]


def _exact(amount: Any) -> Decimal | None:
    """An amount of a view, a ``Decimal`` or the decimal string ``/kpis`` writes."""
    return None if amount is None else Decimal(amount)


def _money_rows(sales: dict[str, Any]) -> list[Row]:
    """Sales in the reporting currency first (and the deals with no rate), then per currency,
    each in its currency's digits, exactly."""
    rows: list[Row] = []
    currency = sales.get("reporting_currency")
    if currency:
        rows.append(
            (
                f"Sales amount ({currency}, all currencies)",
                lambda w: _exact(w["sales"]["amount_reporting"]),
                f"{{:,.{digits(currency)}f}}",
                None,
            )
        )
        rows.append(
            (
                f"Rate effect ({currency}: at own rates less at previous period's)",
                lambda w: _exact(w["sales"]["rate_effect"]),
                f"{{:+,.{digits(currency)}f}}",
                None,
            )
        )
        rows.append(
            (
                "Won deals with no rate",
                lambda w: sum(row["events"] for row in w["sales"]["unconverted"].values()),
                "{:,.0f}",
                lambda v: v > 0,
            )
        )
    for code in sorted(sales["amount_by_currency"]):
        rows.append(
            (
                f"Sales amount ({code})",
                lambda w, code=code: _exact(w["sales"]["amount_by_currency"].get(code)),  # type: ignore[misc]
                f"{{:,.{digits(code)}f}}",
                None,
            )
        )
    return rows


def _cell(value: float | Decimal | None, fmt: str, previous: float | Decimal | None, alert: bool) -> str:
    if value is None:
        return "[dim]-[/dim]"
    text = fmt.format(value)
    if previous is not None and value != previous:
        text += " [green]▲[/green]" if value > previous else " [yellow]▼[/yellow]"
    return f"[bold red]{text}[/bold red]" if alert else text


def _get(getter: Getter, window: dict[str, Any]) -> float | Decimal | None:
    try:
        return getter(window)
    except (KeyError, TypeError):
        return None


def kpi_table(view: dict[str, Any], previous: dict[str, Any] | None = None) -> Table:
    """The headline KPIs of a view, per window."""
    table = Table(title="SalesPulse KPIs", expand=False)
    table.add_column("KPI")
    for window in WINDOW_NAMES:
        table.add_column(window, justify="right")
    at = next(i for i, row in enumerate(ROWS) if row[0] == "Win rate") + 1
    rows = [*ROWS[:at], *_money_rows(view["windows"]["30d"]["sales"]), *ROWS[at:]]
    for label, getter, fmt, alert in rows:
        cells = []
        for window in WINDOW_NAMES:
            value = _get(getter, view["windows"][window])
            before = _get(getter, previous["windows"][window]) if previous else None
            cells.append(_cell(value, fmt, before, bool(alert and value is not None and alert(value))))
        table.add_row(label, *cells)
    prices = view["windows"]["30d"]["pricing"]["prices"]
    undercut = [p for p in prices if p["price_index"] and p["price_index"] >= 1 / 0.9]
    table.caption = (
        f"customers known {view['windows']['30d']['engagement']['customers_known']:,.0f}; "
        f"competitor prices {len(prices)}, undercutting us by 10%+: {len(undercut)}"
    )
    unconverted = {c: n for c, n in sorted(view.get("counters", {}).get("unconverted", {}).items()) if n}
    if unconverted:  # salespulse_fx_unconverted_total: events applied with no rate, ever
        counts = ", ".join(f"{c} {n:,}" for c, n in unconverted.items())
        table.caption += f"; events applied with no exchange rate: {counts}"
    return table


def detractor_table(view: dict[str, Any], comment_chars: int = 60) -> Table:
    """One row per case; customer text goes in as plain ``Text``, never as rich markup."""
    table = Table(title=f"Detractors: {view['status']}, answered in {view['window']}", expand=False)
    for column in (
        "Customer",
        "Score",
        "Answered",
        "Owner",
        "Region",
        "Hours open",
        "Followed up",
        "Comment",
    ):
        table.add_column(column, justify="right" if column in {"Score", "Hours open"} else "left")
    for case in view["cases"]:
        followed = case["followed_up_at"]
        comment = case["comment"] or ""
        if len(comment) > comment_chars:
            comment = comment[: comment_chars - 1] + "…"
        table.add_row(
            Text(case["customer_id"]),
            str(case["score"]),
            case["answered_at"],
            Text(case["owner"]),
            Text(case["region"]),
            f"{case['hours_open']:,.1f}",
            "-" if followed is None else f"{followed} ({case['channel']})",
            Text(comment),
        )
    table.caption = f"{len(view['cases'])} cases"
    return table


#: (column, row field, format): money with thousands, ratios as percentages.
FORECAST_COLUMNS: list[tuple[str, str, str]] = [
    ("Quota", "quota", "{:,.0f}"),
    ("Closed won", "closed_won", "{:,.0f}"),
    ("Commit", "commit", "{:,.0f}"),
    ("Best case", "best_case", "{:,.0f}"),
    ("Pipeline", "pipeline", "{:,.0f}"),
    ("Weighted", "weighted", "{:,.0f}"),
    ("Forecast", "forecast", "{:,.0f}"),
    ("Gap", "gap", "{:,.0f}"),
    ("Attainment", "attainment", "{:.0%}"),
    ("Coverage", "coverage", "{:.1f}x"),
    ("Coverage left", "coverage_remaining", "{:.1f}x"),
]


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def forecast_table(view: dict[str, Any]) -> Table:
    """One row per rep, team, region or the company and currency (or deals); the waterfall
    and, for a closed period, each row's mean daily forecast accuracy, under it."""
    by = view["by"]
    title = f"Forecast {view['period']} ({view['start']} to {view['end']}), by {by}"
    table = Table(title=title, expand=False)
    table.add_column("company" if by == "company" else by.capitalize())
    table.add_column("Unit")
    for column, _, _ in FORECAST_COLUMNS:
        table.add_column(column, justify="right")
    if view["closed"]:
        table.add_column("Accuracy", justify="right")
    for row in view["rows"]:
        cells = [_cell(row[name], fmt, None, False) for _, name, fmt in FORECAST_COLUMNS]
        if view["closed"]:
            cells.append(_cell(_mean(row["accuracy"]["forecast"]["accuracy"]), "{:.0%}", None, False))
        unit = row["currency"] or "deals"
        table.add_row(Text(row.get(by, "all")), unit, *cells)
    moves = view["waterfall"]
    lines = [
        f"{currency}: {moves['start'][currency]:,.0f} + created {moves['created'][currency]:,.0f}"
        f" + pulled in {moves['pulled_in'][currency]:,.0f} - pushed out {moves['pushed_out'][currency]:,.0f}"
        f" + increased {moves['increased'][currency]:,.0f} - decreased {moves['decreased'][currency]:,.0f}"
        f" - won {moves['won'][currency]:,.0f} - lost {moves['lost'][currency]:,.0f}"
        f" = {moves['end'][currency]:,.0f}"
        for currency in moves["start"]
    ]
    slipped = len(view["slips"])
    table.caption = "\n".join(
        ["pipeline moved:", *lines, f"{slipped} deals slipped to a later period at least once"]
        if lines
        else [f"no pipeline in the period; {slipped} deals slipped"]
    )
    return table
