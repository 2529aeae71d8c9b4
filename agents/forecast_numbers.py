"""The forecast's numbers, from the partitions' states: one worker's share of ``GET /forecast``.

A share holds raw sums (closed won, commit, best case, pipeline, weighted; the waterfall's
movements; the daily series of a closed period), which add across workers, and static
quotas, which do not. :func:`derive` computes everything else from those, on one worker's
share and again after a merge (``streams/endpoints/forecast_view.py``), so both agree.

Rows are (rep | team | region | company, unit): an amount row per currency, and a row
counting deals (``unit`` ``deals``, ``currency`` null) wherever a quota counts deals. A
team's row on a day holds the reps who were its members that day; the waterfall compares
each opportunity's state at the end of two days (docs/forecast.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from salespulse.agents.forecast_calendar import DAY, FiscalCalendar, Period, iso_day
from salespulse.agents.forecast_plan import BEST_CASE, COMMIT, DEALS, PIPELINE, Plan
from salespulse.agents.forecast_state import (
    AMOUNT,
    CLOSE_DAY,
    KEY,
    MONTH,
    RID,
    Close,
    ForecastState,
    Version,
    slips,
    state_at,
)
from salespulse.agents.money import digits

BY: Final = ("rep", "team", "region", "company")
MOVEMENTS: Final = (
    "start",
    "created",
    "pulled_in",
    "pushed_out",
    "increased",
    "decreased",
    "won",
    "lost",
    "end",
)
#: The raw sums of a row, which add across workers.
RAW: Final = ("closed_won", "commit", "best_case", "pipeline", "weighted")
#: The measures whose accuracy is tracked on every day of a closed period.
MEASURES: Final = ("commit", "best_case", "forecast")
#: Scale of amount x probability over amounts (integer units of the currency, ``money.py``).
WEIGHT_SCALE: Final = 10_000
#: The breakdown of the Prometheus series, (rep, region), as one name joined by itself.
CELL: Final = "\x1f"
#: A row: (the entity's name, or "" for the company; unit: a currency or "deals").
RowKey = tuple[str, str]


class QueryError(ValueError):
    """A ``/forecast`` query the worker cannot answer; the message says which part and why."""


@dataclass(frozen=True)
class Query:
    """A period, a breakdown, the day the numbers stand at and the waterfall's two moments
    (each the last second of a UTC day; ``start`` may be the day before the period's first)."""

    period: Period
    by: str
    as_of: int
    start: int
    end: int

    @property
    def closed(self) -> bool:
        """Whether the period is over at ``as_of``: its accuracy can be told."""
        return self.as_of >= self.period.end * DAY - 1


def end_of_day(moment: int) -> int:
    return (moment // DAY + 1) * DAY - 1


def _moment(params: Mapping[str, str], name: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if not value.isdigit():
        raise QueryError(f"{name} must be epoch seconds, not {value!r}")
    return int(value)


def parse_query(calendar: FiscalCalendar, params: Mapping[str, str], now: int, max_skew: int) -> Query:
    """A query from ``period``, ``by``, ``as_of``, ``from`` and ``to``; :class:`QueryError` if bad.

    Without ``period`` the current fiscal quarter, without ``by`` reps. ``as_of``, ``from``
    and ``to`` are epoch seconds, each standing for the end of its UTC day; at most the clock
    skew after the worker's clock, and not before the day before the history's first.
    """
    by = params.get("by", "rep")
    if by not in BY:
        raise QueryError(f"by must be one of {', '.join(BY)}, not {by!r}")
    name = params.get("period")
    try:
        period = calendar.period_of(now // DAY, "quarter") if name is None else calendar.period(name)
    except ValueError as exc:
        raise QueryError(str(exc)) from None
    oldest = (calendar.horizon(now // DAY) - 1) * DAY
    if period.start * DAY <= oldest:
        raise QueryError(
            f"period {period.name} starts before the history kept (from {iso_day(oldest // DAY + 1)},"
            " the start of the previous fiscal year)"
        )
    moments: dict[str, int] = {}
    for part in ("as_of", "from", "to"):
        moment = _moment(params, part)
        if moment is None:
            continue
        if moment > now + max_skew:
            raise QueryError(
                f"{part}={moment} is {moment - now}s after the worker's clock ({now}); at most"
                f" {max_skew}s (SALESPULSE_MAX_CLOCK_SKEW) ahead can be read"
            )
        if moment < oldest:
            raise QueryError(
                f"{part}={moment} is before the history horizon: the oldest day that can be read is"
                f" {iso_day(oldest // DAY)} (the day before the previous fiscal year)"
            )
        moments[part] = end_of_day(moment)
    as_of = moments.get("as_of", end_of_day(now))
    end = moments.get("to", as_of)
    start = moments.get("from", min(period.start * DAY - 1, end))
    if start > end:
        raise QueryError(f"from ({iso_day(start // DAY)}) is after to ({iso_day(end // DAY)})")
    return Query(period, by, as_of, start, end)


# -- the rows' entities -------------------------------------------------------------------
def entities(plan: Plan, by: str) -> Callable[[str, str, int], list[str]]:
    """What a (rep, region) counts under on a day: the rep, its teams that day, the region,
    the company (``""``), or (:data:`CELL`, the Prometheus rows) the rep and region."""
    if by == CELL:
        return lambda rep, region, day: [f"{rep}{CELL}{region}"]
    if by == "rep":
        return lambda rep, region, day: [rep]
    if by == "team":
        return lambda rep, region, day: plan.teams_of(rep, day)
    if by == "region":
        return lambda rep, region, day: [region]
    return lambda rep, region, day: [""]


def add_open(row: list[int], cat: int, amount: int, weighted: int) -> None:
    """Add an open opportunity's share to a row ``[won, commit, best case, pipeline, weighted]``:
    the pipeline and weighted always, commit or best case by its category."""
    row[3] += amount
    row[4] += weighted
    if cat == COMMIT:
        row[1] += amount
    elif cat == BEST_CASE:
        row[2] += amount


class _Sums:
    """Raw integer sums per row: ``[won, commit, best case, pipeline, weighted]`` (amounts in
    integer units of the currency, weighted in units x basis points; deals rows count deals
    and basis points)."""

    def __init__(self) -> None:
        self.rows: dict[RowKey, list[int]] = {}

    def cell(self, key: RowKey) -> list[int]:
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = [0, 0, 0, 0, 0]
        return row

    def open(self, key: RowKey, cat: int, amount: int, weighted: int) -> None:
        add_open(self.cell(key), cat, amount, weighted)

    def add_won(self, key: RowKey, amount: int) -> None:
        self.cell(key)[0] += amount


def _open_cells(
    sums: _Sums,
    cells: Mapping[tuple[int, int], Sequence[int]],
    state: ForecastState,
    names: Callable[[str, str, int], list[str]],
    day: int,
) -> None:
    for (rid, cat), vec in cells.items():
        if cat in (PIPELINE, BEST_CASE, COMMIT):
            rep, region, currency = state.rows[rid]
            for name in names(rep, region, day):
                sums.open((name, currency), cat, vec[0], vec[1])
                sums.open((name, DEALS), cat, vec[2], vec[3])


def numbers_at(
    states: Iterable[ForecastState], plan: Plan, query: Query, day: int
) -> dict[RowKey, list[int]]:
    """Raw sums per row at the end of ``day``."""
    names = entities(plan, query.by)
    sums = _Sums()
    period = query.period
    for state in states:
        _open_cells(sums, state.open_at(period, day), state, names, day)
        for rep, region, currency, won_day, amount, deals in state.won_in(
            period.start, min(day, period.end - 1)
        ):
            for name in names(rep, region, won_day):
                sums.add_won((name, currency), amount)
                sums.add_won((name, DEALS), deals)
    return sums.rows


def daily(states: Iterable[ForecastState], plan: Plan, query: Query) -> dict[RowKey, list[list[int]]]:
    """Raw sums per row at the end of every day of the period."""
    names = entities(plan, query.by)
    period = query.period
    first, last = period.start, period.end - 1
    series: dict[RowKey, list[list[int]]] = {}

    def row(key: RowKey) -> list[list[int]]:
        found = series.get(key)
        if found is None:
            found = series[key] = [[0, 0, 0, 0, 0] for _ in range(first, last + 1)]
        return found

    won: dict[RowKey, list[int]] = {}
    for state in states:
        for (rid, cat), days in state.open_daily(period, first, last).items():
            rep, region, currency = state.rows[rid]
            for index, vec in enumerate(days):
                for name in names(rep, region, first + index):
                    for key, amount, weighted in (
                        ((name, currency), vec[0], vec[1]),
                        ((name, DEALS), vec[2], vec[3]),
                    ):
                        add_open(row(key)[index], cat, amount, weighted)
        # A deal counts under whom its rep was with on the day it was won, from then on.
        for rep, region, currency, won_day, amount, deals in state.won_in(first, last):
            for name in names(rep, region, won_day):
                for key, value in (((name, currency), amount), ((name, DEALS), deals)):
                    found = won.get(key)
                    if found is None:
                        found = won[key] = [0] * (last - first + 1)
                    found[won_day - first] += value
    for key, increments in won.items():
        cells, total = row(key), 0
        for index, value in enumerate(increments):
            total += value
            cells[index][0] += total
    return series


# -- the waterfall ------------------------------------------------------------------------
def _placed(
    version: Version | None,
    kind: str,
    period: Period,
    names: Callable[[str, str, int], list[str]],
    state: ForecastState,
    moment: int,
) -> list[tuple[RowKey, int]]:
    """The rows an opportunity is in (open, not omitted, closing in the period) at ``moment``,
    with what it counts there: its amount in its currency's row, one in the deals row."""
    if kind != "open" or version is None or version[KEY] < 0:
        return []
    if not period.first_month <= version[MONTH] <= period.last_month:
        return []
    rep, region, currency = state.rows[version[RID]]
    placed: list[tuple[RowKey, int]] = []
    for name in names(rep, region, moment // DAY):
        placed += [((name, currency), version[AMOUNT]), ((name, DEALS), 1)]
    return placed


def waterfall(
    states: Iterable[ForecastState], plan: Plan, query: Query, by: str
) -> tuple[dict[RowKey, list[int]], list[dict[str, Any]]]:
    """Movements per row between ``query.start`` and ``query.end``, in :data:`MOVEMENTS`
    order, and the opportunities in one of the rows at either end that slipped.

    Each opportunity is compared at the two moments, so start plus every movement is the end.
    """
    names = entities(plan, by)
    period = query.period
    moves: dict[RowKey, list[int]] = {}
    slipped: list[dict[str, Any]] = []
    for state in states:
        for opportunity, versions, close in state.opportunities():
            kind_s, at_s = state_at(versions, close, query.start)
            kind_e, at_e = state_at(versions, close, query.end)
            before = dict(_placed(at_s, kind_s, period, names, state, query.start))
            after = dict(_placed(at_e, kind_e, period, names, state, query.end))
            for key in before.keys() | after.keys():
                row = moves.get(key)
                if row is None:
                    row = moves[key] = [0] * len(MOVEMENTS)
                _move(row, before.get(key), after.get(key), kind_s, kind_e)
            if (before or after) and (count := slips(versions, query.end)):
                slipped.append(_slip(opportunity, versions, close, state, query, count))
    return moves, slipped


def _move(row: list[int], before: int | None, after: int | None, kind_s: str, kind_e: str) -> None:
    if before is not None:
        row[0] += before
    if after is not None:
        row[8] += after
    if before is not None and after is not None:
        if after > before:
            row[4] += after - before
        else:
            row[5] += before - after
    elif before is not None:
        row[6 if kind_e == "won" else 7 if kind_e == "lost" else 3] += before
    elif after is not None:
        row[1 if kind_s == "none" else 2] += after


def _slip(
    opportunity: str, versions: list[Version], close: Close, state: ForecastState, query: Query, count: int
) -> dict[str, Any]:
    last = state_at(versions, close, query.end)[1]
    assert last is not None  # it was in a row at one end, so it had a version by the later
    rep, region, currency = state.rows[last[RID]]
    return {
        "opportunity_id": opportunity,
        "rep": rep,
        "region": region,
        "currency": currency,
        "expected_close": None if last[CLOSE_DAY] < 0 else iso_day(last[CLOSE_DAY]),
        "slips": count,
    }


# -- quotas -------------------------------------------------------------------------------
def quota(
    plan: Plan, by: str, name: str, period: Period, unit: str
) -> tuple[float | None, dict[str, float] | None]:
    """A row's quota and, for a team whose own quota differs from its members', the mismatch."""
    if by == "rep":
        return plan.own_quota("rep", name, period, unit), None
    if by == "company":
        return plan.company_quota(period, unit), None
    if by == "region":
        return None, None
    own, members = plan.own_quota("team", name, period, unit), plan.members_quota(name, period, unit)
    if own is None:
        return members, None
    if members is not None and round(abs(own - members), 6) >= 0.005:
        return own, {"team": own, "members": round(members, 6)}
    return own, None


def _quota_rows(plan: Plan, by: str, period: Period) -> set[RowKey]:
    """Rows a quota applies to, whether or not any event reached them."""
    if by == "region":
        return set()
    if by == "company":
        candidates = {("", unit) for rep in plan.named("rep") for unit in plan.units("rep", rep)}
    else:
        candidates = {(name, unit) for name in plan.named(by) for unit in plan.units(by, name)}
        if by == "team":
            candidates |= {
                (team, unit)
                for team, members in plan.teams.items()
                for member in members
                for unit in plan.units("rep", member.rep)
            }
    return {(name, unit) for name, unit in candidates if quota(plan, by, name, period, unit)[0] is not None}


# -- the share ----------------------------------------------------------------------------
def _scale(unit: str) -> int:
    """Integer units per major unit of a row's unit: a currency's minor units, or deals."""
    return 1 if unit == DEALS else 10 ** digits(unit)


def _amounts(values: Sequence[int], unit: str) -> dict[str, float]:
    scale = _scale(unit)
    won, commit, best, pipeline, weighted = values
    return {
        "closed_won": won / scale,
        "commit": (won + commit) / scale,
        "best_case": (won + commit + best) / scale,
        "pipeline": pipeline / scale,
        "weighted": weighted / (scale * WEIGHT_SCALE),
    }


def share(
    states: Sequence[ForecastState], plan: Plan, query: Query, clock: int, partitions: Sequence[int]
) -> dict[str, Any]:
    """One worker's answer to ``GET /forecast``: its partitions' raw sums, and what follows."""
    period, by = query.period, query.by
    rows = numbers_at(states, plan, query, query.as_of // DAY)
    company_moves, slipped = waterfall(states, plan, query, "company")
    moves = company_moves if by == "company" else waterfall(states, plan, query, by)[0]
    series = daily(states, plan, query) if query.closed else {}
    keys = {k for k, v in rows.items() if any(v)} | {k for k, v in moves.items() if any(v)}
    keys = {k for k in keys if k[1] != DEALS} | _quota_rows(plan, by, period)
    out = []
    for name, unit in sorted(keys, key=lambda k: (k[0], k[1] == DEALS, k[1])):
        row: dict[str, Any] = {} if by == "company" else {by: name}
        row["currency"] = None if unit == DEALS else unit
        row["unit"] = DEALS if unit == DEALS else "amount"
        row["quota"], mismatch = quota(plan, by, name, period, unit)
        if by == "team":
            row["quota_mismatch"] = mismatch
        row.update(_amounts(rows.get((name, unit), [0] * 5), unit))
        scale = _scale(unit)
        row["waterfall"] = dict(
            zip(MOVEMENTS, (v / scale for v in moves.get((name, unit), [0] * 9)), strict=True)
        )
        if query.closed:
            days = series.get((name, unit)) or [[0] * 5 for _ in range(period.days)]
            columns = [_amounts(values, unit) for values in days]
            row["daily"] = {
                "day": [iso_day(period.start + i) for i in range(period.days)],
                **{
                    field: [c[field] for c in columns]
                    for field in ("closed_won", "commit", "best_case", "weighted")
                },
            }
        out.append(row)
    top: dict[str, dict[str, float]] = {m: {} for m in MOVEMENTS}
    for (_, unit), values in sorted(company_moves.items()):
        if unit != DEALS:
            for m, v in zip(MOVEMENTS, values, strict=True):
                top[m][unit] = v / _scale(unit)
    view = {
        "period": period.name,
        "calendar": plan.calendar.setting,
        "start": iso_day(period.start),
        "end": iso_day(period.end - 1),
        "as_of": query.as_of,
        "by": by,
        "from": query.start,
        "to": query.end,
        "closed": query.closed,
        "clock": clock,
        "partitions": sorted(partitions),
        "rows": out,
        "waterfall": top,
        "slips": sorted(slipped, key=lambda s: (-s["slips"], s["opportunity_id"])),
    }
    return derive(view)


# -- what follows from the raw sums -------------------------------------------------------
def _ratio(numerator: float, denominator: float | None) -> float | None:
    return numerator / denominator if denominator else None


def derive(view: dict[str, Any]) -> dict[str, Any]:
    """Set every row's derived fields from its raw sums and quota (on a share, and again on a
    merged view): forecast, gap, attainment, coverage, coverage_remaining, and for a closed
    period the accuracy and bias of commit, best case and forecast on each day."""
    for row in view["rows"]:
        won, q, pipeline = row["closed_won"], row["quota"], row["pipeline"]
        row["forecast"] = won + row["weighted"]
        row["gap"] = None if q is None else q - won
        row["attainment"] = _ratio(won, q)
        row["coverage"] = _ratio(pipeline, q)
        row["coverage_remaining"] = None if q is None or won >= q else pipeline / (q - won)
        days = row.get("daily")
        if days is not None:
            forecasts = {
                "commit": days["commit"],
                "best_case": days["best_case"],
                "forecast": [c + w for c, w in zip(days["closed_won"], days["weighted"], strict=True)],
            }
            row["accuracy"] = {m: accuracy(won, forecasts[m]) for m in MEASURES}
    return view


def accuracy(actual: float, forecasts: Sequence[float]) -> dict[str, list[float | None]]:
    """Per day: accuracy = max(0, 1 - |actual - forecast| / actual), bias = (forecast - actual)
    / actual; None where nothing was won."""
    if not actual:
        return {"accuracy": [None] * len(forecasts), "bias": [None] * len(forecasts)}
    return {
        "accuracy": [max(0.0, 1 - abs(actual - f) / actual) for f in forecasts],
        "bias": [(f - actual) / actual for f in forecasts],
    }


# -- Prometheus -------------------------------------------------------------------------
def prometheus_samples(
    states: Sequence[ForecastState], plan: Plan, now: int, fold: Callable[[str, str], str]
) -> Iterator[tuple[str, dict[str, str], float]]:
    """The current and next fiscal quarter at the end of the clock's day, per rep, region and
    currency (raw sums, which add across workers), the reps' amount quotas and the share of
    the current quarter left (static: the same on every worker). Labels go through the
    worker's label cap; no opportunity is named."""
    today = now // DAY
    current = plan.calendar.period_of(today, "quarter")
    following = plan.calendar.period_of(current.end, "quarter")
    yield (
        "salespulse_forecast_period_left_ratio",
        {"period": "current"},
        (current.end * DAY - now) / (current.days * DAY),
    )
    for label, period in (("current", current), ("next", following)):
        query = Query(period, CELL, end_of_day(now), period.start * DAY - 1, end_of_day(now))
        rows: dict[tuple[str, str, str], dict[str, float]] = {}
        for (cell, unit), values in numbers_at(states, plan, query, today).items():
            if unit == DEALS or not any(values):  # a cell whose pipeline came and went
                continue
            rep, region = cell.split(CELL)
            key = (fold("rep", rep), fold("region", region), fold("currency", unit))
            row = rows.setdefault(key, dict.fromkeys(RAW, 0.0))
            for name, value in _amounts(values, unit).items():
                row[name] += value
        for (rep, region, currency), row in sorted(rows.items()):
            for name, value in row.items():
                labels = {"period": label, "measure": name, "rep": rep, "region": region}
                yield "salespulse_forecast_amount", {**labels, "currency": currency}, value
        for rep in sorted(plan.named("rep")):
            for unit in sorted(plan.units("rep", rep) - {DEALS}):
                quota = plan.own_quota("rep", rep, period, unit)
                if quota is not None:
                    labels = {"period": label, "rep": fold("rep", rep), "currency": fold("currency", unit)}
                    yield "salespulse_forecast_quota", labels, quota
