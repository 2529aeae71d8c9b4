"""An independent reference for every number of ``GET /forecast``, written from docs/forecast.md.

It imports nothing of the forecast's code (agents/forecast*.py): no deltas, no horizon, no
packed keys. It dedupes the deliveries by event id, then answers each question by a plain
fold over the events by event time: an opportunity's state at a moment is its newest version
(``occurred_at``, then send order, which is its partition's offset order) up to that moment
unless a close (``deal.won``/``deal.lost`` naming it) came at or before it; a row's numbers
at the end of a day are the sums over the opportunities and deals as they stood then; a
closed period's daily series is that, day after day, by brute force.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jdatetime
from babel.numbers import get_currency_precision

from tests.reference import epoch_seconds, stored, units


def scale_of(unit: str) -> int:
    """Units per major unit: deals count as they are, money in its currency's minor units (CLDR
    by babel, not the engine's table)."""
    return 1 if unit == "deals" else 10 ** get_currency_precision(unit)


DAY = 86400
MOVEMENTS = ("start", "created", "pulled_in", "pushed_out", "increased", "decreased", "won", "lost", "end")
#: vtiger's picklist, as docs/forecast.md lists the defaults.
DEFAULT_STAGES = {
    "prospecting": ("pipeline", 10),
    "qualification": ("pipeline", 20),
    "needs analysis": ("pipeline", 25),
    "value proposition": ("pipeline", 40),
    "id. decision makers": ("best_case", 50),
    "perception analysis": ("best_case", 70),
    "proposal/price quote": ("commit", 80),
    "negotiation/review": ("commit", 90),
}


def day_of(date: dt.date) -> int:
    return (date - dt.date(1970, 1, 1)).days


def date_of(day: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=day)


@dataclass(frozen=True)
class Calendar:
    """``gregorian`` (a fiscal year from ``start`` month, named by the year it starts in) or
    ``jalali`` (from 1 Farvardin)."""

    kind: str = "gregorian"
    start: int = 1

    def month(self, day: int) -> tuple[int, int]:
        date = date_of(day)
        if self.kind == "jalali":
            j = jdatetime.date.fromgregorian(date=date)
            return j.year, j.month
        return date.year, date.month

    def first_day(self, year: int, month: int) -> int:
        while month > 12:
            year, month = year + 1, month - 12
        if self.kind == "jalali":
            return day_of(jdatetime.date(year, month, 1).togregorian())
        return day_of(dt.date(year, month, 1))

    def period(self, name: str) -> Period:
        """``YYYY``, ``YYYY-Qn`` or ``YYYY-MM``: its (year, month) pairs and days."""
        year = int(name[:4])
        if len(name) == 4:
            months = [(year, self.start + i) for i in range(12)]
        elif name[5] == "Q":
            q = int(name[6])
            months = [(year, self.start + 3 * (q - 1) + i) for i in range(3)]
        else:
            months = [(year, int(name[5:7]))]
        months = [(y + (m - 1) // 12, (m - 1) % 12 + 1) for y, m in months]
        start = self.first_day(*months[0])
        end = self.first_day(months[-1][0], months[-1][1] + 1)
        return Period(name, frozenset(months), start, end)

    def parts(self, period: Period) -> list[Period]:
        name = period.name
        if len(name) == 4:
            return [self.period(f"{name}-Q{q}") for q in range(1, 5)]
        if name[5] == "Q":
            return [self.period(f"{y:04d}-{m:02d}") for y, m in sorted(period.months)]
        return []


@dataclass(frozen=True)
class Period:
    name: str
    months: frozenset[tuple[int, int]]
    start: int  # first day
    end: int  # day after the last


@dataclass
class Version:
    t: int
    seq: int
    amount: int  # units of the currency
    rep: str
    region: str
    currency: str
    category: str
    bp: int  # probability in basis points
    close_day: int | None


@dataclass
class Opportunity:
    versions: list[Version] = field(default_factory=list)
    closes: list[tuple[int, int, bool]] = field(default_factory=list)  # (t, seq, won)

    def close(self) -> tuple[int, int, bool] | None:
        return min(self.closes) if self.closes else None

    def at(self, moment: int) -> tuple[str, Version | None]:
        close = self.close()
        live = [v for v in self.versions if close is None or (v.t, v.seq) < close[:2]]
        up_to = [v for v in live if v.t <= moment]
        newest = max(up_to, key=lambda v: (v.t, v.seq)) if up_to else None
        if close is not None and close[0] <= moment:
            return ("won" if close[2] else "lost"), newest
        return ("none" if newest is None else "open"), newest

    def slips(self, calendar: Calendar, moment: int) -> int:
        close = self.close()
        live = sorted(
            (v for v in self.versions if (close is None or (v.t, v.seq) < close[:2]) and v.t <= moment),
            key=lambda v: (v.t, v.seq),
        )
        return sum(
            1
            for before, after in itertools.pairwise(live)
            if before.close_day is not None
            and after.close_day is not None
            and calendar.month(after.close_day) > calendar.month(before.close_day)
        )


@dataclass(frozen=True)
class Member:
    rep: str
    first: int | None
    last: int | None

    def on(self, day: int) -> bool:
        return (self.first is None or self.first <= day) and (self.last is None or day <= self.last)


def _date(value: Any) -> int | None:
    if value is None:
        return None
    return day_of(value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)))


class Targets:
    """Quotas, teams and stages of a targets document, read the way docs/forecast.md says."""

    def __init__(self, doc: Mapping[str, Any], calendar: Calendar) -> None:
        self.calendar = calendar
        self.quotas: dict[tuple[str, str, str, str], float] = {}
        for q in doc.get("quotas", []):
            kind = "rep" if "rep" in q else "team"
            unit = "deals" if "deals" in q else q["currency"]
            value = float(q["deals"] if "deals" in q else q["amount"])
            self.quotas[(kind, str(q[kind]), str(q["period"]), unit)] = value
        self.teams = {
            team: [Member(m["rep"], _date(m.get("from")), _date(m.get("to"))) for m in members]
            for team, members in (doc.get("teams") or {}).items()
        }
        stages = doc.get("stages")
        self.stages = (
            DEFAULT_STAGES
            if stages is None
            else {k.lower(): (v["category"], v.get("probability", 0)) for k, v in stages.items()}
        )

    def own(self, kind: str, name: str, period: Period, unit: str) -> float | None:
        for (k, n, p, u), value in self.quotas.items():
            if (k, n, u) == (kind, name, unit) and self.calendar.period(p).months == period.months:
                return value
        parts = [self.own(kind, name, part, unit) for part in self.calendar.parts(period)]
        if parts and all(p is not None for p in parts):
            return sum(p for p in parts if p is not None)
        return None

    def members(self, team: str, period: Period, unit: str) -> float | None:
        total, any_quota = 0.0, False
        for m in self.teams.get(team, []):
            days = sum(1 for d in range(period.start, period.end) if m.on(d))
            q = self.own("rep", m.rep, period, unit)
            if days and q is not None:
                total += q * days / (period.end - period.start)
                any_quota = True
        return total if any_quota else None

    def quota(self, by: str, name: str, period: Period, unit: str) -> tuple[float | None, Any]:
        if by == "rep":
            return self.own("rep", name, period, unit), None
        if by == "region":
            return None, None
        if by == "company":
            reps = {n for k, n, _, _ in self.quotas if k == "rep"}
            values = [q for r in reps if (q := self.own("rep", r, period, unit)) is not None]
            return (sum(values) if values else None), None
        own, members = self.own("team", name, period, unit), self.members(name, period, unit)
        if own is None:
            return members, None
        if members is not None and abs(own - members) >= 0.005:
            return own, {"team": own, "members": members}
        return own, None

    def names(self, by: str, rep: str, region: str, day: int) -> list[str]:
        if by == "cell":  # the Prometheus rows: (rep, region)
            return [f"{rep}\t{region}"]
        if by == "rep":
            return [rep]
        if by == "region":
            return [region]
        if by == "company":
            return [""]
        return [
            team for team, members in self.teams.items() if any(m.rep == rep and m.on(day) for m in members)
        ]

    def quota_rows(self, by: str, period: Period) -> set[tuple[str, str]]:
        if by == "region":
            return set()
        units = {u for _, _, _, u in self.quotas}
        if by == "company":
            names = [""]
        elif by == "rep":
            names = sorted({n for k, n, _, _ in self.quotas if k == "rep"})
        else:
            names = sorted(set(self.teams) | {n for k, n, _, _ in self.quotas if k == "team"})
        return {(n, u) for n in names for u in units if self.quota(by, n, period, u)[0] is not None}


class Model:
    """Every event delivered (send order), deduplicated, folded by event time."""

    def __init__(
        self,
        events: Sequence[Mapping[str, Any]],
        targets: Mapping[str, Any],
        calendar: Calendar,
        closes: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self.calendar = calendar
        self.targets = Targets(targets, calendar)
        self.opportunities: dict[str, Opportunity] = {}
        self.won: list[tuple[int, str, str, str, int]] = []  # (t, rep, region, currency, units)
        seen: set[str] = set()
        for seq, event in enumerate(events):
            if event["event_id"] in seen:
                continue
            seen.add(event["event_id"])
            t, d, kind = epoch_seconds(event["occurred_at"]), event["data"], event["type"]
            if kind in ("opportunity.created", "opportunity.updated"):
                opp = self.opportunities.setdefault(d["opportunity_id"], Opportunity())
                opp.versions.append(self._version(t, seq, d))
            elif kind in ("deal.won", "deal.lost"):
                if kind == "deal.won":
                    self.won.append(
                        (
                            t,
                            d["rep_id"],
                            d["region"],
                            stored(d["currency"]),
                            units(d["amount"], d["currency"]),
                        )
                    )
                if "opportunity_id" in d:
                    opp = self.opportunities.setdefault(d["opportunity_id"], Opportunity())
                    opp.closes.append((t, seq, kind == "deal.won"))
        for seq, event in enumerate(closes, len(events)):
            if event["event_id"] not in seen:  # a close of a deal counted elsewhere
                seen.add(event["event_id"])
                opp = self.opportunities.setdefault(event["data"]["opportunity_id"], Opportunity())
                opp.closes.append((epoch_seconds(event["occurred_at"]), seq, event["type"] == "deal.won"))

    def _version(self, t: int, seq: int, d: Mapping[str, Any]) -> Version:
        stage = d.get("stage")
        mapped = None if stage is None else self.targets.stages.get(stage.strip().lower())
        category = d.get("forecast_category")
        if category is None:
            if mapped is not None:
                category = mapped[0]
            elif stage is not None and "closed" in stage.lower():
                category = "omitted"
            else:
                category = "pipeline"
        probability = d.get("probability")
        if probability is None:
            probability = 0 if mapped is None else mapped[1]
        close = d.get("expected_close")
        return Version(
            t,
            seq,
            units(d["amount"], d["currency"]),
            d["rep_id"],
            d["region"],
            stored(d["currency"]),
            category,
            round(probability * 100),
            None if close is None else day_of(dt.date.fromisoformat(close)),
        )

    # -- the numbers --------------------------------------------------------------------
    def _in(self, v: Version | None, kind: str, period: Period) -> bool:
        return (
            kind == "open"
            and v is not None
            and v.category != "omitted"
            and v.close_day is not None
            and self.calendar.month(v.close_day) in period.months
        )

    def raw(self, period: Period, by: str, day: int) -> dict[tuple[str, str], list[int]]:
        """[won, open commit, open best case, pipeline, weighted] per row at the end of ``day``."""
        moment = (day + 1) * DAY - 1
        rows: dict[tuple[str, str], list[int]] = {}

        def cell(key: tuple[str, str]) -> list[int]:
            return rows.setdefault(key, [0, 0, 0, 0, 0])

        for opp in self.opportunities.values():
            kind, v = opp.at(moment)
            if not self._in(v, kind, period):
                continue
            assert v is not None
            for name in self.targets.names(by, v.rep, v.region, day):
                for key, amount, weight in (
                    ((name, v.currency), v.amount, v.amount * v.bp),
                    ((name, "deals"), 1, v.bp),
                ):
                    c = cell(key)
                    c[3] += amount
                    c[4] += weight
                    if v.category == "commit":
                        c[1] += amount
                    elif v.category == "best_case":
                        c[2] += amount
        for t, rep, region, currency, amount in self.won:
            if period.start * DAY <= t < period.end * DAY and t <= moment:
                for name in self.targets.names(by, rep, region, t // DAY):
                    cell((name, currency))[0] += amount
                    cell((name, "deals"))[0] += 1
        return rows

    def waterfall(self, period: Period, by: str, start: int, end: int) -> dict[tuple[str, str], list[int]]:
        rows: dict[tuple[str, str], list[int]] = {}
        for opp in self.opportunities.values():
            ks, vs = opp.at(start)
            ke, ve = opp.at(end)
            at_s: dict[tuple[str, str], int] = {}
            at_e: dict[tuple[str, str], int] = {}
            for kind, v, moment, into in ((ks, vs, start, at_s), (ke, ve, end, at_e)):
                if self._in(v, kind, period):
                    assert v is not None
                    for name in self.targets.names(by, v.rep, v.region, moment // DAY):
                        into[(name, v.currency)] = v.amount
                        into[(name, "deals")] = 1
            for key in set(at_s) | set(at_e):
                r = rows.setdefault(key, [0] * 9)
                a, b = at_s.get(key), at_e.get(key)
                if a is not None:
                    r[0] += a
                if b is not None:
                    r[8] += b
                if a is not None and b is not None:
                    r[4] += max(0, b - a)
                    r[5] += max(0, a - b)
                elif a is not None:
                    r[{"won": 6, "lost": 7}.get(ke, 3)] += a
                elif b is not None:
                    r[1 if ks == "none" else 2] += b
        return rows

    def view(
        self,
        period_name: str,
        by: str,
        as_of: int,
        start: int | None = None,
        end: int | None = None,
    ) -> dict[str, Any]:
        """What ``/forecast`` must answer; ``as_of``, ``start`` and ``end`` are instants, each
        standing for the end of its UTC day (``start`` default: just before the period)."""
        period = self.calendar.period(period_name)
        as_of = (as_of // DAY + 1) * DAY - 1
        end = as_of if end is None else (end // DAY + 1) * DAY - 1
        start = min(period.start * DAY - 1, end) if start is None else (start // DAY + 1) * DAY - 1
        closed = as_of >= period.end * DAY - 1
        raw = self.raw(period, by, as_of // DAY)
        moves = self.waterfall(period, by, start, end)
        company = self.waterfall(period, "company", start, end)
        keys = {k for k, v in raw.items() if any(v) and k[1] != "deals"}
        keys |= {k for k, v in moves.items() if any(v) and k[1] != "deals"}
        keys |= self.targets.quota_rows(by, period)
        rows = []
        for name, unit in sorted(keys, key=lambda k: (k[0], k[1] == "deals", k[1])):
            scale = scale_of(unit)
            won, commit, best, pipeline, weighted = raw.get((name, unit), [0] * 5)
            quota, mismatch = self.targets.quota(by, name, period, unit)
            row: dict[str, Any] = {} if by == "company" else {by: name}
            row.update(
                {
                    "currency": None if unit == "deals" else unit,
                    "unit": "deals" if unit == "deals" else "amount",
                    "quota": quota,
                    "closed_won": won / scale,
                    "commit": (won + commit) / scale,
                    "best_case": (won + commit + best) / scale,
                    "pipeline": pipeline / scale,
                    "weighted": weighted / scale / 10_000,
                }
            )
            if by == "team":
                row["quota_mismatch"] = mismatch
            w = row["closed_won"]
            row["forecast"] = w + row["weighted"]
            row["gap"] = None if quota is None else quota - w
            row["attainment"] = w / quota if quota else None
            row["coverage"] = row["pipeline"] / quota if quota else None
            row["coverage_remaining"] = None if quota is None or w >= quota else row["pipeline"] / (quota - w)
            row["waterfall"] = {
                m: x / scale for m, x in zip(MOVEMENTS, moves.get((name, unit), [0] * 9), strict=True)
            }
            if closed:
                row["accuracy"] = self.accuracy(period, by, name, unit, w)
            rows.append(row)
        top: dict[str, dict[str, float]] = {m: {} for m in MOVEMENTS}
        for (_, unit), values in sorted(company.items()):
            if unit != "deals":
                for m, x in zip(MOVEMENTS, values, strict=True):
                    top[m][unit] = x / scale_of(unit)
        return {
            "period": period_name,
            "start": date_of(period.start).isoformat(),
            "end": date_of(period.end - 1).isoformat(),
            "as_of": as_of,
            "from": start,
            "to": end,
            "closed": closed,
            "rows": rows,
            "waterfall": top,
            "slips": self.slipped(period, start, end),
        }

    def accuracy(self, period: Period, by: str, name: str, unit: str, actual: float) -> dict[str, Any]:
        """Accuracy and bias of commit, best case and forecast at the end of each day."""
        scale = scale_of(unit)
        series: dict[str, list[float]] = {"commit": [], "best_case": [], "forecast": []}
        for day in range(period.start, period.end):
            won, commit, best, _, weighted = self.raw(period, by, day).get((name, unit), [0] * 5)
            series["commit"].append((won + commit) / scale)
            series["best_case"].append((won + commit + best) / scale)
            series["forecast"].append(won / scale + weighted / scale / 10_000)
        out = {}
        for measure, values in series.items():
            if not actual:
                out[measure] = {"accuracy": [None] * len(values), "bias": [None] * len(values)}
            else:
                out[measure] = {
                    "accuracy": [max(0.0, 1 - abs(actual - f) / actual) for f in values],
                    "bias": [(f - actual) / actual for f in values],
                }
        return out

    def slipped(self, period: Period, start: int, end: int) -> list[dict[str, Any]]:
        out = []
        for name, opp in self.opportunities.items():
            ks, vs = opp.at(start)
            ke, ve = opp.at(end)
            if not (self._in(vs, ks, period) or self._in(ve, ke, period)):
                continue
            n = opp.slips(self.calendar, end)
            if n:
                assert ve is not None
                out.append(
                    {
                        "opportunity_id": name,
                        "rep": ve.rep,
                        "region": ve.region,
                        "currency": ve.currency,
                        "expected_close": None if ve.close_day is None else date_of(ve.close_day).isoformat(),
                        "slips": n,
                    }
                )
        return sorted(out, key=lambda s: (-s["slips"], s["opportunity_id"]))


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def differences(actual: Any, expect: Any, path: str = "") -> list[str]:
    """Where ``actual`` (a worker's or merged answer) and ``expect`` (the model's) differ;
    keys only the answer has (daily series, partitions, clock, ...) are not compared."""
    if isinstance(expect, Mapping):
        if not isinstance(actual, Mapping):
            return [f"{path}: expected a mapping, got {actual!r:.200}"]
        out = []
        for key, value in expect.items():
            if key not in actual:
                out.append(f"{path}.{key}: missing")
            else:
                out += differences(actual[key], value, f"{path}.{key}")
        return out
    if isinstance(expect, list):
        if not isinstance(actual, list) or len(actual) != len(expect):
            return [f"{path}: expected {len(expect)} items, got {actual!r:.300}"]
        return [
            d
            for i, (a, e) in enumerate(zip(actual, expect, strict=True))
            for d in differences(a, e, f"{path}[{i}]")
        ]
    if isinstance(expect, float) and isinstance(actual, int | float) and not isinstance(actual, bool):
        return [] if close(float(actual), expect) else [f"{path}: expected {expect!r}, got {actual!r}"]
    return [] if actual == expect else [f"{path}: expected {expect!r}, got {actual!r}"]


def prometheus_gauges(
    events: Sequence[Mapping[str, Any]],
    now: int,
    fold: Any,
    closes: Sequence[Mapping[str, Any]] = (),
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``salespulse_forecast_*`` of a worker without quotas, in the Gregorian calendar: the
    current and next quarter at the end of ``now``'s day per rep, region and currency. A
    worker's share also closes its opportunities by the deals in ``closes``, applied on
    other workers' partitions."""
    calendar = Calendar()
    model = Model(events, {}, calendar, closes)
    today = now // DAY
    year, month = calendar.month(today)
    current = calendar.period(f"{year:04d}-Q{(month - 1) // 3 + 1}")
    nyear, nmonth = calendar.month(current.end)
    following = calendar.period(f"{nyear:04d}-Q{(nmonth - 1) // 3 + 1}")
    gauges = {
        ("salespulse_forecast_period_left_ratio", frozenset({("period", "current")})): (
            (current.end * DAY - now) / ((current.end - current.start) * DAY)
        )
    }
    for label, period in (("current", current), ("next", following)):
        for (cell, unit), (won, commit, best, pipeline, weighted) in model.raw(period, "cell", today).items():
            if unit == "deals" or not any((won, commit, best, pipeline, weighted)):
                continue
            rep, region = cell.split("\t")
            base = {"period": label, "rep": fold("rep", rep), "region": fold("region", region)}
            base["currency"] = fold("currency", unit)
            values = {
                "closed_won": won,
                "commit": won + commit,
                "best_case": won + commit + best,
                "pipeline": pipeline,
                "weighted": weighted / 10_000,
            }
            for measure, value in values.items():
                key = ("salespulse_forecast_amount", frozenset({**base, "measure": measure}.items()))
                gauges[key] = gauges.get(key, 0.0) + value / scale_of(unit)
    return gauges
