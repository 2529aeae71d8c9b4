"""Terminal rendering of a KPI view, shared by ``salespulse kpis`` and the live demo board.

One row per headline number, one column per window; with a previous view, arrows show the
change, and rows whose alert condition holds (the defaults of prometheus/rules) turn red.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.table import Table

from salespulse.agents.rolling import WINDOW_NAMES

Getter = Callable[[dict[str, Any]], float | None]

#: (label, getter on one window's summary, format, alert when true)
ROWS: list[tuple[str, Getter, str, Callable[[float], bool] | None]] = [
    ("Leads", lambda w: w["leads"]["leads"], "{:,.0f}", None),
    ("Opportunities", lambda w: w["leads"]["opportunities"], "{:,.0f}", None),
    ("Lead attainment", lambda w: w["leads"]["attainment"], "{:.0%}", lambda v: v < 0.7),
    ("Customers acquired", lambda w: w["acquisition"]["customers_acquired"], "{:,.0f}", None),
    ("Lead conversion", lambda w: w["acquisition"]["conversion"], "{:.1%}", None),
    ("Deals won", lambda w: w["sales"]["deals_won"], "{:,.0f}", None),
    ("Win rate", lambda w: w["sales"]["win_rate"], "{:.1%}", None),
    (
        "Sales amount (USD)",
        lambda w: w["sales"]["amount_by_currency"].get("USD"),
        "{:,.0f}",
        None,
    ),
    ("Customers engaged", lambda w: w["engagement"]["customers_engaged"], "{:,.0f}", None),
    ("Activities", lambda w: w["engagement"]["activities"], "{:,.0f}", None),
    ("At-risk share", lambda w: w["engagement"]["at_risk_share"], "{:.1%}", lambda v: v > 0.2),
    ("eNPS", lambda w: w["enps"]["enps"], "{:+.1f}", lambda v: v < 0),
    ("Expansion rate", lambda w: w["expansion"]["expansion_rate"], "{:.1%}", None),
    ("NPS", lambda w: w["nps"]["nps"], "{:+.1f}", lambda v: v < 0),
    ("NPS responses", lambda w: w["nps"]["responses"], "{:,.0f}", None),
]


def _cell(value: float | None, fmt: str, previous: float | None, alert: bool) -> str:
    if value is None:
        return "[dim]-[/dim]"
    text = fmt.format(value)
    if previous is not None and value != previous:
        text += " [green]▲[/green]" if value > previous else " [yellow]▼[/yellow]"
    return f"[bold red]{text}[/bold red]" if alert else text


def _get(getter: Getter, window: dict[str, Any]) -> float | None:
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
    for label, getter, fmt, alert in ROWS:
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
    return table
