"""Two rules a plain count gets wrong: late events, and eNPS anonymity.

- An event older than the 62-day retention counts in ``salespulse_events_late_total`` and
  in no windowed number, but latest-value state (known customers, at risk) still takes it.
- eNPS per team is exported only for ``30d`` and only with at least 5 responses there; the
  org-wide numbers (``team="all"``) only for windows holding at least 5 responses.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import orjson

from tests.conftest import FIXED_NOW, send_and_wait
from tests.reference import WINDOWS, Expected, diff, expected, gauge_diff, kpis_series, parse_metrics

NOW = int(FIXED_NOW.timestamp())
_seq = iter(range(1, 10**6))


def at(age: timedelta) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - int(age.total_seconds())))


def event(event_type: str, age: timedelta, data: dict[str, Any]) -> dict[str, Any]:
    n = next(_seq)
    return {
        "event_id": f"01TEST{n:020d}",
        "type": event_type,
        "occurred_at": at(age),
        "source": "test",
        "data": data,
    }


def deal_won(customer: str, age: timedelta, **extra: Any) -> dict[str, Any]:
    data = {
        "deal_id": f"D-{customer}",
        "customer_id": customer,
        "rep_id": "r-01",
        "region": "north",
        "product": "crm-pro",
        "kind": "new",
        "amount": 1000.0,
        "currency": "USD",
        **extra,
    }
    return event("deal.won", age, data)


def enps(team: str, score: int, age: timedelta) -> dict[str, Any]:
    return event("survey.answered", age, {"survey": "enps", "score": score, "team": team})


def run(spawn_worker, producer, events: list[dict[str, Any]]) -> tuple[dict[str, Any], str, Expected]:
    """Send ``events`` to a fresh worker; return its /kpis, /metrics and the reference."""
    worker = spawn_worker()
    worker.wait_ready()
    kpis = send_and_wait(worker, producer, events)
    metrics = worker.metrics()
    ref = expected(events, NOW)
    scrape = parse_metrics(metrics)
    problems = gauge_diff(scrape.gauges, ref.gauges)
    assert not problems, "\n".join(problems)
    assert not gauge_diff(kpis_series(kpis), ref.gauges)
    problems = diff(kpis["windows"], ref.windows)
    assert not problems, "\n".join(problems)
    return kpis, metrics, ref


def value(metrics: str, name: str, **labels: str) -> float | None:
    scrape = parse_metrics(metrics)
    key = (name, frozenset(labels.items()))
    return scrape.gauges.get(key, scrape.counters.get(key))


def test_late_deal_counts_only_as_late_and_in_latest_value_state(spawn_worker, producer) -> None:
    old = deal_won(
        "C-OLD", timedelta(days=200), kind="upsell", region="atlantis", currency="GBP", amount=5000.0
    )
    fresh = deal_won("C-NEW", timedelta(minutes=5))
    kpis, metrics, ref = run(spawn_worker, producer, [old, fresh])

    assert ref.late["deal.won"] == 1
    assert value(metrics, "salespulse_events_late_total", type="deal.won") == 1
    assert value(metrics, "salespulse_events_total", type="deal.won") == 2
    assert kpis["counters"]["late"]["deal.won"] == 1
    # No windowed number counts it, in any window.
    for window in WINDOWS:
        summary = kpis["windows"][window]
        assert summary["sales"]["deals_won"] == 1
        assert summary["sales"]["amount_by_currency"] == {"USD": "1000.00"}  # exact, in cents
        assert summary["expansion"]["deals_won"] == 1
        assert summary["expansion"]["upsell"] == 0
        assert summary["expansion"]["expansion_amount"] == {}
        assert summary["acquisition"]["customers_acquired"] == 1
        assert value(metrics, "salespulse_deals_won", window=window, region="north", kind="new") == 1
        assert value(metrics, "salespulse_expansion_deals", window=window, kind="upsell") == 0
        assert value(metrics, "salespulse_expansion_deals", window=window, kind="all") == 1
    # A late event leaves no retained bucket, so its labels never become a series.
    assert "atlantis" not in metrics and "GBP" not in metrics
    assert b"atlantis" not in orjson.dumps(kpis["windows"])
    # Latest-value state takes it: both customers are known, the old one is at risk.
    assert value(metrics, "salespulse_customers_known") == 2
    assert value(metrics, "salespulse_customers_at_risk") == 1
    assert kpis["windows"]["30d"]["engagement"]["customers_at_risk"] == 1


def test_enps_anonymity(spawn_worker, producer) -> None:
    minutes, hours, days = (lambda n: timedelta(minutes=n)), (lambda n: timedelta(hours=n)), timedelta
    # "tiny": 4 answers in the last 30 days (3 more 40 days ago, 1 late) -> never exported.
    tiny = [
        enps("tiny", s, age) for s, age in [(9, minutes(10)), (3, hours(2)), (10, days(3)), (6, days(20))]
    ]
    tiny += [enps("tiny", s, days(40)) for s in (10, 9, 2)] + [enps("tiny", 8, days(100))]
    # "big": 6 answers in the last 30 days -> exported for 30d only.
    ages = [minutes(5), minutes(20), hours(5), days(2), days(10), days(25)]
    big = [enps("big", s, age) for s, age in zip((10, 9, 7, 2, 9, 5), ages, strict=True)]
    # Org-wide: 1h holds 3 (hidden), 24h holds 5, 7d holds 7, 30d holds 10.
    _kpis, metrics, ref = run(spawn_worker, producer, [*tiny, *big])
    kpis_text = orjson.dumps(_kpis).decode()

    assert "tiny" not in metrics
    assert "tiny" not in kpis_text
    big_series = [(lab, v) for (n, lab), v in kpis_series(_kpis).items() if ("team", "big") in lab]
    assert big_series, "big has 6 answers in 30d: exported"
    assert {dict(lab)["window"] for lab, _ in big_series} == {"30d"}
    assert {dict(lab)["category"]: v for lab, v in big_series} == {
        "promoter": 3.0,
        "passive": 1.0,
        "detractor": 2.0,
    }
    assert 'team="big"' in metrics
    for line in metrics.splitlines():
        if 'team="big"' in line:
            assert 'window="30d"' in line, line
    windows_with_all = {
        dict(lab)["window"]
        for (n, lab), _ in kpis_series(_kpis).items()
        if n == "salespulse_enps_responses" and ("team", "all") in lab
    }
    assert windows_with_all == {"24h", "7d", "30d"}
    for line in metrics.splitlines():
        if 'team="all"' in line:
            assert 'window="1h"' not in line, line
    summary = {w: _kpis["windows"][w]["enps"] for w in WINDOWS}
    assert summary["1h"]["responses"] == 0 and summary["1h"]["enps"] is None
    assert [summary[w]["responses"] for w in ("24h", "7d", "30d")] == [5, 7, 10]
    # 30d: promoters 9,10,10,9,9 = 5; detractors 3,6,2,5 = 4 -> 100 * 1 / 10.
    assert summary["30d"]["enps"] == 10.0
    # big: promoters 10,9,9; detractors 2,5 -> 100 * 1 / 6.
    assert summary["30d"]["enps_by_team"] == {"big": round(100 / 6, 6)}
    assert ref.late["survey.answered"] == 1
