"""What the forecast reads from the targets file (``SALESPULSE_TARGETS``): quotas, teams, stages.

- ``quotas``: per rep or team and period, an amount in a currency or a count of deals won::

      quotas:
        - {rep: r-07, period: 2026-Q4, amount: 120000, currency: USD}
        - {team: emea, period: 2026-Q4, deals: 30}

  A period without a quota of its own takes the sum of its parts when every part has one
  (the quarters of a year, the months of a quarter).
- ``teams``: members with the days they joined and left (both included; either may be
  absent)::

      teams:
        emea:
          - {rep: r-07, from: 2026-01-01}
          - {rep: r-08, from: 2026-01-01, to: 2026-06-30}

  A team's numbers are its members' on each day. Its quota is its own, or else the sum of
  its members' quotas, each prorated by the days of the period they were a member; where a
  team has its own and its members' sum differs, the answer reports the mismatch.
- ``stages``: a sales stage's forecast category and probability, used where an event
  carries no ``forecast_category`` or ``probability``. Given, it replaces the defaults
  (vtiger's picklist, :data:`DEFAULT_STAGES`). Names match without regard to case. A
  stage not in the map is ``pipeline`` at 0%, unless its name contains "closed" (Closed
  Won, Closed Lost): that is no stage to forecast from, so ``omitted``, until the deal's
  ``deal.won`` or ``deal.lost`` closes the opportunity.

Every mistake is a :class:`PlanError` naming the entry, so a worker refuses a bad file at
start-up instead of forecasting from half of it.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from salespulse.agents.forecast_calendar import FiscalCalendar, Period, epoch_day

#: Forecast categories, in the order rows add them up; ``omitted`` counts nowhere.
CATEGORIES: Final = ("pipeline", "best_case", "commit", "omitted")
PIPELINE: Final = 0
BEST_CASE: Final = 1
COMMIT: Final = 2
OMITTED: Final = 3
CATEGORY_INDEX: Final = {name: i for i, name in enumerate(CATEGORIES)}

#: Probabilities are kept in hundredths of a percent (basis points): exact to two decimals.
BASIS_POINTS: Final = 100

#: vtiger's Potentials picklist: (stage, category, probability in percent).
DEFAULT_STAGES: Final = (
    ("Prospecting", "pipeline", 10),
    ("Qualification", "pipeline", 20),
    ("Needs Analysis", "pipeline", 25),
    ("Value Proposition", "pipeline", 40),
    ("Id. Decision Makers", "best_case", 50),
    ("Perception Analysis", "best_case", 70),
    ("Proposal/Price Quote", "commit", 80),
    ("Negotiation/Review", "commit", 90),
)
#: A stage table as the state keeps it: (lower-case name, category index, basis points).
StageTable = tuple[tuple[str, int, int], ...]

_CURRENCY: Final = re.compile(r"[A-Z]{3}\Z")
#: The unit of a count quota, where an amount quota has its currency.
DEALS: Final = "deals"


class PlanError(ValueError):
    """A targets file the forecast cannot use; the message names the entry."""


def stage_table(entries: tuple[tuple[str, str, float], ...]) -> StageTable:
    return tuple(
        (name.strip().lower(), CATEGORY_INDEX[category], round(probability * BASIS_POINTS))
        for name, category, probability in entries
    )


DEFAULT_STAGE_TABLE: Final = stage_table(DEFAULT_STAGES)


@dataclass(frozen=True)
class Membership:
    """A rep's days in a team, both included; None is open-ended."""

    rep: str
    first: int | None
    last: int | None

    def on(self, day: int) -> bool:
        return (self.first is None or self.first <= day) and (self.last is None or day <= self.last)

    def days_in(self, period: Period) -> int:
        first = period.start if self.first is None else max(period.start, self.first)
        last = period.end - 1 if self.last is None else min(period.end - 1, self.last)
        return max(0, last - first + 1)


@dataclass(frozen=True)
class Plan:
    """Quotas and teams: static, the same on every worker (merges take the max, never the sum)."""

    calendar: FiscalCalendar
    #: (entity kind, name, first month, last month, unit) -> quota; unit is a currency or "deals".
    quotas: Mapping[tuple[str, str, int, int, str], float]
    teams: Mapping[str, tuple[Membership, ...]]

    def teams_of(self, rep: str, day: int) -> list[str]:
        """The teams ``rep`` is a member of on ``day``."""
        return [
            team for team, members in self.teams.items() if any(m.rep == rep and m.on(day) for m in members)
        ]

    def units(self, kind: str, name: str) -> set[str]:
        """Units (currencies, ``deals``) any quota of the entity is given in, any period."""
        return {unit for k, n, _, _, unit in self.quotas if k == kind and n == name}

    def named(self, kind: str) -> set[str]:
        """Every entity of a kind with a quota (and every team)."""
        names = {n for k, n, _, _, _ in self.quotas if k == kind}
        return names | set(self.teams) if kind == "team" else names

    def own_quota(self, kind: str, name: str, period: Period, unit: str) -> float | None:
        """The entity's quota for the period: its own, or the sum of the period's parts."""
        own = self.quotas.get((kind, name, period.first_month, period.last_month, unit))
        if own is not None:
            return own
        parts = [self.own_quota(kind, name, p, unit) for p in self.calendar.sub_periods(period)]
        if parts and all(p is not None for p in parts):
            return math.fsum(p for p in parts if p is not None)
        return None

    def members_quota(self, team: str, period: Period, unit: str) -> float | None:
        """The members' quotas, each prorated by its days in the team within the period."""
        shares = []
        for member in self.teams.get(team, ()):
            days = member.days_in(period)
            quota = self.own_quota("rep", member.rep, period, unit) if days else None
            if quota is not None:
                shares.append(quota * days / period.days)
        return math.fsum(shares) if shares else None

    def company_quota(self, period: Period, unit: str) -> float | None:
        """The sum of every rep's quota."""
        quotas = [self.own_quota("rep", rep, period, unit) for rep in self.named("rep")]
        given = [q for q in quotas if q is not None]
        return math.fsum(given) if given else None


def _day(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return epoch_day(value)
    try:
        return epoch_day(dt.date.fromisoformat(str(value)))
    except ValueError:
        raise PlanError(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from None


def _text(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str | int) or not str(value).strip():
        raise PlanError(f"{where}: {key} must be a non-empty name")
    return str(value).strip()


def _number(value: Any, where: str, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise PlanError(f"{where}: {value!r} is not a number of 0 or more")
    if high is not None and value > high:
        raise PlanError(f"{where}: {value!r} is over {high:g}")
    return float(value)


def _quota(calendar: FiscalCalendar, entry: Any, where: str) -> tuple[tuple[str, str, int, int, str], float]:
    if not isinstance(entry, Mapping):
        raise PlanError(f"{where}: expected a mapping such as {{rep: r-07, period: 2026-Q4, deals: 30}}")
    kinds = [kind for kind in ("rep", "team") if kind in entry]
    if len(kinds) != 1:
        raise PlanError(f"{where}: name exactly one of rep or team")
    kind = kinds[0]
    name = _text(entry, kind, where)
    try:
        period = calendar.period(str(entry.get("period", "")))
    except ValueError as exc:
        raise PlanError(f"{where}: {exc}") from None
    has_amount, has_deals = "amount" in entry, "deals" in entry
    if has_amount == has_deals:
        raise PlanError(f"{where}: give either amount (with currency) or deals")
    if has_deals:
        deals = entry["deals"]
        if isinstance(deals, bool) or not isinstance(deals, int) or deals < 0:
            raise PlanError(f"{where}: deals must be a whole number of 0 or more")
        return (kind, name, period.first_month, period.last_month, DEALS), float(deals)
    currency = entry.get("currency")
    if not isinstance(currency, str) or _CURRENCY.match(currency) is None:
        raise PlanError(f"{where}: currency must be a 3-letter ISO 4217 code such as USD")
    amount = _number(entry["amount"], f"{where}: amount")
    return (kind, name, period.first_month, period.last_month, currency), amount


def _members(team: str, entries: Any) -> tuple[Membership, ...]:
    where = f"teams.{team}"
    if not isinstance(entries, list):
        raise PlanError(f"{where}: expected a list such as [{{rep: r-07, from: 2026-01-01}}]")
    members = []
    for i, entry in enumerate(entries):
        at = f"{where}[{i}]"
        if not isinstance(entry, Mapping):
            raise PlanError(f"{at}: expected a mapping such as {{rep: r-07, from: 2026-01-01}}")
        first, last = _day(entry.get("from"), f"{at}.from"), _day(entry.get("to"), f"{at}.to")
        if first is not None and last is not None and last < first:
            raise PlanError(f"{at}: to is before from")
        members.append(Membership(_text(entry, "rep", at), first, last))
    return tuple(members)


def parse_stages(doc: Mapping[str, Any]) -> StageTable:
    """The ``stages`` map of a targets file, or the defaults when it has none."""
    stages = doc.get("stages")
    if stages is None:
        return DEFAULT_STAGE_TABLE
    if not isinstance(stages, Mapping):
        raise PlanError(
            "stages: expected a mapping such as {Prospecting: {category: pipeline, probability: 10}}"
        )
    entries = []
    for name, entry in stages.items():
        where = f"stages.{name}"
        if not isinstance(entry, Mapping) or entry.get("category") not in CATEGORY_INDEX:
            raise PlanError(f"{where}: category must be one of {', '.join(CATEGORIES)}")
        probability = _number(entry.get("probability", 0), f"{where}: probability", 100)
        entries.append((str(name), str(entry["category"]), probability))
    table = stage_table(tuple(entries))
    if len({name for name, _, _ in table}) != len(table):
        raise PlanError("stages: a stage is named twice (names match without regard to case)")
    return table


def parse_plan(doc: Mapping[str, Any], calendar: FiscalCalendar) -> Plan:
    """Quotas and teams of a targets file."""
    quotas: dict[tuple[str, str, int, int, str], float] = {}
    entries = doc.get("quotas") or []
    if not isinstance(entries, list):
        raise PlanError("quotas: expected a list")
    for i, entry in enumerate(entries):
        key, value = _quota(calendar, entry, f"quotas[{i}]")
        if key in quotas:
            raise PlanError(f"quotas[{i}]: a second quota for {key[0]} {key[1]}, the same period and unit")
        quotas[key] = value
    teams = doc.get("teams") or {}
    if not isinstance(teams, Mapping):
        raise PlanError("teams: expected a mapping of team names to members")
    return Plan(
        calendar, quotas, {str(team): _members(str(team), members) for team, members in teams.items()}
    )
