"""Money (docs/semantics.md, "Money"): exact amounts in minor units, Toman codes stored as rials,
the reporting currency applied at read by each day's rate, and nothing lost on restore.

Driven through the real :class:`Engine` (bytes in, changelog and samples out) and checked against
the independent reference (tests/reference.py), which converts event by event.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from babel.core import get_global
from babel.numbers import get_currency_precision

from salespulse.agents.money import DIGITS, EXACT, Rates, digits
from salespulse.agents.rolling import HOUR
from salespulse.schemas import exact_json
from salespulse.schemas.event_time import format_time, parse_time
from salespulse.schemas.partitions import partition_for
from salespulse.schemas.topics import route
from salespulse.streams.pipeline.engine import Engine, MessageRecord
from salespulse.streams.pipeline.fx_rates import RatesError, RatesFile, parse_rates
from tests import reference

NOW = parse_time("2026-11-26T12:00:00Z")
DAY = 86400
TODAY = NOW // DAY


def won(
    t: int, n: int, amount: Any, currency: str, region: str = "north", kind: str = "new"
) -> dict[str, Any]:
    return {
        "event_id": f"won-{n}",
        "type": "deal.won",
        "occurred_at": format_time(t),
        "source": "test",
        "data": {
            "deal_id": f"D-{n}",
            "customer_id": f"C-{n}",
            "rep_id": "r-1",
            "region": region,
            "product": "crm",
            "kind": kind,
            "amount": amount,
            "currency": currency,
        },
    }


def spend(t: int, n: int, amount: Any, currency: str, channel: str = "web") -> dict[str, Any]:
    return {
        "event_id": f"spend-{n}",
        "type": "marketing.spend",
        "occurred_at": format_time(t),
        "source": "test",
        "data": {"channel": channel, "amount": amount, "currency": currency},
    }


def engine_with(events: Sequence[dict[str, Any]], fx: Rates | None = None) -> tuple[Engine, list[Any]]:
    """An engine owning every partition (4) that applied ``events`` in send order, one record a
    call, at the fixed clock; and the changelog it wrote."""
    engine = Engine(clock=format_time(NOW), partitions=4)
    if fx is not None:
        engine.fx = fx
    offsets: dict[tuple[str, int], int] = {}
    changelog: list[Any] = []
    for event in events:
        topic, key = route(event)
        partition = partition_for(key, 4)
        offset = offsets.get((topic, partition), 0)
        offsets[topic, partition] = offset + 1
        out = engine.apply(topic, partition, [MessageRecord(offset, key, exact_json.dumps(event), None)])
        assert not out.deadletters, out.deadletters
        changelog += out.changelog
    return engine, changelog


def gauges(engine: Engine) -> dict[reference.GaugeKey, Any]:
    out: dict[reference.GaugeKey, Any] = {}
    for name, labels, value in engine.samples(range(4)):
        key = (name, frozenset(labels.items()))
        assert key not in out
        out[key] = value
    return out


def value(engine: Engine, name: str, **labels: str) -> Any:
    return gauges(engine)[name, frozenset(labels.items())]


# -- the minor unit ----------------------------------------------------------------------


def test_the_digits_table_is_cldrs_for_every_currency_babel_knows() -> None:
    codes = set(get_global("currency_fractions")) - {"DEFAULT"} | {"USD", "EUR", "GBP", "IRR"}
    assert codes >= set(DIGITS)
    assert {code: digits(code) for code in sorted(codes)} == {
        code: get_currency_precision(code) for code in sorted(codes)
    }
    assert (digits("IRR"), digits("USD"), digits("JPY"), digits("KWD")) == (0, 2, 0, 3)


@pytest.mark.parametrize(("code", "factor"), [("IRT", 10), ("IRHR", 1_000), ("IRHT", 10_000)])
def test_an_iranian_code_is_stored_as_rials_with_its_exact_factor(code: str, factor: int) -> None:
    amount = Decimal("12500.5")
    engine, changelog = engine_with([won(NOW - HOUR, 1, amount, code)])
    rials = value(engine, "salespulse_sales_amount", window="24h", region="north", currency="IRR")
    assert rials == amount * factor
    assert isinstance(rials, Decimal)
    assert not any(lab.get("currency") == code for _, lab, _ in engine.samples(range(4)))
    # The changelog holds the integer count of rials, [offset, rials, deals].
    records = [exact_json.loads(v) for k, v in changelog if b'"money","h"' in k and b"IRR" in k]
    assert records == [[0, int(amount * factor), 1]]


def test_amounts_beyond_a_floats_digits_stay_exact() -> None:
    amount = Decimal("999999999999999.99")  # 17 significant digits: a float would round it
    assert Decimal(float(amount)) != amount
    engine, _ = engine_with([won(NOW - HOUR, 1, amount, "USD"), won(NOW - HOUR, 2, amount, "USD")])
    total = value(engine, "salespulse_sales_amount", window="24h", region="north", currency="USD")
    assert total == Decimal("1999999999999999.98")


def test_a_finer_amount_is_rounded_half_to_even_and_counted() -> None:
    events = [
        won(NOW - HOUR, 1, Decimal("10.005"), "USD"),  # 1000.5 cents -> 1000
        won(NOW - HOUR, 2, Decimal("10.015"), "USD"),  # 1001.5 cents -> 1002
        won(NOW - HOUR, 3, Decimal("12500.50000000"), "USD"),  # vtiger's 8 decimals, exact
        won(NOW - HOUR, 4, Decimal("1.5"), "IRR"),  # half a rial -> 2
    ]
    engine, _ = engine_with(events)
    assert value(engine, "salespulse_sales_amount", window="24h", region="north", currency="USD") == Decimal(
        "12520.52"
    )
    assert value(engine, "salespulse_sales_amount", window="24h", region="north", currency="IRR") == 2
    assert engine.counters(range(4))["rounded"] == {"USD": 2, "IRR": 1}


def test_prices_keep_millionths_of_their_currency() -> None:
    event = {
        "event_id": "p-1",
        "type": "product.price_set",
        "occurred_at": format_time(NOW - HOUR),
        "source": "test",
        "data": {"product": "api-call", "price": Decimal("0.0035"), "currency": "USD"},
    }
    engine, _ = engine_with([event])
    assert value(engine, "salespulse_list_price", product="api-call", currency="USD") == Decimal("0.0035")


def test_sums_past_64_bits_survive_the_changelog_exactly() -> None:
    # 10**15 IRHT is 10**19 rials, over 2**63; three of them are over 2**64.
    events = [won(NOW - HOUR, n, 10**15, "IRHT") for n in range(3)]
    engine, changelog = engine_with(events)
    want = Decimal(3 * 10**19)
    assert value(engine, "salespulse_sales_amount", window="24h", region="north", currency="IRR") == want
    restored = Engine(clock=format_time(NOW), partitions=4)
    for key, record in changelog:
        restored.restore(key, record)
    assert value(restored, "salespulse_sales_amount", window="24h", region="north", currency="IRR") == want


# -- the reporting currency --------------------------------------------------------------

RATES_CSV = """date,currency,rate
2026-10-01,USD,0.90
2026-11-20,USD,0.95
2026-11-25,USD,0.92
2026-10-01,GBP,1.15
2026-11-26,GBP,1.17
2026-11-01,IRT,0.0000215
2026-11-24,IRR,0.0000020
"""
# EUR reports; JPY has no rate at all; IRR's first rate is Nov 1 (per Toman), so a rial deal
# of Oct 28 has none; USD changes rate inside the 7d and 24h windows, GBP today.


def corpus() -> list[dict[str, Any]]:
    events = []
    n = 0
    for age_hours, amount, currency, region in [
        (1, Decimal("1000.00"), "USD", "north"),
        (20, Decimal("250.10"), "USD", "south"),
        (30, Decimal("99.99"), "EUR", "north"),
        (50, Decimal("5000"), "USD", "north"),  # Nov 24: the Nov 20 rate
        (90, Decimal("123.45"), "GBP", "south"),
        (5, Decimal("77.7"), "GBP", "south"),  # today: the new GBP rate
        (3, Decimal("2500000000000"), "IRR", "tehran"),
        (60, Decimal("125000.5"), "IRT", "tehran"),  # Nov 23: the Nov 1 rate per Toman
        (29 * 24, Decimal("40000000"), "IRR", "tehran"),  # Oct 28: before IRR's first rate
        (4, Decimal("15000"), "JPY", "tokyo"),  # never a rate
        (10 * 24, Decimal("400.00"), "USD", "north"),
    ]:
        n += 1
        kind = ("new", "upsell", "cross_sell")[n % 3]
        events.append(won(NOW - age_hours * HOUR, n, amount, currency, region, kind))
    for age_hours, amount, currency, channel in [
        (2, Decimal("300.00"), "USD", "web"),
        (30, Decimal("120"), "EUR", "event"),
        (6, Decimal("9000"), "JPY", "web"),
    ]:
        n += 1
        events.append(spend(NOW - age_hours * HOUR, n, amount, currency, channel))
    return events


def reference_fx() -> reference.Fx:
    """The rates as the reference reads them: plainly, per stored currency."""
    fx = reference.Fx("EUR")
    for line in RATES_CSV.splitlines()[1:]:
        day, currency, rate = line.split(",")
        days = parse_time(f"{day}T00:00:00Z") // DAY
        per_unit = Decimal(rate) / {"IRT": 10}.get(currency, 1)
        fx.rates.setdefault("IRR" if currency == "IRT" else currency, {})[days] = per_unit
    return fx


def test_every_reporting_series_equals_the_reference_with_rate_changes_and_a_missing_rate() -> None:
    events = corpus()
    engine, _ = engine_with(events, parse_rates(RATES_CSV, "EUR"))
    ref = reference.expected(events, NOW, fx=reference_fx())
    actual = gauges(engine)
    assert not reference.gauge_diff(actual, ref.gauges)
    reporting = {k for k in ref.gauges if k[0].endswith(("_reporting", "_previous_rates"))}
    assert len(reporting) > 30
    view = engine.kpis_view(range(4))
    assert not reference.diff(view["windows"], ref.windows)
    # The missing rates are counted, never taken as 1.0.
    sales = view["windows"]["30d"]["sales"]
    assert sales["unconverted"] == {
        "IRR": {"events": 1, "amount": Decimal(40000000)},
        "JPY": {"events": 1, "amount": Decimal(15000)},
    }
    at_one = engine_with(events, parse_rates(RATES_CSV + "2026-01-01,JPY,1\n", "EUR"))[0]
    taken = at_one.kpis_view(range(4))["windows"]["30d"]["sales"]["amount_reporting"]
    assert taken - sales["amount_reporting"] == 15000  # what Odoo's fallback to 1.0 would add
    assert view["windows"]["24h"]["acquisition"]["spend_unconverted_events"] == {"JPY": 1.0}


def price(t: int, n: int, amount: Any, currency: str) -> dict[str, Any]:
    return {
        "event_id": f"price-{n}",
        "type": "product.price_set",
        "occurred_at": format_time(t),
        "source": "test",
        "data": {"product": f"p-{n}", "price": amount, "currency": currency},
    }


def test_each_money_event_applied_with_no_rate_is_counted_once_by_currency_and_kept() -> None:
    events = corpus()
    jpy_deal = next(e for e in events if e["type"] == "deal.won" and e["data"]["currency"] == "JPY")
    prices = [
        price(NOW - HOUR, 1, Decimal("9.99"), "JPY"),  # no JPY rate at all: counted
        # Before IRR's first rate, but a price converts at the newest rate: not counted.
        price(parse_time("2026-10-15T00:00:00Z"), 2, 120000, "IRR"),
    ]
    engine, changelog = engine_with([*events, jpy_deal, *prices], parse_rates(RATES_CSV, "EUR"))
    # The Oct 28 rial deal (before IRR's first rate), the JPY deal (its copy is a duplicate and
    # counts nothing), the JPY spend and the JPY price. Never a dated deal that has its rate.
    want = {"IRR": 1, "JPY": 3}
    assert engine.counters(range(4))["unconverted"] == want
    restored = Engine(clock=format_time(NOW), partitions=4)
    for key, record in changelog:
        restored.restore(key, record)
    assert restored.counters(range(4))["unconverted"] == want
    # A counter of what arrived with no rate: a rates file that has them now changes no state,
    # only what is read (the windowed gauge of amounts left out).
    engine.fx = parse_rates(RATES_CSV + "2026-01-01,JPY,0.0061\n2026-01-01,IRR,0.0000019\n", "EUR")
    assert engine.counters(range(4))["unconverted"] == want
    left_out = {k: v for k, v in gauges(engine).items() if k[0] == "salespulse_fx_unconverted_events" and v}
    assert left_out == {}
    # Without a reporting currency nothing converts, and nothing is missing a rate.
    assert engine_with(events)[0].counters(range(4))["unconverted"] == {}


def test_a_worked_example_in_two_currencies() -> None:
    """docs/semantics.md's example: 1,000 USD on Nov 24 at 0.95 and 500 EUR on Nov 26."""
    events = [won(NOW - 2 * DAY + HOUR, 1, Decimal("1000"), "USD"), won(NOW - HOUR, 2, Decimal("500"), "EUR")]
    engine, _ = engine_with(events, parse_rates(RATES_CSV, "EUR"))
    sales = engine.kpis_view(range(4))["windows"]["7d"]["sales"]
    assert sales["amount_reporting"] == Decimal("1450.00")  # 1,000 x 0.95 + 500
    # At the previous period's rates (Nov 18, before the window: 0.90): 900 + 500.
    assert sales["amount_reporting_previous_rates"] == Decimal("1400.00")
    assert sales["rate_effect"] == Decimal("50.00")


def test_a_new_rates_file_changes_what_is_read_and_no_state() -> None:
    events = corpus()
    engine, _ = engine_with(events, parse_rates(RATES_CSV, "EUR"))
    before = gauges(engine)
    engine.fx = parse_rates(RATES_CSV + "2026-10-01,JPY,0.0061\n", "EUR")
    after = gauges(engine)
    key = (
        "salespulse_fx_unconverted_events",
        frozenset({"window": "24h", "type": "deal.won", "currency": "JPY"}.items()),
    )
    assert (before[key], after[key]) == (1.0, 0.0)
    tokyo = ("salespulse_sales_amount_reporting", frozenset({"window": "24h", "region": "tokyo"}.items()))
    assert (before[tokyo], after[tokyo]) == (0, Decimal("91.5000"))
    engine.fx = parse_rates(RATES_CSV, "EUR")
    assert gauges(engine) == before


def test_the_reporting_currency_converts_at_exactly_one_and_nothing_else_does() -> None:
    rates = parse_rates("date,currency,rate\n2026-11-01,USD,0.9\n", "EUR")
    assert rates.rate("EUR", 0) == 1
    assert rates.rate("USD", TODAY) == Decimal("0.9")
    assert rates.rate("USD", parse_time("2026-10-31T23:59:59Z") // DAY) is None  # before the first rate
    assert rates.rate("GBP", TODAY) is None
    assert rates.to_reporting(123456, "USD", TODAY) == EXACT.multiply(Decimal("1234.56"), Decimal("0.9"))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("day,currency,rate\n", "header"),
        ("date,currency,rate\n2026-13-01,USD,0.9\n", "line 2: '2026-13-01' is not a date"),
        ("date,currency,rate\n2026-11-01,usd,0.9\n", "line 2: 'usd' is not a currency"),
        ("date,currency,rate\n2026-11-01,USD,0\n", "line 2: rate '0' is not a positive number"),
        ("date,currency,rate\n2026-11-01,USD,nan\n", "not a positive number"),
        ("date,currency,rate\n2026-11-01,USD,0.9\n2026-11-01,USD,0.8\n", "line 3: a second USD rate"),
        ("date,currency,rate\n2026-11-01,EUR,1\n", "reporting currency"),
        ("date,currency,rate\n2026-11-01,USD\n", "line 2 has 2 fields"),
    ],
)
def test_a_bad_rates_file_is_refused_with_its_line_and_reason(text: str, reason: str) -> None:
    with pytest.raises(RatesError, match=reason.replace("(", r"\(")):
        parse_rates(text, "EUR")


def test_a_rates_file_that_turns_bad_keeps_the_rates_in_force(tmp_path: Path) -> None:
    path = tmp_path / "rates.csv"
    path.write_text("date,currency,rate\n2026-11-01,USD,0.9\n")
    watched = RatesFile.open(path, "EUR")
    assert not watched.poll()  # unchanged
    path.write_text("date,currency,rate\n2026-11-01,USD,zero\n")
    assert not watched.poll()
    assert not watched.valid and watched.rates.rate("USD", TODAY) == Decimal("0.9")
    path.write_text("date,currency,rate\n2026-11-01,USD,0.91\n")
    assert watched.poll() and watched.valid and watched.rates.rate("USD", TODAY) == Decimal("0.91")
