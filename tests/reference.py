"""An independent, plain-Python reference for every number SalesPulse exports.

Written from ``docs/semantics.md`` alone: it imports nothing from ``agents/`` or
``streams/engine.py``. It replays the events in send order, works out where each message
lands (topic, partition by Kafka's murmur2 partitioner, offset in send order per
partition) and then counts by brute force: no buckets, no running sums, no incremental
at-risk bookkeeping. What it returns is what one worker owning every partition must
export at the given clock:

- ``Expected.gauges``: every KPI gauge sample of ``/metrics``, zero-valued series included;
- ``Expected.events`` / ``late`` / ``duplicates`` / ``comments_truncated``: the event counters;
- ``Expected.cases``: every detractor case (docs/semantics.md, "Detractor follow-up"), by customer;
- ``Expected.windows``: the ``/kpis`` "windows" summary (headline numbers and ratios);
- ``Expected.headline(window)``: the headline numbers counted straight from the events,
  a second path that does not go through the gauges.

Money is exact (docs/semantics.md, "Money"): amounts are decimals from the event's JSON
text, in minor units by CLDR's digits (read from babel here, not from ``agents/money.py``),
and their reporting-currency values are summed event by event at the rate of each event's
UTC day, not per bucket.

Label folding (over ``label_cap`` distinct values per label) is applied in send order; a
worker folds in its processing order, so the two only agree when no label exceeds the cap
(``Expected.folded`` says whether any value was folded).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

from babel.numbers import get_currency_precision
from kafka.partitioner.default import murmur2

from salespulse.schemas.topics import ROUTES, route

EVENT_TYPES = tuple(sorted(ROUTES))
WINDOWS = ("1h", "24h", "7d", "30d")
WINDOW_SECONDS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
HOUR_WINDOW_SIZE = {"24h": 24, "7d": 168, "30d": 720}
RETENTION_HOURS = 1488  # hour buckets ch-1487 .. ch (62 days)
OUTCOME_MEMORY_HOURS = 3 * 365 * 24  # SALESPULSE_OUTCOME_MEMORY's default: 3 years of 365 days
AT_RISK_MINUTES = 43200  # 30 days
MIN_ANONYMOUS = 5
CATEGORIES = ("promoter", "passive", "detractor")
DEAL_KINDS = ("new", "upsell", "cross_sell", "renewal")
COMMENT_CHARS = 2000
DETRACTOR_SLA = 24 * 3600
HUMAN_CHANNELS = ("call", "email", "meeting", "support")
STAGES = ("opened", "followed_up", "followed_up_in_target")

#: Gauge families whose values are floats compared with a tolerance (money from /metrics).
AMOUNT_METRICS = frozenset(
    {
        "salespulse_marketing_spend",
        "salespulse_sales_amount",
        "salespulse_expansion_amount",
        "salespulse_competitor_price",
        "salespulse_list_price",
        "salespulse_lead_target",
        "salespulse_forecast_amount",
        "salespulse_forecast_quota",
    }
)
#: Codes stored as rials, and the factor (docs/events.md).
RIAL_CODES = {"IRT": 10, "IRHR": 1_000, "IRHT": 10_000}
SECONDS_A_DAY = 86400

GaugeKey = tuple[str, frozenset[tuple[str, str]]]


def epoch_seconds(occurred_at: str) -> int:
    """RFC 3339 to whole epoch seconds (truncated)."""
    parsed = datetime.fromisoformat(occurred_at.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"no zone in {occurred_at!r}")
    return math.floor(parsed.timestamp())


def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner for a keyed message (kafka-python, Java client)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def category(score: int) -> str:
    if score >= 9:
        return "promoter"
    if score >= 7:
        return "passive"
    return "detractor"


def exact(value: Any) -> Decimal:
    """An event's number as the decimal its JSON text holds (orjson writes a float's shortest
    repr, which ``str`` gives too)."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


def stored(currency: str) -> str:
    return "IRR" if currency in RIAL_CODES else currency


def units(amount: Any, currency: str, price: bool = False) -> int:
    """Integer minor units (a millionth of the major unit for prices) of the stored currency,
    rounded half to even."""
    places = 6 if price else get_currency_precision(stored(currency))
    with localcontext() as ctx:
        ctx.prec = 100
        value = exact(amount) * RIAL_CODES.get(currency, 1) * Decimal(10) ** places
        return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def major(minor: int, currency: str, price: bool = False) -> Decimal:
    places = 6 if price else get_currency_precision(currency)
    with localcontext() as ctx:
        ctx.prec = 100
        return Decimal(minor) / Decimal(10) ** places


@dataclass
class Fx:
    """A reporting currency and dated rates: currency -> {UTC day number: rate}."""

    currency: str
    rates: dict[str, dict[int, Decimal]] = field(default_factory=dict)

    def rate(self, currency: str, day: int) -> Decimal | None:
        if currency == self.currency:
            return Decimal(1)
        dated = [d for d in self.rates.get(currency, {}) if d <= day]
        return self.rates[currency][max(dated)] if dated else None


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def nps_score(promoters: float, detractors: float, responses: float) -> float | None:
    if not responses:
        return None
    return round(100.0 * (promoters - detractors) / responses, 6)


@dataclass(frozen=True)
class Delivery:
    """One message as the worker sees it."""

    index: int  # position in the send order
    event: dict[str, Any]
    topic: str
    partition: int
    offset: int
    t: int
    late: bool
    #: The same event id applied before, or the same deal outcome (its win, its loss).
    duplicate: bool
    #: A survey answer whose response_id an earlier answer already carried.
    repeat: bool = False

    @property
    def type(self) -> str:
        return str(self.event["type"])

    @property
    def data(self) -> dict[str, Any]:
        return dict(self.event["data"])

    @property
    def counted(self) -> bool:
        """Counted in windowed numbers: neither late, a duplicate nor a repeated response."""
        return not self.late and not self.duplicate and not self.repeat


class Clock:
    """The clock ``T`` and the window rules of docs/semantics.md."""

    def __init__(self, now: int, outcome_hours: int = OUTCOME_MEMORY_HOURS) -> None:
        self.now = now
        self.cm = now // 60
        self.ch = now // 3600
        self.oldest_hour = self.ch - RETENTION_HOURS + 1
        self.remembered_hour = self.ch - outcome_hours + 1

    def is_late(self, t: int) -> bool:
        return t // 3600 < self.oldest_hour

    def is_forgotten(self, t: int) -> bool:
        """Whether an outcome at ``t`` is past the outcome memory, ``SALESPULSE_OUTCOME_MEMORY``."""
        return t // 3600 < self.remembered_hour

    def minute_in(self, minute: int, window: str) -> bool:
        """Whether an event in minute bucket ``minute`` falls in ``window``."""
        if window == "1h":
            return self.cm - 59 <= minute <= self.cm
        hour = (minute * 60) // 3600
        return self.ch - HOUR_WINDOW_SIZE[window] + 1 <= hour <= self.ch

    def holds(self, t: int, window: str) -> bool:
        return self.minute_in(t // 60, window)


def outcome(event: dict[str, Any]) -> tuple[str, str] | None:
    """What counts once for life: a deal's win, a deal's loss, a survey response."""
    data = event["data"]
    if event["type"] in ("deal.won", "deal.lost"):
        return event["type"], data["deal_id"]
    if event["type"] == "survey.answered" and data.get("response_id") is not None:
        return "response", data["response_id"]
    return None


def deliveries(events: Iterable[dict[str, Any]], clock: Clock, partitions: int) -> list[Delivery]:
    """Place every event (send order) and decide late / duplicate for each delivery."""
    next_offset: dict[tuple[str, int], int] = defaultdict(int)
    applied: dict[tuple[str, int], set[str]] = defaultdict(set)
    outcomes: dict[tuple[str, int], set[tuple[str, str]]] = defaultdict(set)
    out = []
    for index, event in enumerate(events):
        topic, key = route(event)
        partition = partition_of(key, partitions)
        offset = next_offset[topic, partition]
        next_offset[topic, partition] += 1
        t = epoch_seconds(event["occurred_at"])
        late = clock.is_late(t)
        # An id seen within retention is a duplicate whatever this copy's occurred_at; a late
        # copy is only compared, since its own time is already out of retention.
        seen = applied[topic, partition]
        duplicate = event["event_id"] in seen
        if not late:
            seen.add(event["event_id"])
        # A deal's win and its loss count once each, whatever another copy's event id and
        # time: it is a duplicate. A response counts once: another answer with its id is not
        # counted in windows again. Both are remembered, late or not, for the outcome memory.
        once = outcome(event)
        repeat = False
        if once is not None and not duplicate:
            remembered = outcomes[topic, partition]
            if once[0] == "response":
                repeat = once in remembered
            else:
                duplicate = once in remembered
            if not clock.is_forgotten(t):
                remembered.add(once)
        out.append(Delivery(index, event, topic, partition, offset, t, late, duplicate, repeat))
    return out


def forwarded_to(delivery: Delivery, partitions: int) -> int | None:
    """The crm.leads partition a deal that names its opportunity closes it on, for a deal
    applied where it was sent (a duplicate is forwarded no further)."""
    opportunity = delivery.event["data"].get("opportunity_id")
    if delivery.duplicate or opportunity is None or not delivery.type.startswith("deal."):
        return None
    return partition_of(opportunity.encode(), partitions)


@dataclass
class Fold:
    """At most ``cap`` distinct values per label name; the rest become ``other``."""

    cap: int
    values: dict[str, set[str]] = field(default_factory=dict)
    folded: bool = False

    def __call__(self, label: str, value: str) -> str:
        seen = self.values.setdefault(label, set())
        if value in seen:
            return value
        if len(seen) < self.cap:
            seen.add(value)
            return value
        self.folded = True
        return "other"


class Windowed:
    """A windowed gauge family: sums per (base labels, column labels, window)."""

    def __init__(self, name: str, columns: list[dict[str, str]], money: bool = False) -> None:
        self.name = name
        self.columns = columns
        self.money = money
        self.seen: list[tuple[tuple[str, str], ...]] = []
        self._seen_set: set[tuple[tuple[str, str], ...]] = set()
        self.sums: Counter[tuple[tuple[tuple[str, str], ...], int, str]] = Counter()

    def add(self, clock: Clock, t: int, base: dict[str, str], value: int = 1, column: int = 0) -> None:
        key = tuple(sorted(base.items()))
        if key not in self._seen_set:  # a retained bucket: the series stays exported
            self._seen_set.add(key)
            self.seen.append(key)
        for window in WINDOWS:
            if clock.holds(t, window):
                self.sums[key, column, window] += value

    def gauges(self) -> Iterable[tuple[GaugeKey, float]]:
        for base in self.seen:
            for window in WINDOWS:
                for column, extra in enumerate(self.columns):
                    labels = frozenset({**dict(base), **extra, "window": window}.items())
                    total = self.sums[base, column, window]
                    yield (
                        (self.name, labels),
                        major(total, dict(base)["currency"]) if self.money else float(total),
                    )


@dataclass
class Expected:
    """What one worker owning every partition exports for the given events and clock."""

    clock: Clock
    deliveries: list[Delivery]
    gauges: dict[GaugeKey, float]
    events: dict[str, int]
    late: dict[str, int]
    duplicates: int
    folded: bool
    targets: dict[tuple[str, str], float]
    windows: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    comments_truncated: int = 0
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)

    def listed(self, status: str = "open", window: str = "30d") -> list[dict[str, Any]]:
        """``GET /detractors``: cases answered in ``window`` (``all``: within retention)."""
        clock = self.clock
        out = []
        for case in self.cases.values():
            if window != "all" and not clock.holds(case["t"], window):
                continue
            if status == "all" or (status == "open") == (case["followed_up_at"] is None):
                out.append({k: v for k, v in case.items() if k != "t"})
        return sorted(
            out, key=lambda c: (c["followed_up_at"] is not None, c["answered_at"], c["customer_id"])
        )

    # -- the headline numbers, counted straight from the events ----------------------
    def headline(self, window: str) -> dict[str, Any]:
        """Headline numbers for ``window`` without going through the gauges."""
        clock = self.clock
        counted = [d for d in self.deliveries if d.counted and clock.holds(d.t, window)]
        kinds = Counter(d.type for d in counted)
        won = [d.data for d in counted if d.type == "deal.won"]
        won_kinds = Counter(w["kind"] for w in won)
        acquired = won_kinds["new"]
        enps = Counter(
            category(d.data["score"])
            for d in counted
            if d.type == "survey.answered" and d.data["survey"] == "enps"
        )
        nps = Counter(
            category(d.data["score"])
            for d in counted
            if d.type == "survey.answered" and d.data["survey"] == "nps"
        )
        enps_n = sum(enps.values())
        if enps_n < MIN_ANONYMOUS:  # not exported: the worker shows no responses at all
            enps = Counter()
            enps_n = 0
        nps_n = sum(nps.values())
        latest_activity = self._latest_activity_minutes()
        engaged = sum(1 for m in latest_activity.values() if clock.minute_in(m, window))
        known, at_risk = self._known_and_at_risk()
        expansion = won_kinds["upsell"] + won_kinds["cross_sell"]
        lost = kinds["deal.lost"]
        return {
            "leads": float(kinds["lead.created"]),
            "opportunities": float(kinds["opportunity.created"]),
            "customers_acquired": float(acquired),
            "conversion": ratio(acquired, kinds["lead.created"]),
            "deals_won": float(len(won)),
            "deals_lost": float(lost),
            "win_rate": ratio(len(won), len(won) + lost),
            "customers_engaged": float(engaged),
            "activities": float(kinds["customer.activity"]),
            "customers_known": float(known),
            "customers_at_risk": float(at_risk),
            "enps_responses": float(enps_n),
            "enps": nps_score(enps["promoter"], enps["detractor"], enps_n),
            "nps_responses": float(nps_n),
            "nps": nps_score(nps["promoter"], nps["detractor"], nps_n),
            "upsell": float(won_kinds["upsell"]),
            "cross_sell": float(won_kinds["cross_sell"]),
            "expansion_rate": ratio(expansion, len(won)),
            "sales_amount": {
                cur: major(
                    sum(units(w["amount"], w["currency"]) for w in won if stored(w["currency"]) == cur), cur
                )
                for cur in sorted({stored(w["currency"]) for w in won})
            },
            "price_index": self._price_index(),
        }

    def _latest_activity_minutes(self) -> dict[str, int]:
        latest: dict[str, int] = {}
        for d in self.deliveries:
            if d.type == "customer.activity" and not d.duplicate:
                c = d.data["customer_id"]
                latest[c] = max(latest.get(c, -1), d.t // 60)
        return latest

    def _known_and_at_risk(self) -> tuple[int, int]:
        deal: dict[str, int] = {}
        for d in self.deliveries:
            if d.type == "deal.won" and not d.duplicate:
                c = d.data["customer_id"]
                deal[c] = max(deal.get(c, -1), d.t // 60)
        activity = self._latest_activity_minutes()
        threshold = self.clock.cm - AT_RISK_MINUTES
        at_risk = sum(1 for c, m in deal.items() if max(m, activity.get(c, -1)) < threshold)
        return len(deal), at_risk

    def _latest_prices(self, kind: str, key_fields: tuple[str, ...]) -> dict[tuple[str, ...], float]:
        best: dict[tuple[str, ...], tuple[int, int, float]] = {}
        for d in self.deliveries:
            if d.type != kind or d.duplicate:
                continue
            data = d.data
            key = tuple(data[f] for f in key_fields)
            old = best.get(key)
            if old is None or (d.t, d.offset) > old[:2]:
                best[key] = (d.t, d.offset, data["price"])
        return {k: v[2] for k, v in best.items()}

    def _price_index(self) -> dict[tuple[str, str, str], float | None]:
        ours = self._latest_prices("product.price_set", ("product", "currency"))
        theirs = self._latest_prices("competitor.price_observed", ("product", "competitor", "currency"))
        out: dict[tuple[str, str, str], float | None] = {}
        for (product, competitor, currency), price in sorted(theirs.items()):
            list_price = ours.get((product, currency))
            out[product, competitor, currency] = None if list_price is None else ratio(list_price, price)
        return out

    # -- convenience -----------------------------------------------------------------
    def gauge(self, name: str, **labels: str) -> float | None:
        return self.gauges.get((name, frozenset(labels.items())))

    def series(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        return {labels: v for (n, labels), v in self.gauges.items() if n == name}

    @property
    def valid_deliveries(self) -> int:
        return len(self.deliveries)


def format_time(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def detractor_cases(
    dels: list[Delivery], clock: Clock, sla: int, human: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """Every customer's case, straight from the definitions: latest answer a detractor within
    retention; followed up by the earliest later human activity; owner from the latest deal."""
    applied = [d for d in dels if not d.duplicate]
    latest: dict[str, Delivery] = {}
    owner: dict[str, Delivery] = {}
    for d in applied:
        if d.type == "survey.answered" and d.data["survey"] == "nps":
            c = d.data["customer_id"]
            if c not in latest or (d.t, d.offset) > (latest[c].t, latest[c].offset):
                latest[c] = d
        elif d.type == "deal.won":
            c = d.data["customer_id"]
            if c not in owner or (d.t, d.offset) > (owner[c].t, owner[c].offset):
                owner[c] = d
    cases = {}
    for c, answer in latest.items():
        data = answer.data
        if data["score"] > 6 or clock.is_late(answer.t):
            continue
        follow = min(
            (
                (d.t, d.offset, d.data["channel"])
                for d in applied
                if d.type == "customer.activity"
                and d.data["customer_id"] == c
                and d.data["channel"] in human
                and d.t > answer.t
            ),
            default=None,
        )
        end = clock.now if follow is None else follow[0]
        comment = data.get("comment")
        cases[c] = {
            "customer_id": c,
            "score": data["score"],
            "comment": None if comment is None else comment[:COMMENT_CHARS],
            "response_id": data.get("response_id"),
            "answered_at": format_time(answer.t),
            "region": data["region"],
            "product": data["product"],
            "owner": owner[c].data["rep_id"] if c in owner else "unassigned",
            "followed_up_at": None if follow is None else format_time(follow[0]),
            "channel": None if follow is None else follow[2],
            "hours_open": round((end - answer.t) / 3600, 2),
            "t": answer.t,
        }
    return cases


def expected(
    events: Iterable[dict[str, Any]],
    clock: int,
    partitions: int = 4,
    label_cap: int = 50,
    targets: Mapping[tuple[str, str], float] | None = None,
    sla: int = DETRACTOR_SLA,
    human_channels: Iterable[str] = HUMAN_CHANNELS,
    outcome_hours: int = OUTCOME_MEMORY_HOURS,
    fx: Fx | None = None,
    owned: Iterable[int] | None = None,
) -> Expected:
    """Replay ``events`` (valid ones, in send order) at clock ``clock`` (epoch seconds), with
    ``fx`` as the reporting currency and its rates, if any. With ``owned``, the share of a
    worker that owns those partitions: their deliveries, and the closes forwarded to them."""
    clk = Clock(clock, outcome_hours)
    dels = deliveries(events, clk, partitions)
    closes: list[dict[str, Any]] = []
    if owned is not None:
        share = set(owned)
        closes = [d.event for d in dels if (to := forwarded_to(d, partitions)) is not None and to in share]
        dels = [d for d in dels if d.partition in share]
    fold = Fold(label_cap)
    targets = dict(targets or {})

    leads = Windowed("salespulse_leads", [{}])
    opportunities = Windowed("salespulse_opportunities", [{}])
    acquired = Windowed("salespulse_customers_acquired", [{}])
    spend = Windowed("salespulse_marketing_spend", [{}], money=True)
    won = Windowed("salespulse_deals_won", [{"kind": k} for k in DEAL_KINDS])
    lost = Windowed("salespulse_deals_lost", [{}])
    amount = Windowed("salespulse_sales_amount", [{}], money=True)
    activities = Windowed("salespulse_customer_activities", [{}])
    expansion = Windowed("salespulse_expansion_deals", [{"kind": k} for k in ("upsell", "cross_sell", "all")])
    expansion_amount = Windowed(
        "salespulse_expansion_amount", [{"kind": "upsell"}, {"kind": "cross_sell"}], money=True
    )
    #: Money counted in windows: (type or "expansion", t, labels but currency, currency, units).
    money: list[tuple[str, int, dict[str, str], str, int]] = []
    nps = Windowed("salespulse_nps_responses", [{"category": c} for c in CATEGORIES])
    enps: Counter[tuple[str, str, str]] = Counter()  # (window, team, category)

    competitor: dict[tuple[str, str, str], tuple[int, int, int]] = {}
    list_price: dict[tuple[str, str], tuple[int, int, int]] = {}
    last_activity: dict[str, int] = {}  # customer -> latest minute, any age
    last_deal: dict[str, int] = {}  # known customer -> latest deal.won minute, any age
    nps_latest: dict[str, tuple[int, int, int]] = {}  # customer -> (t, offset, score)

    events_total: Counter[str] = Counter()
    late_total: Counter[str] = Counter()
    duplicates = 0

    for d in dels:
        if d.duplicate:
            duplicates += 1
            continue
        events_total[d.type] += 1
        if d.late:
            late_total[d.type] += 1
        data, t, kind = d.data, d.t, d.type
        # Latest-value state: any age.
        if kind == "customer.activity":
            c = data["customer_id"]
            last_activity[c] = max(last_activity.get(c, -1), t // 60)
        elif kind == "deal.won":
            c = data["customer_id"]
            last_deal[c] = max(last_deal.get(c, -1), t // 60)
        elif kind == "survey.answered" and data["survey"] == "nps":
            c = data["customer_id"]
            old = nps_latest.get(c)
            if old is None or (t, d.offset) > old[:2]:
                nps_latest[c] = (t, d.offset, data["score"])
        elif kind == "competitor.price_observed":
            ck = (
                fold("product", data["product"]),
                fold("competitor", data["competitor"]),
                fold("currency", stored(data["currency"])),
            )
            old_price = competitor.get(ck)
            if old_price is None or (t, d.offset) > old_price[:2]:
                competitor[ck] = (t, d.offset, units(data["price"], data["currency"], price=True))
        elif kind == "product.price_set":
            lk = (fold("product", data["product"]), fold("currency", stored(data["currency"])))
            old_list = list_price.get(lk)
            if old_list is None or (t, d.offset) > old_list[:2]:
                list_price[lk] = (t, d.offset, units(data["price"], data["currency"], price=True))
        if not d.counted:
            continue
        # Windowed numbers: neither late, a duplicate nor a repeated response.
        if kind == "lead.created":
            labels = {
                "region": fold("region", data["region"]),
                "source": fold("source", data["source"]),
                "rep": fold("rep", data["rep_id"]),
            }
            leads.add(clk, t, labels)
        elif kind == "opportunity.created":
            opportunities.add(
                clk, t, {"region": fold("region", data["region"]), "rep": fold("rep", data["rep_id"])}
            )
        elif kind == "marketing.spend":
            labels = {
                "channel": fold("channel", data["channel"]),
                "currency": fold("currency", stored(data["currency"])),
            }
            spend.add(clk, t, labels, units(data["amount"], data["currency"]))
            minor = units(data["amount"], data["currency"])
            money.append((kind, t, {"channel": labels["channel"]}, labels["currency"], minor))
        elif kind == "deal.lost":
            lost.add(clk, t, {"region": fold("region", data["region"])})
        elif kind == "deal.won":
            region = fold("region", data["region"])
            if data["kind"] == "new":
                labels = {
                    "region": region,
                    "source": fold("source", data.get("source") or "unknown"),
                    "rep": fold("rep", data["rep_id"]),
                }
                acquired.add(clk, t, labels)
            won.add(clk, t, {"region": region}, 1, DEAL_KINDS.index(data["kind"]))
            currency = fold("currency", stored(data["currency"]))
            minor = units(data["amount"], data["currency"])
            amount.add(clk, t, {"region": region, "currency": currency}, minor)
            money.append((kind, t, {"region": region}, currency, minor))
            expansion.add(clk, t, {}, 1, 2)
            if data["kind"] in ("upsell", "cross_sell"):
                column = 0 if data["kind"] == "upsell" else 1
                expansion.add(clk, t, {}, 1, column)
                expansion_amount.add(clk, t, {"currency": currency}, minor, column)
                money.append(("expansion", t, {"kind": data["kind"]}, currency, minor))
        elif kind == "customer.activity":
            activities.add(clk, t, {"channel": fold("channel", data["channel"])})
        elif kind == "survey.answered":
            cat = category(data["score"])
            if data["survey"] == "nps":
                labels = {
                    "region": fold("region", data["region"]),
                    "product": fold("product", data["product"]),
                }
                nps.add(clk, t, labels, 1, CATEGORIES.index(cat))
            else:
                team = fold("team", data["team"])
                for window in WINDOWS:
                    if clk.holds(t, window):
                        enps[window, team, cat] += 1

    gauges: dict[GaugeKey, float] = {}

    def put(name: str, labels: Mapping[str, str], value: float) -> None:
        key = (name, frozenset(labels.items()))
        assert key not in gauges, key
        gauges[key] = value

    for family in (
        leads,
        opportunities,
        acquired,
        spend,
        won,
        lost,
        amount,
        activities,
        expansion,
        expansion_amount,
        nps,
    ):
        for key, value in family.gauges():
            assert key not in gauges, key
            gauges[key] = value
    for (region, rep), monthly in targets.items():
        for window in WINDOWS:
            put(
                "salespulse_lead_target",
                {"region": region, "rep": rep, "window": window},
                monthly * WINDOW_SECONDS[window] / WINDOW_SECONDS["30d"],
            )
    for (product, competitor_name, currency), (_, _, price) in competitor.items():
        labels = {"product": product, "competitor": competitor_name, "currency": currency}
        put("salespulse_competitor_price", labels, major(price, currency, price=True))
        rate = None if fx is None else fx.rate(currency, clk.now // SECONDS_A_DAY)
        if rate is not None:
            put("salespulse_competitor_price_reporting", labels, major(price, currency, price=True) * rate)
    for (product, currency), (_, _, price) in list_price.items():
        labels = {"product": product, "currency": currency}
        put("salespulse_list_price", labels, major(price, currency, price=True))
        rate = None if fx is None else fx.rate(currency, clk.now // SECONDS_A_DAY)
        if rate is not None:
            put("salespulse_list_price_reporting", labels, major(price, currency, price=True) * rate)
    if fx is not None:
        for key, value in reporting_gauges(money, clk, fx, spend, amount, expansion_amount).items():
            put(key[0], dict(key[1]), value)
    for window in WINDOWS:
        engaged = sum(1 for m in last_activity.values() if clk.minute_in(m, window))
        put("salespulse_customers_engaged", {"window": window}, float(engaged))
    put("salespulse_customers_known", {}, float(len(last_deal)))
    threshold = clk.cm - AT_RISK_MINUTES
    at_risk = sum(1 for c, m in last_deal.items() if max(m, last_activity.get(c, -1)) < threshold)
    put("salespulse_customers_at_risk", {}, float(at_risk))
    for window in WINDOWS:
        org = {cat: sum(n for (w, _, c), n in enps.items() if w == window and c == cat) for cat in CATEGORIES}
        if sum(org.values()) >= MIN_ANONYMOUS:
            for cat in CATEGORIES:
                put("salespulse_enps_responses", {"window": window, "team": "all", "category": cat}, org[cat])
    teams = sorted({team for (w, team, _) in enps if w == "30d"})
    for team in teams:
        cells = {cat: enps["30d", team, cat] for cat in CATEGORIES}
        if team != "all" and sum(cells.values()) >= MIN_ANONYMOUS:
            for cat in CATEGORIES:
                put(
                    "salespulse_enps_responses",
                    {"window": "30d", "team": team, "category": cat},
                    float(cells[cat]),
                )
    latest_categories = Counter(category(score) for _, _, score in nps_latest.values())
    for cat in CATEGORIES:
        put("salespulse_nps_customers", {"category": cat}, float(latest_categories[cat]))
    cases = detractor_cases(dels, clk, sla, tuple(human_channels))
    open_cases: Counter[tuple[str, str]] = Counter()
    for case in cases.values():
        label = (fold("region", case["region"]), fold("owner", case["owner"]))
        open_cases[label] += case["followed_up_at"] is None
    for (region, owner), n in open_cases.items():
        put("salespulse_detractors_open", {"region": region, "owner": owner}, float(n))
    overdue = sum(1 for c in cases.values() if c["followed_up_at"] is None and clk.now - c["t"] > sla)
    put("salespulse_detractors_overdue", {}, float(overdue))
    for window in WINDOWS:
        cohort = [c for c in cases.values() if clk.holds(c["t"], window)]
        followed = [c for c in cohort if c["followed_up_at"] is not None]
        in_target = [c for c in followed if epoch_seconds(c["followed_up_at"]) - c["t"] <= sla]
        for stage, n in zip(STAGES, (cohort, followed, in_target), strict=True):
            put("salespulse_detractor_cases", {"window": window, "stage": stage}, float(len(n)))

    from tests.forecast_reference import prometheus_gauges  # it builds on this module

    applied = [d.event for d in dels if not d.duplicate]
    for key, value in prometheus_gauges(applied, clk.now, fold, closes).items():
        put(key[0], dict(key[1]), value)

    result = Expected(
        clock=clk,
        deliveries=dels,
        gauges=gauges,
        events={kind: events_total[kind] for kind in EVENT_TYPES},
        late={kind: late_total[kind] for kind in EVENT_TYPES},
        duplicates=duplicates,
        folded=fold.folded,
        targets=targets,
        comments_truncated=sum(
            1
            for d in dels
            if not d.duplicate
            and d.type == "survey.answered"
            and len(d.data.get("comment", "")) > COMMENT_CHARS
        ),
        cases=cases,
    )
    result.windows = {w: summarize(gauges, w) for w in WINDOWS}
    return result


def window_start(clock: Clock, window: str) -> int:
    if window == "1h":
        return (clock.cm - 59) * 60
    return (clock.ch - HOUR_WINDOW_SIZE[window] + 1) * 3600


def reporting_gauges(
    money: list[tuple[str, int, dict[str, str], str, int]],
    clock: Clock,
    fx: Fx,
    spend: Windowed,
    amount: Windowed,
    expansion_amount: Windowed,
) -> dict[GaugeKey, Any]:
    """The reporting-currency gauges, event by event: each amount at its own day's rate."""
    out: dict[GaugeKey, Any] = {}

    def key(name: str, labels: Mapping[str, str]) -> GaugeKey:
        return name, frozenset(labels.items())

    def put(name: str, labels: Mapping[str, str], value: Any) -> None:
        out[key(name, labels)] = out.get(key(name, labels), Decimal(0)) + value

    out[key("salespulse_reporting_currency_info", {"currency": fx.currency})] = 1.0
    families = {
        "deal.won": ("salespulse_sales_amount_reporting", amount, "region"),
        "marketing.spend": ("salespulse_marketing_spend_reporting", spend, "channel"),
    }
    with localcontext() as ctx:
        ctx.prec = 100
        for window in WINDOWS:
            before = (window_start(clock, window) - 1) // SECONDS_A_DAY
            for kind, (name, family, label) in families.items():
                currencies = {dict(base)["currency"] for base in family.seen}
                for value in {dict(base)[label] for base in family.seen}:
                    put(name, {label: value, "window": window}, Decimal(0))
                    if kind == "deal.won":
                        put(name + "_previous_rates", {label: value, "window": window}, Decimal(0))
                for currency in currencies:
                    tags = {"window": window, "type": kind, "currency": currency}
                    out[key("salespulse_fx_unconverted_events", tags)] = 0.0
                    put("salespulse_fx_unconverted_amount", tags, Decimal(0))
            if expansion_amount.seen:
                for kind_label in ("upsell", "cross_sell"):
                    put(
                        "salespulse_expansion_amount_reporting",
                        {"kind": kind_label, "window": window},
                        Decimal(0),
                    )
            for kind, t, labels, currency, minor in money:
                if not clock.holds(t, window):
                    continue
                value = major(minor, currency)
                rate = fx.rate(currency, t // SECONDS_A_DAY)
                if kind == "expansion":
                    if rate is not None:
                        put(
                            "salespulse_expansion_amount_reporting",
                            {**labels, "window": window},
                            value * rate,
                        )
                    continue
                name = families[kind][0]
                if rate is None:
                    tags = {"window": window, "type": kind, "currency": currency}
                    out[key("salespulse_fx_unconverted_events", tags)] += 1.0
                    put("salespulse_fx_unconverted_amount", tags, value)
                    continue
                put(name, {**labels, "window": window}, value * rate)
                if kind == "deal.won":
                    then = fx.rate(currency, before)
                    put(
                        name + "_previous_rates",
                        {**labels, "window": window},
                        value * (rate if then is None else then),
                    )
    return out


# -- the /kpis "windows" summary, from the gauges (ratios follow from exported numbers) ---
class _Gauges:
    def __init__(self, gauges: Mapping[GaugeKey, float]) -> None:
        self.rows = [(name, dict(labels), v) for (name, labels), v in gauges.items()]

    def select(
        self, name: str, where: Callable[[dict[str, str]], bool]
    ) -> list[tuple[dict[str, str], float]]:
        return [(lab, v) for n, lab, v in self.rows if n == name and where(lab)]

    def total(self, name: str, where: Callable[[dict[str, str]], bool] = lambda _: True) -> Any:
        values = [v for _, v in self.select(name, where)]
        return sum(values, Decimal(0)) if values and isinstance(values[0], Decimal) else float(sum(values))

    def by(
        self, name: str, *keys: str, where: Callable[[dict[str, str]], bool] = lambda _: True
    ) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for lab, v in self.select(name, where):
            k = lab[keys[0]] if len(keys) == 1 else tuple(lab[x] for x in keys)
            out[k] = out.get(k, Decimal(0) if isinstance(v, Decimal) else 0.0) + v
        return out


def summarize(gauges: Mapping[GaugeKey, Any], window: str) -> dict[str, dict[str, Any]]:
    """The per-KPI summary of one window, as ``/kpis`` reports it."""
    with localcontext() as ctx:
        ctx.prec = 100
        return _summarize(gauges, window)


def _reporting_summary(g: _Gauges, w: Callable[[dict[str, str]], bool]) -> dict[str, dict[str, Any]]:
    """What the sales, acquisition and expansion summaries add in the reporting currency."""
    info = g.select("salespulse_reporting_currency_info", bool)
    if not info:
        return {"sales": {"reporting_currency": None}, "acquisition": {}, "expansion": {}}
    currency = info[0][0]["currency"]
    step = Decimal(1).scaleb(-get_currency_precision(currency))

    def q(value: Any) -> Decimal:
        return Decimal(value).quantize(step, rounding=ROUND_HALF_EVEN)

    total = g.total("salespulse_sales_amount_reporting", w)
    before = g.total("salespulse_sales_amount_reporting_previous_rates", w)
    won = lambda lab: w(lab) and lab["type"] == "deal.won"  # noqa: E731
    spent = lambda lab: w(lab) and lab["type"] == "marketing.spend"  # noqa: E731
    missing_amount = g.by("salespulse_fx_unconverted_amount", "currency", where=won)
    spend = g.by("salespulse_marketing_spend_reporting", "channel", where=w)
    acquired = g.by("salespulse_customers_acquired", "source", where=w)
    return {
        "sales": {
            "reporting_currency": currency,
            "amount_reporting": q(total),
            "amount_reporting_by_region": {
                r: q(v) for r, v in g.by("salespulse_sales_amount_reporting", "region", where=w).items()
            },
            "amount_reporting_previous_rates": q(before),
            "rate_effect": q(total - before),
            "unconverted": {
                c: {"events": n, "amount": missing_amount[c]}
                for c, n in g.by("salespulse_fx_unconverted_events", "currency", where=won).items()
                if n
            },
        },
        "acquisition": {
            "marketing_spend_reporting": {c: q(v) for c, v in spend.items()},
            "cac_reporting": {c: ratio(float(v), acquired.get(c, 0.0)) for c, v in spend.items()},
            "spend_unconverted_events": {
                c: n
                for c, n in g.by("salespulse_fx_unconverted_events", "currency", where=spent).items()
                if n
            },
        },
        "expansion": {"expansion_amount_reporting": q(g.total("salespulse_expansion_amount_reporting", w))},
    }


def _summarize(gauges: Mapping[GaugeKey, Any], window: str) -> dict[str, dict[str, Any]]:
    g = _Gauges(gauges)

    def w(lab: dict[str, str]) -> bool:
        return lab.get("window") == window

    leads = g.total("salespulse_leads", w)
    target = g.total("salespulse_lead_target", w)
    leads_by_rep = g.by("salespulse_leads", "rep", where=w)
    target_by_rep = g.by("salespulse_lead_target", "rep", where=w)
    acquired = g.total("salespulse_customers_acquired", w)
    acquired_by_source = g.by("salespulse_customers_acquired", "source", where=w)
    acquired_by_rep = g.by("salespulse_customers_acquired", "rep", where=w)
    spend = {f"{lab['channel']}/{lab['currency']}": v for lab, v in g.select("salespulse_marketing_spend", w)}
    won = g.total("salespulse_deals_won", w)
    lost = g.total("salespulse_deals_lost", w)
    won_by_region = g.by("salespulse_deals_won", "region", where=w)
    lost_by_region = g.by("salespulse_deals_lost", "region", where=w)
    amount_by_region: dict[str, dict[str, float]] = {}
    for lab, v in g.select("salespulse_sales_amount", w):
        amount_by_region.setdefault(lab["region"], {})[lab["currency"]] = v
    list_prices = {(lab["product"], lab["currency"]): v for lab, v in g.select("salespulse_list_price", bool)}
    prices = []
    for lab, v in sorted(
        g.select("salespulse_competitor_price", bool),
        key=lambda row: (row[0]["product"], row[0]["competitor"], row[0]["currency"], row[1]),
    ):
        ours = list_prices.get((lab["product"], lab["currency"]))
        prices.append(
            {
                "product": lab["product"],
                "competitor": lab["competitor"],
                "currency": lab["currency"],
                "competitor_price": v,
                "list_price": ours,
                "price_index": None if ours is None else ratio(float(ours), float(v)),
            }
        )
    known = g.total("salespulse_customers_known")
    at_risk = g.total("salespulse_customers_at_risk")
    enps_org = g.by(
        "salespulse_enps_responses", "category", where=lambda lab: w(lab) and lab["team"] == "all"
    )
    ep, epa, ed = (enps_org.get(c, 0.0) for c in CATEGORIES)
    enps_by_team: dict[str, float | None] = {}
    if window == "30d":
        cells = g.by("salespulse_enps_responses", "team", "category", where=w)
        for team, n in sorted(g.by("salespulse_enps_responses", "team", where=w).items()):
            if team != "all":
                enps_by_team[team] = nps_score(
                    cells.get((team, "promoter"), 0.0), cells.get((team, "detractor"), 0.0), n
                )
    expansion = g.by("salespulse_expansion_deals", "kind", where=w)
    nps_cats = g.by("salespulse_nps_responses", "category", where=w)
    p, pa, d = (nps_cats.get(c, 0.0) for c in CATEGORIES)
    nps_cells = g.by("salespulse_nps_responses", "region", "category", where=w)
    stages = g.by("salespulse_detractor_cases", "stage", where=w)
    opened, followed, in_target = (stages.get(s, 0.0) for s in STAGES)
    reporting = _reporting_summary(g, w)
    return {
        "leads": {
            "leads": leads,
            "opportunities": g.total("salespulse_opportunities", w),
            "lead_target": target,
            "attainment": ratio(leads, target),
            "leads_by_source": g.by("salespulse_leads", "source", where=w),
            "leads_by_region": g.by("salespulse_leads", "region", where=w),
            "attainment_by_rep": {
                rep: ratio(leads_by_rep.get(rep, 0.0), t) for rep, t in target_by_rep.items()
            },
        },
        "acquisition": {
            "customers_acquired": acquired,
            "leads": leads,
            "conversion": ratio(acquired, leads),
            "conversion_by_rep": {
                rep: ratio(acquired_by_rep.get(rep, 0.0), n) for rep, n in leads_by_rep.items()
            },
            "acquired_by_source": acquired_by_source,
            "marketing_spend": spend,
            "cac": {
                k: ratio(float(v), acquired_by_source.get(k.split("/")[0], 0.0)) for k, v in spend.items()
            },
            **reporting["acquisition"],
        },
        "sales": {
            "deals_won": won,
            "deals_lost": lost,
            "win_rate": ratio(won, won + lost),
            "amount_by_currency": g.by("salespulse_sales_amount", "currency", where=w),
            "amount_by_region": amount_by_region,
            "won_by_region": won_by_region,
            "win_rate_by_region": {
                r: ratio(won_by_region.get(r, 0.0), won_by_region.get(r, 0.0) + lost_by_region.get(r, 0.0))
                for r in set(won_by_region) | set(lost_by_region)
            },
            **reporting["sales"],
        },
        "pricing": {"prices": prices},
        "engagement": {
            "customers_engaged": g.total("salespulse_customers_engaged", w),
            "activities": g.total("salespulse_customer_activities", w),
            "activities_by_channel": g.by("salespulse_customer_activities", "channel", where=w),
            "customers_known": known,
            "customers_at_risk": at_risk,
            "at_risk_share": at_risk / known if known else None,
        },
        "enps": {
            "responses": ep + epa + ed,
            "promoters": ep,
            "passives": epa,
            "detractors": ed,
            "enps": nps_score(ep, ed, ep + epa + ed),
            "enps_by_team": enps_by_team,
        },
        "expansion": {
            "upsell": expansion.get("upsell", 0.0),
            "cross_sell": expansion.get("cross_sell", 0.0),
            "deals_won": expansion.get("all", 0.0),
            "expansion_rate": ratio(
                expansion.get("upsell", 0.0) + expansion.get("cross_sell", 0.0), expansion.get("all", 0.0)
            ),
            "expansion_amount": g.by("salespulse_expansion_amount", "currency", where=w),
            **reporting["expansion"],
        },
        "nps": {
            "responses": p + pa + d,
            "promoters": p,
            "passives": pa,
            "detractors": d,
            "nps": nps_score(p, d, p + pa + d),
            "nps_by_region": {
                r: nps_score(nps_cells.get((r, "promoter"), 0.0), nps_cells.get((r, "detractor"), 0.0), n)
                for r, n in g.by("salespulse_nps_responses", "region", where=w).items()
            },
            "customers_by_latest_category": g.by("salespulse_nps_customers", "category"),
        },
        "detractors": {
            "open": g.total("salespulse_detractors_open"),
            "overdue": g.total("salespulse_detractors_overdue"),
            "open_by_owner": g.by("salespulse_detractors_open", "owner"),
            "cases_opened": opened,
            "cases_followed_up": followed,
            "cases_followed_up_in_target": in_target,
            "follow_up_rate": ratio(followed, opened),
            "follow_up_in_target_rate": ratio(in_target, opened),
        },
        # Read by period (GET /forecast, tests/forecast_reference.py), not by window.
        "forecast": {},
    }


# -- comparing ------------------------------------------------------------------------
AMOUNT_KEYS = frozenset(
    {
        "marketing_spend",
        "cac",
        "amount_by_currency",
        "amount_by_region",
        "expansion_amount",
        "competitor_price",
        "list_price",
        "price_index",
        "sales_amount",
        "cac_reporting",
        "lead_target",
        "attainment",
        "attainment_by_rep",
    }
)


def close(actual: Any, expect: Any, *, amount: bool) -> bool:
    if isinstance(actual, Decimal) and isinstance(expect, Decimal):
        return actual == expect
    actual, expect = float(actual), float(expect)
    if amount:
        return math.isclose(actual, expect, rel_tol=1e-6, abs_tol=0.01)
    return math.isclose(actual, expect, rel_tol=1e-9, abs_tol=1e-9)


def diff(actual: Any, expect: Any, path: str = "", *, amount: bool = False) -> list[str]:
    """Differences between two JSON-like values: counts exact, amounts with a tolerance."""
    if isinstance(expect, Mapping):
        if not isinstance(actual, Mapping):
            return [f"{path}: expected a mapping, got {actual!r}"]
        out = []
        for key in sorted(set(expect) | set(actual), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in actual:
                out.append(f"{sub}: missing (expected {expect[key]!r})")
            elif key not in expect:
                out.append(f"{sub}: unexpected {actual[key]!r}")
            else:
                out += diff(actual[key], expect[key], sub, amount=amount or key in AMOUNT_KEYS)
        return out
    if isinstance(expect, list | tuple):
        if not isinstance(actual, list | tuple) or len(actual) != len(expect):
            return [f"{path}: expected {len(expect)} items, got {actual!r:.200}"]
        out = []
        for i, (a, e) in enumerate(zip(actual, expect, strict=True)):
            out += diff(a, e, f"{path}[{i}]", amount=amount)
        return out
    if isinstance(expect, Decimal):  # money: exact, as a decimal string in /kpis JSON
        same = isinstance(actual, str | Decimal | int) and Decimal(actual) == expect
        return [] if same else [f"{path}: expected exactly {expect}, got {actual!r}"]
    if expect is None or actual is None or isinstance(expect, str):
        return [] if actual == expect else [f"{path}: expected {expect!r}, got {actual!r}"]
    if isinstance(actual, bool) or not isinstance(actual, int | float):
        return [f"{path}: expected {expect!r}, got {actual!r}"]
    if close(float(actual), float(expect), amount=amount):
        return []
    return [f"{path}: expected {expect!r}, got {actual!r}"]


def gauge_diff(actual: Mapping[GaugeKey, float], expect: Mapping[GaugeKey, float]) -> list[str]:
    """Differences between two sets of gauge samples: same series, same values."""
    out = []

    def show(key: GaugeKey) -> str:
        name, labels = key
        return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels)) + "}"

    for key in sorted(set(expect) - set(actual), key=show):
        out.append(f"missing {show(key)} (expected {expect[key]!r})")
    for key in sorted(set(actual) - set(expect), key=show):
        out.append(f"unexpected {show(key)} = {actual[key]!r}")
    for key in sorted(set(actual) & set(expect), key=show):
        if not close(actual[key], expect[key], amount=key[0] in AMOUNT_METRICS):
            out.append(f"{show(key)}: expected {expect[key]!r}, got {actual[key]!r}")
    return out


# -- reading /metrics -----------------------------------------------------------------
#: Gauges that describe the pipeline, not a KPI.
PIPELINE_GAUGES = frozenset(
    {"salespulse_consumer_lag", "salespulse_partitions_owned", "salespulse_fx_rates_file_valid"}
)
#: The latency histogram (its ``_created`` sample parses as a gauge of its own).
LATENCY_PREFIX = "salespulse_event_to_state_seconds"
COUNTER_FAMILIES = frozenset(
    {
        "salespulse_events",
        "salespulse_events_late",
        "salespulse_events_duplicate",
        "salespulse_events_rejected",
        "salespulse_events_rerouted",
        "salespulse_comments_truncated",
    }
)


@dataclass
class Scrape:
    """A parsed /metrics page: KPI gauges and the event counters."""

    gauges: dict[GaugeKey, float]
    counters: dict[GaugeKey, float]
    types: dict[str, str]


def parse_metrics(text: str) -> Scrape:
    from prometheus_client.parser import text_string_to_metric_families

    gauges: dict[GaugeKey, float] = {}
    counters: dict[GaugeKey, float] = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        if not family.name.startswith("salespulse_") or family.name.startswith(LATENCY_PREFIX):
            continue
        if family.type == "gauge" and family.name not in PIPELINE_GAUGES:
            target = gauges
        elif family.type == "counter" and family.name in COUNTER_FAMILIES:
            target = counters
        else:
            continue
        for sample in family.samples:
            if family.type == "counter" and not sample.name.endswith("_total"):
                continue  # _created
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in target, f"sample twice on /metrics: {key}"
            target[key] = float(sample.value)
    return Scrape(gauges, counters, types)


def kpis_series(kpis: Mapping[str, Any]) -> dict[GaugeKey, Any]:
    """The ``series`` of a /kpis answer, keyed like :attr:`Expected.gauges` (money, a decimal
    string there, as a ``Decimal``)."""
    out: dict[GaugeKey, Any] = {}
    for name, labels, value in kpis["series"]:
        key = (name, frozenset(labels.items()))
        assert key not in out, f"series twice in /kpis: {key}"
        out[key] = Decimal(value) if isinstance(value, str) else float(value)
    return out
