"""Seeded synthetic CRM event stream for demos, benchmarks and tests.

SalesPulse needs realistic traffic without a real CRM: skewed regions, lead
sources and reps; customers that are acquired and then expand, renew or go
quiet; opportunities with a life (stage moves, expected closes that slip into later
months, amounts revised, owners changed now and then) until a win or a loss names them;
NPS and eNPS answers (with small teams that stay under the anonymity
threshold), NPS comments, re-answers of the same response, and calls or emails that
follow some detractors up (others stay open); competitor prices drifting around our list prices; plus the
awkward parts of real delivery: out-of-order times, redelivered duplicates and
events too old for the rolling windows. Every event matches the schemas in
``schemas/``, and none is dated after ``now``. The stream depends only on
``GeneratorConfig`` (seed and ``now`` included), so a seed replays the same bytes; a
:class:`Generator` goes on with the same CRM (its customers, reps and open opportunities)
from one call to the next, as the demo's live traffic does after its history.
"""

from __future__ import annotations

import calendar
import time
from bisect import bisect, bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate
from random import Random
from typing import Any, Generic, TypeVar

import orjson

__all__ = ["Generator", "GeneratorConfig", "generate", "iter_ndjson"]

SOURCE = "salespulse-generator"
_HOUR = 3600
_DAY = 86400
_LATE_DAYS = (70, 120)  # older than the 62-day bucket retention
_EXISTING_SHARE = 0.4  # customers that were already customers before the stream starts
_PIPELINE_SHARE = 0.125  # opportunities already open before the stream starts, per customer
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_T = TypeVar("_T")


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. ``now=None`` means the current UTC time, truncated to seconds."""

    seed: int = 1
    now: datetime | None = None
    customers: int = 2000
    reps: int = 24
    spread_days: float = 30.0
    recent_share: float = 0.5  # share of events in the last hour before now
    duplicate_share: float = 0.0  # share of emitted events that re-deliver an earlier one
    late_share: float = 0.0  # share of events 70..120 days old
    out_of_order: bool = True
    #: Events spread evenly over ``spread_days`` (a team's steady pace), not denser near now.
    steady: bool = False
    reanswer_share: float = 0.04  # NPS answers that edit an earlier response (same response_id)

    def __post_init__(self) -> None:
        if self.customers < 1 or self.reps < 1:
            raise ValueError("customers and reps must be >= 1")
        if self.spread_days <= 0:
            raise ValueError("spread_days must be > 0")
        for name in ("recent_share", "late_share", "duplicate_share", "reanswer_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within 0..1")
        if self.recent_share + self.late_share > 1.0:
            raise ValueError("recent_share + late_share must be <= 1")
        if self.duplicate_share >= 1.0:
            raise ValueError("duplicate_share must be < 1")


class _Picker(Generic[_T]):
    """Weighted choice with precomputed cumulative weights."""

    __slots__ = ("cum", "total", "values")

    def __init__(self, weighted: Sequence[tuple[_T, float]]) -> None:
        self.values = [v for v, _ in weighted]
        self.cum = list(accumulate(w for _, w in weighted))
        self.total = self.cum[-1]

    def __call__(self, rng: Random) -> _T:
        return self.values[bisect(self.cum, rng.random() * self.total)]


_TYPES = _Picker([
    ("customer.activity", 30), ("lead.created", 22), ("opportunity.updated", 20),
    ("survey.answered", 12), ("opportunity.created", 10), ("deal.won", 9), ("deal.lost", 6),
    ("marketing.spend", 5), ("competitor.price_observed", 4), ("product.price_set", 2),
])  # fmt: skip
# vtiger's sales stages, as the forecast's default stage map has them: (name, category, %).
_STAGES = (
    ("Prospecting", "pipeline", 10), ("Qualification", "pipeline", 20),
    ("Needs Analysis", "pipeline", 25), ("Value Proposition", "pipeline", 40),
    ("Id. Decision Makers", "best_case", 50), ("Perception Analysis", "best_case", 70),
    ("Proposal/Price Quote", "commit", 80), ("Negotiation/Review", "commit", 90),
)  # fmt: skip
_OPENING_STAGE = _Picker([(0, 35), (1, 30), (2, 20), (3, 10), (4, 5)])
# What one update of an open opportunity changes: about two updates an opportunity, most
# of them stage moves, one in five a slip of the expected close into a later month.
_CHANGE = _Picker([
    ("stage", 45), ("slip", 20), ("amount", 15), ("call", 8), ("reassign", 7), ("pull_in", 5),
])  # fmt: skip
_STAGE_STEP = _Picker([(1, 70), (2, 15), (-1, 15)])
_SLIP_MONTHS = _Picker([(1, 70), (2, 20), (3, 10)])
_CALLS = ("pipeline", "best_case", "commit", "omitted")
# A CRM that records a probability or a forecast category does so for the opportunity's life.
_PROBABILITY_SHARE = 0.7
_CATEGORY_SHARE = 0.6
# Closes that name an open opportunity: about a fifth of the opportunities end won, two
# fifths lost, the rest are open when the stream ends; the other wins are renewals and
# upsells booked without one.
_WON_NAMES_SHARE = 0.25
_LOST_NAMES_SHARE = 0.8
_SHIFT = _HOUR  # at most how far an event moves to come after its opportunity's last change
# region: (weight, currency, country, city)
_REGIONS: dict[str, tuple[float, str, str, str | None]] = {
    "north": (22, "USD", "US", None), "south": (16, "EUR", "ES", None),
    "berlin": (14, "EUR", "DE", "Berlin"), "london": (12, "GBP", "GB", "London"),
    "new-york": (12, "USD", "US", "New York"), "paris": (10, "EUR", "FR", "Paris"),
    "tokyo": (8, "USD", "JP", "Tokyo"), "sao-paulo": (6, "USD", "BR", "Sao Paulo"),
    "tehran": (6, "IRR", "IR", "Tehran"),
}  # fmt: skip
_REGION = _Picker([(r, v[0]) for r, v in _REGIONS.items()])
_LEAD_SOURCE = _Picker([
    ("web", 35), ("campaign", 20), ("referral", 18), ("cold_call", 10), ("event", 8),
    ("partner", 6), ("other", 3),
])  # fmt: skip
# product: (weight, USD list price, EUR list price)
_PRODUCTS: dict[str, tuple[float, float, float]] = {
    "crm-basic": (30, 29.0, 27.0), "crm-pro": (25, 79.0, 73.0), "analytics": (15, 49.0, 45.0),
    "support-plus": (12, 19.0, 18.0), "mobile": (10, 9.0, 8.5), "ai-assist": (8, 39.0, 36.0),
}  # fmt: skip
_PRODUCT = _Picker([(p, v[0]) for p, v in _PRODUCTS.items()])
_COMPETITORS = ("acme-crm", "globex", "initech", "hooli")
_KIND = _Picker([("new", 50), ("upsell", 20), ("cross_sell", 15), ("renewal", 15)])
_KIND_MEAN = {"new": 15000.0, "upsell": 6000.0, "cross_sell": 5000.0, "renewal": 12000.0}
# Rial deals are sized as issue 32 puts a mid-sized B2B contract in Iran, about 2.5 x 10^13
# rials for a new deal: the means above times 1.7 x 10^9, in whole rials (IRR has no minor
# unit). A 30-day rial total then passes 2**53, which only exact sums keep to the rial.
_RIAL_SCALE = 1_700_000_000
_EXPANSION = _Picker([("upsell", 20), ("cross_sell", 15), ("renewal", 15)])
_ACTIVITY = _Picker([
    ("email", 35), ("call", 15), ("support", 15), ("login", 15), ("meeting", 10), ("sms", 5),
    ("webinar", 5),
])  # fmt: skip
_LOSS_REASON = _Picker([
    ("price", 30), ("competitor", 25), ("no_decision", 20), ("timing", 10), ("features", 10),
    ("budget", 5),
])  # fmt: skip
# NPS comments by category (some not in English, one with markup a page must escape).
_COMMENTS = {
    "promoter": ("Great product, the reports save us hours.", "Support answered within minutes.",
                 "Sehr zufrieden mit der Einführung.", "Onboarding was smooth."),
    "passive": ("Fine, but the mobile app is slow.", "Does the job; pricing is steep.",
                "Correct, sans plus."),
    "detractor": ("Nobody answered our support ticket for a week.", "Too expensive for what we use.",
                  "The import broke our pipeline <b>twice</b>.", "پشتیبانی خیلی کند بود.",
                  "El informe mensual tiene errores."),
}  # fmt: skip
_COMMENT_SHARE = 0.4
_FOLLOW_UP_SHARE = 0.06  # activities that follow up a waiting detractor
_FOLLOW_UP = _Picker([("call", 50), ("email", 30), ("meeting", 10), ("support", 10)])
# Score distributions for 0..10: NPS has many promoters, eNPS is more lukewarm.
_NPS = _Picker(list(enumerate((4.0, 2, 3, 3, 3, 5, 6, 10, 14, 22, 28))))
_ENPS = _Picker(list(enumerate((2.0, 1, 2, 3, 4, 8, 10, 18, 22, 18, 12))))
# Two tiny teams stay below the 5-response anonymity threshold for modest volumes.
_TEAMS = _Picker([
    ("sales-north", 25), ("sales-south", 20), ("sales-emea", 18), ("sales-apac", 15),
    ("customer-success", 12), ("marketing", 8), ("sales-ops", 1), ("enablement", 1),
])  # fmt: skip
# channel: (weight, mean amount)
_SPEND: dict[str, tuple[float, float]] = {
    "web": (30, 800.0), "campaign": (30, 2000.0), "event": (15, 5000.0), "partner": (10, 1500.0),
    "referral": (5, 300.0), "cold_call": (5, 400.0), "other": (5, 200.0),
}  # fmt: skip
_SPEND_CHANNEL = _Picker([(c, v[0]) for c, v in _SPEND.items()])
_SPEND_CURRENCY = _Picker([("USD", 60), ("EUR", 30), ("GBP", 10)])


def _lognormal(rng: Random, mean: float, sigma: float = 0.6) -> float:
    """A positive amount with the given mean, rounded to cents."""
    return round(mean * rng.lognormvariate(-sigma * sigma / 2, sigma), 2)


def _deal_amount(rng: Random, mean: float, currency: str) -> float | int:
    """A deal's amount: cents, or whole rials for ``IRR`` (one draw either way)."""
    if currency == "IRR":
        return round(mean * _RIAL_SCALE * rng.lognormvariate(-0.18, 0.6))
    return _lognormal(rng, mean)


def _in_months(day: date, months: int) -> date:
    """The same day ``months`` later (the month's last day where it is shorter)."""
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    return day.replace(year=year, month=month, day=min(day.day, calendar.monthrange(year, month)[1]))


class _Opportunity:
    """An open opportunity as its CRM holds it: its state now, and when that state was set."""

    __slots__ = ("amount", "category", "close", "id", "last", "lead", "probability", "region", "rep", "stage")

    def __init__(
        self, opportunity_id: str, rep: str, region: str, amount: float | int, close: date, ts: int
    ) -> None:
        self.id, self.rep, self.region, self.amount, self.close = opportunity_id, rep, region, amount, close
        self.last = ts
        self.lead: str | None = None
        self.stage = 0
        self.probability: int | None = None  # None: this CRM records none
        self.category: str | None = None

    def move_to(self, stage: int) -> None:
        """A new stage, and the probability and category it brings where they are recorded."""
        self.stage = stage
        _, category, probability = _STAGES[stage]
        if self.probability is not None:
            self.probability = probability
        if self.category is not None:
            self.category = category

    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "opportunity_id": self.id, "rep_id": self.rep, "region": self.region,
            "amount": self.amount, "currency": _REGIONS[self.region][1],
        }  # fmt: skip
        if self.lead is not None:
            data["lead_id"] = self.lead
        data["stage"] = _STAGES[self.stage][0]
        if self.probability is not None:
            data["probability"] = self.probability
        if self.category is not None:
            data["forecast_category"] = self.category
        data["expected_close"] = self.close.isoformat()
        return data


class _World:
    """The evolving CRM state behind the stream: customers, reps, open opportunities, prices,
    id counters."""

    def __init__(self, cfg: GeneratorConfig, rng: Random) -> None:
        self.rng = rng
        self.reanswer_share = cfg.reanswer_share
        width = max(2, len(str(cfg.reps)))
        self.reps = [f"r-{i:0{width}d}" for i in range(1, cfg.reps + 1)]
        regions = list(_REGIONS)
        # Every region gets a rep first (when there are enough), the rest follow the region mix.
        self.rep_region = {
            rep: regions[i] if i < len(regions) else _REGION(rng) for i, rep in enumerate(self.reps)
        }
        # Some reps sell a lot more than others.
        self.rep_pick = _Picker([(rep, rng.uniform(0.4, 1.6)) for rep in self.reps])
        by_region: dict[str, list[str]] = {}
        for rep, region in self.rep_region.items():
            by_region.setdefault(region, []).append(rep)
        self.customers = [f"C-{i:06d}" for i in range(1, cfg.customers + 1)]
        self.cust_region = [_REGION(rng) for _ in self.customers]
        self.cust_owner = [rng.choice(by_region.get(r, self.reps)) for r in self.cust_region]
        self.known = max(1, int(cfg.customers * _EXISTING_SHARE))  # ids [0, known) are customers
        self.counters = {"L": 0, "O": 0, "D": 0, "R": 0}
        #: The time of the event being built, so follow-ups can come after an answer; a change
        #: or close of an opportunity moves it to after the opportunity's last change.
        self.ts = 0
        #: No event is dated after it.
        self.now = 0
        #: The open opportunities by the time of their last change (``lasts``, ascending), so
        #: an event drawn at a time finds those that had not changed since.
        self.open: list[_Opportunity] = []
        self.lasts: list[int] = []
        self.responses: deque[tuple[int, dict[str, Any]]] = deque(maxlen=200)
        self.detractors: deque[tuple[int, int]] = deque(maxlen=200)  # (answer time, customer)
        self.list_price = {(p, "USD"): v[1] for p, v in _PRODUCTS.items()}
        self.list_price.update({(p, "EUR"): v[2] for p, v in _PRODUCTS.items()})
        self.walk = {(c, p): rng.uniform(0.85, 1.15) for c in _COMPETITORS for p in _PRODUCTS}
        self.builders: dict[str, Callable[[], dict[str, Any]]] = {
            "lead.created": self.lead, "opportunity.created": self.opportunity,
            "opportunity.updated": self.update, "deal.won": self.deal_won, "deal.lost": self.deal_lost,
            "customer.activity": self.activity, "survey.answered": self.survey,
            "competitor.price_observed": self.competitor_price, "product.price_set": self.price_set,
            "marketing.spend": self.spend,
        }  # fmt: skip

    def build(self, kind: str, ts: int) -> tuple[str, dict[str, Any]]:
        """The event's type and data; its time is then :attr:`ts`. An update when no
        opportunity is open yet opens one."""
        self.ts = ts
        if kind == "opportunity.updated" and not self.open:
            kind = "opportunity.created"
        return kind, self.builders[kind]()

    def next_id(self, prefix: str) -> str:
        self.counters[prefix] += 1
        return f"{prefix}-{self.counters[prefix]:06d}"

    def rep_and_region(self) -> tuple[str, str]:
        rep = self.rep_pick(self.rng)
        region = self.rep_region[rep] if self.rng.random() < 0.9 else _REGION(self.rng)
        return rep, region

    def known_customer(self) -> int:
        """A known customer, skewed so a few are very active and some go quiet."""
        return int(self.known * self.rng.random() ** 1.8)

    def lead(self) -> dict[str, Any]:
        rep, region = self.rep_and_region()
        data: dict[str, Any] = {
            "lead_id": self.next_id("L"), "rep_id": rep, "region": region,
            "source": _LEAD_SOURCE(self.rng),
        }  # fmt: skip
        if self.rng.random() < 0.6:
            _, _, country, city = _REGIONS[region]
            data["country"] = country
            if city:
                data["city"] = city
        return data

    def opportunity(self) -> dict[str, Any]:
        rng = self.rng
        rep, region = self.rep_and_region()
        close = datetime.fromtimestamp(self.ts, UTC).date() + timedelta(days=int(rng.triangular(14, 150, 40)))
        opp = _Opportunity(
            self.next_id("O"), rep, region, _deal_amount(rng, 12000.0, _REGIONS[region][1]), close, self.ts
        )
        if self.counters["L"] and rng.random() < 0.7:
            opp.lead = f"L-{rng.randint(1, self.counters['L']):06d}"
        if rng.random() < _PROBABILITY_SHARE:
            opp.probability = 0
        if rng.random() < _CATEGORY_SHARE:
            opp.category = "pipeline"
        opp.move_to(_OPENING_STAGE(rng))
        self.keep(opp)
        return opp.data()

    def open_pipeline(self, start: int) -> None:
        """The opportunities open when the stream starts, opened in the month before ``start``
        (their openings are not in the stream: its first word of each is a change or a close)."""
        for _ in range(max(1, int(len(self.customers) * _PIPELINE_SHARE))):
            self.ts = start - self.rng.randrange(1, 30 * _DAY)
            self.opportunity()

    def keep(self, opp: _Opportunity) -> None:
        at = bisect(self.lasts, opp.last)
        self.lasts.insert(at, opp.last)
        self.open.insert(at, opp)

    def take(self, at: int) -> _Opportunity:
        del self.lasts[at]
        return self.open.pop(at)

    def pick(self, *, after: bool) -> int | None:
        """The place in :attr:`open` of an opportunity, at random, last changed before
        :attr:`ts` (or at it, unless ``after``). Out of order, the time drawn may come before
        every one's last change: the event then moves to soon after the earliest, never after
        now (None when even now is not after it)."""
        eligible = (bisect_left if after else bisect)(self.lasts, self.ts)
        if eligible:
            return int(eligible * self.rng.random() ** 0.5)  # mostly those changed lately
        gap = min(self.now - self.lasts[0], _SHIFT)
        if gap <= 0 and after:
            return None
        self.ts = self.lasts[0] + (self.rng.randint(1, gap) if gap > 0 else 0)
        return 0

    def close(self, share: float) -> _Opportunity | None:
        """With probability ``share``, an open opportunity this close ends, taken out of
        :attr:`open` (one changed last before the close)."""
        if not self.open or self.rng.random() >= share:
            return None
        at = self.pick(after=True)
        return None if at is None else self.take(at)

    def update(self) -> dict[str, Any]:
        """One change of an open opportunity, as its whole new state."""
        rng = self.rng
        at = self.pick(after=False)
        assert at is not None  # an update may come at its opportunity's last change
        opp = self.take(at)
        change = _CHANGE(rng)
        if change == "reassign" and len(self.reps) > 1:
            opp.rep = rng.choice([r for r in self.reps if r != opp.rep])
        elif change == "slip":
            opp.close = _in_months(opp.close, _SLIP_MONTHS(rng))
        elif change == "pull_in":
            opp.close -= timedelta(days=rng.randint(7, 30))
        elif change == "call":  # the rep's own forecast call, and sometimes the odds with it
            opp.category = rng.choice([c for c in _CALLS if c != opp.category])
            if opp.probability is not None:
                opp.probability = max(0, min(100, opp.probability + rng.choice((-15, -10, -5, 5, 10))))
        elif change == "stage":  # a step past either end of the picklist goes one the other way
            step = _STAGE_STEP(rng)
            stage = opp.stage + step
            opp.move_to(stage if 0 <= stage < len(_STAGES) else opp.stage - (1 if step > 0 else -1))
        else:  # the amount revised (and a reassignment where there is only one rep)
            revised = opp.amount * rng.uniform(0.7, 1.35)
            opp.amount = round(revised) if _REGIONS[opp.region][1] == "IRR" else round(revised, 2)
        opp.last = self.ts
        self.keep(opp)
        return opp.data()

    def deal_won(self) -> dict[str, Any]:
        rng = self.rng
        opp = self.close(_WON_NAMES_SHARE)
        kind = _KIND(rng)
        if kind == "new" and self.known < len(self.customers):
            idx = self.known  # acquire the next prospect
            self.known += 1
            if opp is not None:  # the opportunity's owner and place are the new customer's
                self.cust_region[idx], self.cust_owner[idx] = opp.region, opp.rep
        else:
            kind = kind if kind != "new" else _EXPANSION(rng)  # nobody left to acquire
            idx = self.known_customer()
        region = self.cust_region[idx] if opp is None else opp.region
        data: dict[str, Any] = {
            "deal_id": self.next_id("D"), "customer_id": self.customers[idx],
            "rep_id": self.cust_owner[idx] if opp is None else opp.rep, "region": region,
            "product": _PRODUCT(rng), "kind": kind,
            "amount": _deal_amount(rng, _KIND_MEAN[kind], _REGIONS[region][1]) if opp is None else opp.amount,
            "currency": _REGIONS[region][1],
        }  # fmt: skip
        if rng.random() < 0.8:
            data["source"] = _LEAD_SOURCE(rng)
        if opp is not None:
            data["opportunity_id"] = opp.id
        return data

    def deal_lost(self) -> dict[str, Any]:
        opp = self.close(_LOST_NAMES_SHARE)
        rep, region = self.rep_and_region() if opp is None else (opp.rep, opp.region)
        data: dict[str, Any] = {"deal_id": self.next_id("D"), "rep_id": rep, "region": region}
        if self.rng.random() < 0.7:
            data["reason"] = _LOSS_REASON(self.rng)
        if data.get("reason") == "competitor" or self.rng.random() < 0.2:
            data["competitor"] = self.rng.choice(_COMPETITORS)
        if opp is not None:
            data["opportunity_id"] = opp.id
        return data

    def activity(self) -> dict[str, Any]:
        rng = self.rng
        if self.detractors and rng.random() < _FOLLOW_UP_SHARE:
            answered, idx = self.detractors[0]
            if answered < self.ts:  # a rep calls back a waiting detractor
                self.detractors.popleft()
                return {"customer_id": self.customers[idx], "channel": _FOLLOW_UP(rng)}
        # Mostly known customers; a few prospects (not yet customers) too.
        idx = self.known_customer() if rng.random() < 0.95 else rng.randrange(len(self.customers))
        return {"customer_id": self.customers[idx], "channel": _ACTIVITY(rng)}

    def survey(self) -> dict[str, Any]:
        rng = self.rng
        if rng.random() >= 0.8:
            return {"survey": "enps", "score": _ENPS(rng), "team": _TEAMS(rng)}
        if self.responses and rng.random() < self.reanswer_share:
            idx, earlier = rng.choice(self.responses)  # the customer edits an earlier response
            data = dict(earlier)
            data["score"] = max(0, min(10, data["score"] + rng.choice((-2, -1, 1, 2))))
            data.pop("comment", None)
        else:
            idx = self.known_customer()
            data = {
                "survey": "nps", "score": _NPS(rng), "customer_id": self.customers[idx],
                "region": self.cust_region[idx], "product": _PRODUCT(rng),
                "response_id": self.next_id("R"),
            }  # fmt: skip
            self.responses.append((idx, dict(data)))
        if rng.random() < _COMMENT_SHARE:
            category = "promoter" if data["score"] >= 9 else "passive" if data["score"] >= 7 else "detractor"
            data["comment"] = rng.choice(_COMMENTS[category])
        if data["score"] <= 6:
            self.detractors.append((self.ts, idx))
        return data

    def competitor_price(self) -> dict[str, Any]:
        rng = self.rng
        competitor, product = rng.choice(_COMPETITORS), _PRODUCT(rng)
        currency = "USD" if rng.random() < 0.55 else "EUR"
        # Random walk of the competitor/list price ratio, reflected into 0.75..1.25.
        w = self.walk[competitor, product] + rng.gauss(0.0, 0.03)
        w = 2.5 - w if w > 1.25 else 1.5 - w if w < 0.75 else w
        self.walk[competitor, product] = w
        price = round(self.list_price[product, currency] * w, 2)
        return {"competitor": competitor, "product": product, "price": price, "currency": currency}

    def price_set(self) -> dict[str, Any]:
        rng = self.rng
        product, currency = _PRODUCT(rng), "USD" if rng.random() < 0.55 else "EUR"
        if rng.random() < 0.1:  # an occasional list price revision
            base = _PRODUCTS[product][1 if currency == "USD" else 2]
            self.list_price[product, currency] = round(base * rng.uniform(0.95, 1.05), 2)
        price = self.list_price[product, currency]
        return {"product": product, "price": price, "currency": currency}

    def spend(self) -> dict[str, Any]:
        channel = _SPEND_CHANNEL(self.rng)
        amount = _lognormal(self.rng, _SPEND[channel][1], 0.8)
        return {"channel": channel, "amount": amount, "currency": _SPEND_CURRENCY(self.rng)}


def _ulid(rng: Random, epoch_ms: int) -> str:
    """A 26-character ULID: 48-bit millisecond time, 80 random bits, Crockford base32."""
    n = (epoch_ms & 0xFFFFFFFFFFFF) << 80 | rng.getrandbits(80)
    return "".join(_CROCKFORD[(n >> shift) & 31] for shift in range(125, -1, -5))


def _age(rng: Random, cfg: GeneratorConfig) -> int:
    """Seconds before now for one event."""
    u = rng.random()
    if u < cfg.late_share:
        return rng.randrange(_LATE_DAYS[0] * _DAY, _LATE_DAYS[1] * _DAY)
    if u < cfg.late_share + cfg.recent_share:
        return rng.randrange(_HOUR)
    if cfg.steady:
        return rng.randrange(max(int(cfg.spread_days * _DAY), 1))
    # Older than an hour, denser towards the present (triangular, mode at one hour ago).
    spread = max(int(cfg.spread_days * _DAY) - _HOUR, 1)
    return _HOUR + int(rng.triangular(0, spread, 0))


class Generator:
    """A seeded CRM that goes on: each call of :meth:`events` continues the same customers,
    reps, open opportunities and random stream where the last one stopped."""

    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        self.rng = Random(config.seed)
        self.world = _World(config, self.rng)
        self.started = False

    def events(self, count: int, timing: GeneratorConfig | None = None) -> Iterator[dict[str, Any]]:
        """``count`` more events, timed by ``timing`` (its ``now``, time mix and duplicates;
        its seed, customers and reps are this CRM's own), by default the CRM's config.
        Duplicates (if any) count toward ``count``."""
        config = timing or self.config
        rng, world = self.rng, self.world
        now = config.now or datetime.now(UTC).replace(microsecond=0)
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        now_s = calendar.timegm(now.utctimetuple())  # truncates sub-second parts: never after now
        world.now = now_s
        if not self.started:
            oldest = _LATE_DAYS[1] * _DAY if config.late_share else int(config.spread_days * _DAY)
            world.open_pipeline(now_s - oldest)
            self.started = True
        ages: Iterator[int] | None = None
        if not config.out_of_order:  # draw every time up front and emit oldest first
            ages = iter(sorted((_age(rng, config) for _ in range(count)), reverse=True))
        recent: deque[dict[str, Any]] = deque(maxlen=500)
        dup = config.duplicate_share
        for _ in range(count):
            # In order mode every slot takes the next age, a duplicate's slot included, so the
            # originals still follow the configured time mix.
            age = next(ages) if ages is not None else None
            if dup and recent and rng.random() < dup:
                old = rng.choice(recent)  # redelivery of an earlier event, byte for byte
                yield {**old, "data": dict(old["data"])}
                continue
            kind, data = world.build(_TYPES(rng), now_s - (age if age is not None else _age(rng, config)))
            ts = world.ts
            event: dict[str, Any] = {
                "event_id": _ulid(rng, ts * 1000 + rng.randrange(1000)),
                "type": kind,
                "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)),
                "source": SOURCE,
                "data": data,
            }
            if dup:
                recent.append({**event, "data": dict(event["data"])})  # private copy
            yield event


def generate(config: GeneratorConfig, count: int) -> Iterator[dict[str, Any]]:
    """Yield ``count`` schema-valid events of a new CRM; duplicates (if any) count toward ``count``."""
    return Generator(config).events(count)


def iter_ndjson(events: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """Encode events as NDJSON lines (orjson, one trailing newline each)."""
    dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    for event in events:
        yield dumps(event, option=option)
