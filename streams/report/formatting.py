"""How the digest prints numbers, changes, dates and colours.

The plain-text mail, the HTML mail and the charts must show every number the same way,
and the tests compare against these exact strings, so the formatting rules and the
colour palette live in one module that all of them share.
"""

from __future__ import annotations

from datetime import UTC, datetime

# Colours: one palette for charts and HTML.
BLUE, ORANGE, GREEN, RED, GREY, INK = "#2b6cb0", "#dd6b20", "#2f855a", "#c53030", "#718096", "#1a202c"


COUNT, PERCENT, SCORE, MONEY, INDEX = "count", "percent", "score", "money", "index"


def format_value(kind: str, value: float | None) -> str:
    """How the digest prints a number of the given kind; ``n/a`` when there is none."""
    if value is None:
        return "n/a"
    if kind == COUNT:
        return f"{value:,.0f}"
    if kind == PERCENT:
        return f"{value:.1%}"
    if kind == SCORE:
        return f"{value:+.1f}"
    if kind == MONEY:
        return f"{value:,.2f}"
    if kind == INDEX:
        return f"{value:.3f}"
    raise ValueError(f"unknown kind {kind!r}")


def format_change(kind: str, value: float | None, previous: float | None) -> str:
    """The change against the previous period: absolute (and relative for counts)."""
    if value is None:
        return ""
    if previous is None:
        return "no previous value"  # shown as "no value for the previous <window>"
    delta = value - previous
    if delta == 0:
        return "no change"
    if kind == PERCENT:
        return f"{delta * 100:+.1f} pp"
    if kind == SCORE:
        return f"{delta:+.1f} pts"
    if kind == INDEX:
        return f"{delta:+.3f}"
    text = f"{delta:+,.0f}" if kind == COUNT else f"{delta:+,.2f}"
    return f"{text} ({delta / previous:+.1%})" if previous else f"{text} (new)"


def _compact(value: float) -> str:
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{value:.0f}"


def _stamp(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%a %d %b %Y %H:%M UTC")
