"""Every number a worker exports equals the independent reference, on a 50,000-event corpus.

The corpus (seeded generator, fixed clock) has events from the last minutes back to weeks
ago, out of order, with redelivered duplicates and events too old for the windows. One
worker owns all four partitions; after everything is applied its /metrics gauges, its
event counters and its /kpis summary must match ``tests/reference.py`` exactly (amounts
within 1e-6 relative or 0.01 absolute).
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime
from itertools import pairwise
from typing import Any

import orjson
import pytest

from salespulse.schemas.topics import INPUT_TOPICS
from salespulse.streams.tools.generator import GeneratorConfig, generate
from tests.conftest import FIXED_NOW, send_and_wait, settle, wait_until
from tests.reference import (
    EVENT_TYPES,
    WINDOWS,
    Expected,
    diff,
    expected,
    gauge_diff,
    kpis_series,
    parse_metrics,
)

NOW = int(FIXED_NOW.timestamp())
CORPUS_SIZE = 50_000
HOUR, DAY = 3600, 86400


@pytest.fixture(scope="module")
def corpus() -> list[dict[str, Any]]:
    config = GeneratorConfig(seed=7, now=FIXED_NOW, customers=5000, duplicate_share=0.03, late_share=0.01)
    return list(generate(config, CORPUS_SIZE))


@pytest.fixture(scope="module")
def reference(corpus: list[dict[str, Any]]) -> Expected:
    return expected(corpus, NOW, partitions=4)


def bad_messages() -> list[tuple[str, bytes, bytes | None, str]]:
    """(topic, value, key, reason the worker must give) for messages that must be rejected."""
    good_deal = {
        "event_id": "01BADBADBADBADBADBADBADBAD",
        "type": "deal.won",
        "occurred_at": "2026-11-26T11:59:00Z",
        "source": "test",
        "data": {
            "deal_id": "D-X",
            "customer_id": "C-X",
            "rep_id": "r-01",
            "region": "north",
            "product": "crm-pro",
            "kind": "new",
            "amount": 100.0,
            "currency": "USD",
        },
    }
    no_customer = {**good_deal, "data": {k: v for k, v in good_deal["data"].items() if k != "customer_id"}}
    lead = {
        **good_deal,
        "type": "lead.created",
        "data": {"lead_id": "L-X", "rep_id": "r-01", "region": "north", "source": "web"},
    }
    return [
        ("crm.leads", b"\x00\xffnot json at all{", b"L-1", "not_json"),
        ("crm.leads", b"garbage", None, "not_json"),
        ("crm.deals", orjson.dumps({"hello": "world"}), b"C-1", "unknown_type"),
        ("crm.deals", orjson.dumps(no_customer), b"C-X", "schema"),
        ("crm.deals", orjson.dumps({**good_deal, "type": "deal.maybe"}), b"C-X", "unknown_type"),
        ("crm.deals", orjson.dumps(lead), b"L-X", "wrong_topic"),
        ("crm.deals", orjson.dumps(good_deal), b"D-X", "wrong_key"),
        ("crm.leads", b'{"pad": "' + b"x" * (70 * 1024) + b'"}', b"L-2", "too_large"),
    ]


def test_corpus_has_every_awkward_case(corpus: list[dict[str, Any]], reference: Expected) -> None:
    assert len(corpus) >= 50_000
    ages = [NOW - d.t for d in reference.deliveries]
    assert any(0 <= a < HOUR for a in ages), "events in the last hour"
    assert any(HOUR <= a < DAY for a in ages), "events hours old"
    assert any(DAY <= a < 7 * DAY for a in ages), "events days old"
    assert any(7 * DAY <= a <= 30 * DAY for a in ages), "events weeks old"
    assert min(ages) >= 0, "no event after the clock"
    ids = Counter(e["event_id"] for e in corpus)
    assert sum(n - 1 for n in ids.values()) > 500, "redelivered duplicates"
    assert reference.duplicates > 500
    assert sum(reference.late.values()) > 100, "events older than the retention"
    assert reference.late["deal.won"] > 0
    assert any(d.duplicate is False and d.late for d in reference.deliveries)
    late_ids = Counter(d.event["event_id"] for d in reference.deliveries if d.late)
    assert any(n > 1 for n in late_ids.values()), "a redelivered late event (not deduplicated)"
    backwards = sum(1 for a, b in pairwise(ages) if b > a)
    assert backwards > len(ages) // 4, "out-of-order event times"
    assert set(reference.events) == set(EVENT_TYPES)
    assert all(reference.events[t] > 0 for t in EVENT_TYPES)
    assert not reference.folded, "the exact comparison needs every label under the cap"
    # Sanity of the reference itself: the direct counts agree with its gauges.
    for window in WINDOWS:
        head, summary = reference.headline(window), reference.windows[window]
        assert head["leads"] == summary["leads"]["leads"]
        assert head["deals_won"] == summary["sales"]["deals_won"] == summary["expansion"]["deals_won"]
        assert head["customers_engaged"] == summary["engagement"]["customers_engaged"]
        assert head["nps_responses"] == summary["nps"]["responses"]
        assert head["enps_responses"] == summary["enps"]["responses"]


def test_worker_matches_reference_exactly(
    corpus: list[dict[str, Any]], reference: Expected, spawn_worker, producer
) -> None:
    started = time.monotonic()
    worker = spawn_worker()
    worker.wait_ready()
    bad = bad_messages()
    for topic, value, key, _ in bad:
        producer.send_raw(topic, value, key)
    producer.flush()
    for event in corpus:
        producer.send(event)
    producer.flush()
    sent = time.monotonic()

    def applied() -> dict[str, Any] | None:
        kpis = worker.kpis()
        c = kpis["counters"]
        done = sum(c["events"].values()) + c["duplicates"] == len(corpus)
        return kpis if done and sum(c["rejected"].values()) == len(bad) else None

    wait_until(applied, timeout=120, interval=0.5)
    settle(worker)  # the closes forwarded to their opportunities' partitions too
    kpis = worker.kpis()
    done = time.monotonic()
    print(f"\nsend {sent - started:.1f}s, applied {done - sent:.1f}s")

    # Counters.
    counters = kpis["counters"]
    assert counters["events"] == reference.events
    assert counters["late"] == reference.late
    assert counters["duplicates"] == reference.duplicates
    assert counters["rerouted"] == dict.fromkeys(INPUT_TOPICS, 0)
    want_rejected = Counter(reason for *_, reason in bad)
    assert counters["rejected"] == {r: want_rejected.get(r, 0) for r in counters["rejected"]}
    assert set(want_rejected) <= set(counters["rejected"])
    assert kpis["clock"] == NOW
    assert kpis["partitions"] == [0, 1, 2, 3]

    # (a) every KPI gauge of /metrics: same series, same values.
    scrape = parse_metrics(worker.metrics())
    problems = gauge_diff(scrape.gauges, reference.gauges)
    assert not problems, f"{len(problems)} gauge mismatches:\n" + "\n".join(problems[:40])
    want_counters = {}
    for kind in EVENT_TYPES:
        want_counters["salespulse_events_total", frozenset({("type", kind)})] = reference.events[kind]
        want_counters["salespulse_events_late_total", frozenset({("type", kind)})] = reference.late[kind]
    want_counters["salespulse_events_duplicate_total", frozenset()] = reference.duplicates
    want_counters["salespulse_comments_truncated_total", frozenset()] = reference.comments_truncated
    for reason in counters["rejected"]:
        want_counters["salespulse_events_rejected_total", frozenset({("reason", reason)})] = (
            want_rejected.get(reason, 0)
        )
    for topic in INPUT_TOPICS:
        want_counters["salespulse_events_rerouted_total", frozenset({("topic", topic)})] = 0
    assert scrape.counters == want_counters

    # (b) every number of the /kpis summary, for every window.
    assert set(kpis["windows"]) == set(WINDOWS)
    problems = diff(kpis["windows"], reference.windows)
    assert not problems, f"{len(problems)} /kpis mismatches:\n" + "\n".join(problems[:40])
    for window in WINDOWS:
        head, got = reference.headline(window), kpis["windows"][window]
        pairs = {
            "leads": got["leads"]["leads"],
            "opportunities": got["leads"]["opportunities"],
            "customers_acquired": got["acquisition"]["customers_acquired"],
            "conversion": got["acquisition"]["conversion"],
            "deals_won": got["sales"]["deals_won"],
            "deals_lost": got["sales"]["deals_lost"],
            "win_rate": got["sales"]["win_rate"],
            "customers_engaged": got["engagement"]["customers_engaged"],
            "activities": got["engagement"]["activities"],
            "customers_known": got["engagement"]["customers_known"],
            "customers_at_risk": got["engagement"]["customers_at_risk"],
            "enps_responses": got["enps"]["responses"],
            "enps": got["enps"]["enps"],
            "nps_responses": got["nps"]["responses"],
            "nps": got["nps"]["nps"],
            "upsell": got["expansion"]["upsell"],
            "cross_sell": got["expansion"]["cross_sell"],
            "expansion_rate": got["expansion"]["expansion_rate"],
            "sales_amount": got["sales"]["amount_by_currency"],
            "price_index": {
                (row["product"], row["competitor"], row["currency"]): row["price_index"]
                for row in got["pricing"]["prices"]
            },
        }
        head_problems = diff(
            {k: v for k, v in pairs.items() if k != "price_index"},
            {k: v for k, v in head.items() if k != "price_index"},
            window,
        )
        head_problems += diff(
            {"/".join(k): v for k, v in pairs["price_index"].items()},
            {"/".join(k): v for k, v in head["price_index"].items()},
            f"{window}.price_index",
            amount=True,
        )
        assert not head_problems, "\n".join(head_problems)
        assert got["engagement"]["customers_engaged"] > 0
        assert got["leads"]["leads"] > 0

    # (c) the /kpis series are the /metrics gauges.
    assert not gauge_diff(kpis_series(kpis), scrape.gauges)


ODD_CLOCK = "2026-11-26T12:34:56Z"  # not on a minute or an hour: buckets and clock differ


def stamp(t: int, *, offset_hours: int = 0, fraction: str = "") -> str:
    """``t`` as RFC 3339, optionally in another zone and with a fraction of a second."""
    local = time.gmtime(t + offset_hours * 3600)
    zone = "Z" if not offset_hours else f"{'+' if offset_hours > 0 else '-'}{abs(offset_hours):02d}:00"
    return time.strftime("%Y-%m-%dT%H:%M:%S", local) + fraction + zone


def test_window_retention_and_at_risk_boundaries(spawn_worker, producer) -> None:
    """Events on both sides of every bucket boundary, at a clock that is not on a bucket edge."""
    clock = int(datetime.fromisoformat(ODD_CLOCK.replace("Z", "+00:00")).timestamp())
    cm, ch = clock // 60, clock // 3600
    seq = iter(range(1, 10**6))
    events: list[dict[str, Any]] = []

    def add(event_type: str, occurred_at: str, /, **data: Any) -> dict[str, Any]:
        e = {
            "event_id": f"01EDGE{next(seq):020d}",
            "type": event_type,
            "occurred_at": occurred_at,
            "source": "test",
            "data": data,
        }
        events.append(e)
        return e

    def lead(name: str, t: int, **fmt: Any) -> None:
        add("lead.created", stamp(t, **fmt), lead_id=f"L-{name}", rep_id=name, region="r", source="web")

    # Minute window 1h = minute buckets cm-59 .. cm; hour windows by hour bucket.
    lead("m-first-in", (cm - 59) * 60)
    lead("m-last-out", (cm - 59) * 60 - 1)
    lead("m-frac-out", (cm - 59) * 60 - 1, offset_hours=2, fraction=".999")  # truncated, not rounded
    lead("m-now", clock)
    lead("m-current-bucket-after-clock", cm * 60 + 59)
    lead("m-next-bucket", (cm + 1) * 60)  # after the clock: same hour bucket, not in 1h
    lead("h-next-bucket", (ch + 1) * 3600)  # counted nowhere yet
    for window, size in (("24h", 24), ("7d", 168), ("30d", 720)):
        lead(f"{window}-first-in", (ch - size + 1) * 3600, offset_hours=-5)
        lead(f"{window}-last-out", (ch - size + 1) * 3600 - 1)
    # Retention: hour buckets ch-1487 .. ch; older is late.
    oldest = (ch - 1487) * 3600
    won = {"rep_id": "r", "region": "r", "product": "p", "amount": 10.0, "currency": "USD"}
    add("deal.won", stamp(oldest), deal_id="D-1", customer_id="C-retained", kind="upsell", **won)
    late = add("deal.won", stamp(oldest - 1), deal_id="D-2", customer_id="C-late", kind="upsell", **won)
    events.append(dict(late))  # a deal's outcome is remembered late too: a duplicate
    lead("retained", oldest)
    lead("late", oldest - 1)
    events.append(dict(events[-1]))  # any other late event delivered twice counts twice
    # At risk: latest minute before cm - 43200.
    threshold = cm - 43200
    for name, t in (("C-edge-safe", threshold * 60), ("C-edge-risk", threshold * 60 - 1)):
        add("deal.won", stamp(t), deal_id=f"D-{name}", customer_id=name, kind="renewal", **won)
    add("deal.won", stamp(threshold * 60 - 1), deal_id="D-3", customer_id="C-woken", kind="new", **won)
    add("customer.activity", stamp(clock - 7200), customer_id="C-woken", channel="email")
    add("customer.activity", stamp(clock + 120), customer_id="C-future", channel="email")  # 24h, not 1h
    add("customer.activity", stamp((cm - 59) * 60), customer_id="C-1h", channel="call")
    add("customer.activity", stamp((cm - 59) * 60 - 1), customer_id="C-2h", channel="call")
    # Latest value: greatest (occurred_at, offset), never arrival order; same key, one partition.
    price = {"product": "p1", "competitor": "acme", "currency": "USD"}
    add("competitor.price_observed", stamp(clock - 60), price=11.0, **price)
    add("competitor.price_observed", stamp(clock - 600), price=99.0, **price)  # older, arrives later
    add("competitor.price_observed", stamp(clock - 60), price=12.0, **price)  # tie: higher offset wins
    add("product.price_set", stamp(clock - 30), product="p1", price=10.0, currency="USD")
    add("product.price_set", stamp(clock - 90 * 86400), product="p1", price=7.0, currency="USD")  # late
    nps = {"survey": "nps", "customer_id": "C-n", "region": "r", "product": "p1"}
    add("survey.answered", stamp(clock - 100), score=10, **nps)
    add("survey.answered", stamp(clock - 100), score=0, **nps)  # tie: higher offset wins
    add("survey.answered", stamp(clock - 5000), score=8, **nps)
    first = add("lead.created", stamp(clock - 10), lead_id="L-dup", rep_id="dup", region="r", source="web")
    events.append(dict(first))  # a duplicate

    ref = expected(events, clock)
    # The reference follows the documented rules literally (spot checks).
    assert ref.gauge("salespulse_leads", region="r", source="web", rep="m-first-in", window="1h") == 1
    assert ref.gauge("salespulse_leads", region="r", source="web", rep="m-last-out", window="1h") == 0
    assert ref.gauge("salespulse_leads", region="r", source="web", rep="m-frac-out", window="1h") == 0
    assert (
        ref.gauge(
            "salespulse_leads", region="r", source="web", rep="m-current-bucket-after-clock", window="1h"
        )
        == 1
    )
    assert ref.gauge("salespulse_leads", region="r", source="web", rep="m-next-bucket", window="1h") == 0
    assert ref.gauge("salespulse_leads", region="r", source="web", rep="m-next-bucket", window="24h") == 1
    assert ref.gauge("salespulse_leads", region="r", source="web", rep="h-next-bucket", window="30d") == 0
    assert ref.gauge("salespulse_leads", region="r", source="web", rep="late", window="30d") is None
    assert ref.gauge("salespulse_leads", region="r", source="web", rep="retained", window="30d") == 0
    assert ref.gauge("salespulse_leads", region="r", source="web", rep="dup", window="1h") == 1
    assert ref.late == {
        **dict.fromkeys(EVENT_TYPES, 0),
        "deal.won": 1,
        "lead.created": 2,
        "product.price_set": 1,
    }
    assert ref.duplicates == 2
    assert ref.gauge("salespulse_customers_at_risk") == 3  # C-edge-risk, C-retained, C-late
    assert ref.gauge("salespulse_customers_engaged", window="1h") == 1
    assert ref.gauge("salespulse_customers_engaged", window="24h") == 4  # C-woken, C-1h, C-2h, C-future
    assert ref.gauge("salespulse_competitor_price", **price) == 12.0
    assert ref.gauge("salespulse_list_price", product="p1", currency="USD") == 10.0
    assert ref.gauge("salespulse_nps_customers", category="detractor") == 1

    worker = spawn_worker("edges", SALESPULSE_CLOCK=ODD_CLOCK)
    worker.wait_ready()
    kpis = send_and_wait(worker, producer, events)
    assert kpis["clock"] == clock
    assert kpis["counters"]["events"] == ref.events
    assert kpis["counters"]["late"] == ref.late
    assert kpis["counters"]["duplicates"] == ref.duplicates
    scrape = parse_metrics(worker.metrics())
    problems = gauge_diff(scrape.gauges, ref.gauges)
    assert not problems, "\n".join(problems)
    problems = diff(kpis["windows"], ref.windows)
    assert not problems, "\n".join(problems)
