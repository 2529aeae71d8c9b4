"""The digest's forecast section: the current fiscal quarter against quota, per rep.

The numbers are ``salespulse forecast``'s: every worker's ``/forecast`` share as of the
digest's clock, merged by the one merge function (streams/endpoints/forecast_view.py). The
period is named in the catalogue's words and digits, and its first and last days in the
catalogue's calendar, so the Persian digest names it in Jalali whatever the fiscal
calendar. Its words come from the catalogue (``forecast.*`` keys in ``locales/<code>.toml``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from salespulse.streams.endpoints.cluster import WorkerUnreachable
from salespulse.streams.endpoints.forecast_view import SharesDisagree, cluster_forecast
from salespulse.streams.report.catalogue import Catalogue
from salespulse.streams.report.detractors import isolated
from salespulse.streams.report.formatting import PERCENT, format_money, format_value, unit_name
from salespulse.streams.report.model import Metric, Section

#: Table columns: the row's fields, after the rep and currency.
COLUMNS = ("quota", "closed_won", "commit", "best_case", "pipeline", "forecast", "attainment")
MAX_LISTED = 20


def merged_forecast(workers: Sequence[str], clock: int, token: str) -> tuple[dict[str, Any] | None, str]:
    """The current quarter by rep as of ``clock``, or nothing and why it could not be read."""
    try:
        return cluster_forecast(workers, {"by": "rep", "as_of": str(clock)}, token), ""
    except (WorkerUnreachable, SharesDisagree) as exc:
        return None, str(exc)


def period_name(name: str, cat: Catalogue) -> str:
    """``2026``, ``2026-Q4`` or ``2026-11`` in the catalogue's words and digits."""
    year = cat.num(name[:4])
    if len(name) == 4:
        return cat.t("forecast.year", year=year)
    if name[5] == "Q":
        return cat.t("forecast.quarter", quarter=cat.num(name[6]), year=year)
    return cat.t("forecast.month", month=cat.num(name[5:7]), year=year)


def _epoch(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp())


def forecast_section(view: dict[str, Any] | None, problem: str, cat: Catalogue) -> Section:
    t = cat.t
    if view is None:
        headline = Metric(t("forecast.on_track"), None, kind=PERCENT, compare=False)
        return Section(
            10, "forecast", t("forecast.title_unread"), headline, note=t("forecast.problem", error=problem)
        )
    title = t(
        "forecast.title",
        period=period_name(view["period"], cat),
        start=cat.date(_epoch(view["start"])),
        end=cat.date(_epoch(view["end"])),
    )
    rows = [r for r in view["rows"] if r["unit"] == "amount"]
    with_quota = [r for r in rows if r["quota"]]
    on_track = (
        sum(1 for r in with_quota if r["forecast"] >= r["quota"]) / len(with_quota) if with_quota else None
    )
    listed = sorted(rows, key=lambda r: (r["quota"] is None, -r["forecast"]))[:MAX_LISTED]
    moves = view["waterfall"]
    lines = [
        t(
            "forecast.moved",
            currency=isolated(unit_name(currency, cat)),
            **{m: format_money(moves[m][currency], currency, cat) for m in moves},
        )
        for currency in moves["start"]
    ]
    return Section(
        10,
        "forecast",
        title,
        # Currencies do not add up: the headline is the share of quotas the forecast reaches.
        Metric(t("forecast.on_track"), on_track, kind=PERCENT, compare=False),
        (Metric(t("forecast.slipped"), float(len(view["slips"])), compare=False, higher_is_better=False),),
        table_head=(t("forecast.rep"), t("forecast.currency"), *(t(f"forecast.{c}") for c in COLUMNS))
        if listed
        else (),
        table=tuple(
            (
                isolated(r["rep"]),
                isolated(unit_name(r["currency"], cat)),
                *(
                    format_value(PERCENT, r[c], cat)
                    if c == "attainment"
                    else format_money(r[c], r["currency"], cat)
                    for c in COLUMNS
                ),
            )
            for r in listed
        ),
        note=" ".join([t("forecast.note"), *([t("forecast.moved_since"), *lines] if lines else [])]),
    )
