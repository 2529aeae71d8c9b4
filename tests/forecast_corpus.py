"""Opportunities with a life, for the forecast tests: a seeded corpus and its targets file.

Each opportunity is created, then updated a few times (stage moves, amount changes, slips
across month and quarter boundaries, pull-ins, reassignment to another rep, a category set
or dropped), and some are won or lost, by a deal keyed by a customer, so that the close
lands on another partition than the opportunity more often than not; a few updates come
after the close. Deals without an opportunity are won too. The send order is shuffled
(updates arrive before their creation, closes before the opportunity), and some events are
delivered twice (updates of any age, deals within the retention that remembers event ids).
Every time is distinct, so no tie needs an offset the test cannot know.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from salespulse.schemas.event_time import format_time
from tests.conftest import FIXED_NOW

NOW = int(FIXED_NOW.timestamp())
DAY = 86400
REPS = ("r-1", "r-2", "r-3", "r-4", "r-5", "r-6")
REGIONS = ("north", "south", "east")
STAGES = (
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Discovery call",
)
CATEGORIES = ("pipeline", "best_case", "commit", "omitted")

TEAMS: dict[str, list[dict[str, Any]]] = {
    "emea": [
        {"rep": "r-1", "from": "2025-01-01"},
        {"rep": "r-2", "from": "2025-01-01"},
        {"rep": "r-3", "from": "2025-01-01", "to": "2026-11-10"},
    ],
    "apac": [
        {"rep": "r-3", "from": "2026-11-11"},
        {"rep": "r-4"},
        {"rep": "r-5", "from": "2026-10-15"},
    ],
}


def targets(calendar: str) -> dict[str, Any]:
    """Quotas (a quarter, a quarter as three months, counts, a team whose own quota differs
    from its members', a closed quarter) and teams, in the calendar's period names."""
    if calendar == "jalali":
        quarter, months, closed = "1405-Q3", ("1405-07", "1405-08", "1405-09"), "1405-Q2"
    else:
        quarter, months, closed = "2026-Q4", ("2026-10", "2026-11", "2026-12"), "2026-Q3"
    return {
        "quotas": [
            {"rep": "r-1", "period": quarter, "amount": 150000, "currency": "USD"},
            *({"rep": "r-2", "period": m, "amount": 40000, "currency": "USD"} for m in months),
            {"rep": "r-3", "period": quarter, "amount": 90000, "currency": "USD"},
            {"rep": "r-3", "period": quarter, "amount": 20000, "currency": "EUR"},
            {"rep": "r-4", "period": quarter, "deals": 12},
            {"rep": "r-5", "period": quarter, "deals": 8},
            {"team": "emea", "period": quarter, "amount": 400000, "currency": "USD"},
            {"team": "apac", "period": quarter, "deals": 30},
            {"rep": "r-1", "period": closed, "amount": 100000, "currency": "USD"},
            {"rep": "r-2", "period": closed, "deals": 5},
        ],
        "teams": TEAMS,
    }


class _Times:
    """Distinct event times: no two events of the corpus share a second."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[int] = set()

    def pick(self, low: int, high: int) -> int:
        while True:
            t = self.rng.randrange(low, high)
            if t not in self.used:
                self.used.add(t)
                return t


def _event(n: int, kind: str, t: int, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": f"F-{n:06d}",
        "type": kind,
        "occurred_at": format_time(t),
        "source": "test",
        "data": data,
    }


def corpus(seed: int, opportunities: int = 150, now: int = NOW) -> list[dict[str, Any]]:
    """The events in send order (duplicates included)."""
    rng = random.Random(seed)
    times = _Times(rng)
    events: list[dict[str, Any]] = []
    for i in range(opportunities):
        opp = f"O-{seed}-{i:04d}"
        created = times.pick(now - 230 * DAY, now - 2 * DAY)
        state: dict[str, Any] = {
            "opportunity_id": opp,
            "rep_id": rng.choice(REPS),
            "region": rng.choice(REGIONS),
            "amount": round(rng.uniform(1000, 90000), 2),
            "currency": "EUR" if rng.random() < 0.25 else "USD",
        }
        expected = dt.datetime.fromtimestamp(created, dt.UTC).date() + dt.timedelta(
            days=rng.randrange(5, 150)
        )
        state["expected_close"] = expected.isoformat()
        _forecast_fields(rng, state)
        # Half the updates fall in the last ten weeks, where the current quarter moves.
        recent = max(created + 60, now - 70 * DAY)
        moments = sorted(
            times.pick(recent if rng.random() < 0.5 else created + 60, now - 60)
            for _ in range(rng.randrange(0, 6))
        )
        events.append(_event(len(events), "opportunity.created", created, dict(state)))
        close_at = times.pick(created + 60, now - 30) if rng.random() < 0.45 else None
        anchor = [expected]
        for t in moments:
            _change(rng, state, anchor)
            events.append(_event(len(events), "opportunity.updated", t, dict(state)))
        if close_at is not None:
            customer = f"C-{rng.randrange(10_000):05d}"
            if rng.random() < 0.65:
                deal = {
                    "deal_id": f"D-{opp}",
                    "customer_id": customer,
                    "rep_id": state["rep_id"],
                    "region": state["region"],
                    "product": "crm-pro",
                    "kind": "new",
                    "amount": state["amount"],
                    "currency": state["currency"],
                    "opportunity_id": opp,
                }
                events.append(_event(len(events), "deal.won", close_at, deal))
            else:
                lost = {
                    "deal_id": f"D-{opp}",
                    "rep_id": state["rep_id"],
                    "region": state["region"],
                    "opportunity_id": opp,
                }
                events.append(_event(len(events), "deal.lost", close_at, lost))
    for _ in range(opportunities // 6):  # deals won without an opportunity
        deal = {
            "deal_id": f"D-{seed}-{len(events)}",
            "customer_id": f"C-{rng.randrange(10_000):05d}",
            "rep_id": rng.choice(REPS),
            "region": rng.choice(REGIONS),
            "product": "crm-pro",
            "kind": rng.choice(("new", "upsell", "renewal")),
            "amount": round(rng.uniform(500, 40000), 2),
            "currency": "EUR" if rng.random() < 0.25 else "USD",
        }
        events.append(_event(len(events), "deal.won", times.pick(now - 200 * DAY, now - 60), deal))
    events.sort(key=lambda e: e["occurred_at"])
    for _ in range(len(events) // 3):  # out of order
        events.insert(rng.randrange(len(events)), events.pop(rng.randrange(len(events))))
    # Delivered twice, later. A deal won more than the 62-day retention ago is not: its id is
    # no longer remembered, so a second copy counts again (docs/semantics.md, "Duplicates").
    recent = format_time(now - 60 * DAY)
    for _ in range(len(events) // 20):
        at = rng.randrange(len(events))
        if events[at]["type"] != "deal.won" or events[at]["occurred_at"] >= recent:
            events.insert(rng.randrange(at, len(events) + 1), dict(events[at]))
    return events


def _forecast_fields(rng: random.Random, state: dict[str, Any]) -> None:
    """Stage, probability and category: each given or left to the stage map."""
    for name in ("stage", "probability", "forecast_category"):
        state.pop(name, None)
    if rng.random() < 0.85:
        state["stage"] = rng.choice(STAGES)
    if rng.random() < 0.4:
        state["probability"] = rng.choice((0, 10, 33.5, 50, 75, 90, 100))
    if rng.random() < 0.35:
        state["forecast_category"] = rng.choice(CATEGORIES)


def _change(rng: random.Random, state: dict[str, Any], anchor: list[dt.date]) -> None:
    """One change; ``anchor`` holds the last expected close, which a version may leave out."""
    roll = rng.random()
    expected = anchor[0]
    if roll < 0.35:  # a slip, often across a month or quarter
        state["expected_close"] = (expected + dt.timedelta(days=rng.randrange(10, 80))).isoformat()
    elif roll < 0.45:  # pulled in
        state["expected_close"] = (expected - dt.timedelta(days=rng.randrange(5, 40))).isoformat()
    elif roll < 0.65:
        state["amount"] = round(state["amount"] * rng.uniform(0.6, 1.5), 2)
    elif roll < 0.75:  # reassigned
        state["rep_id"] = rng.choice(REPS)
    elif roll < 0.8:
        state.pop("expected_close", None)
    else:
        _forecast_fields(rng, state)
    if "expected_close" not in state and rng.random() < 0.5:
        state["expected_close"] = (expected + dt.timedelta(days=rng.randrange(1, 30))).isoformat()
    if "expected_close" in state:
        anchor[0] = dt.date.fromisoformat(state["expected_close"])
