"""Money on a real worker (embedded broker): rial amounts of any size, exact in ``/kpis``,
``/metrics`` and the digest, also after a restart; a rates file changed under a running worker;
and the Persian digest in Toman, rendered by Chromium.

One worker serves the module: 1,000 won deals of 2.5 x 10^13 rials each (2.5 x 10^16 in all,
more than a float's 2^53 can count in units of one), plus a few dollars, with EUR as the
reporting currency.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from matplotlib.image import imread

from salespulse.schemas.event_time import format_time
from salespulse.streams.endpoints.producer import EventProducer
from salespulse.streams.report.catalogue import catalogue
from salespulse.streams.report.digest import build_digest
from salespulse.streams.report.files import write_digest
from salespulse.streams.settings import Settings
from salespulse.streams.tools.broker import start_broker
from tests.chromium import console_errors, screenshot
from tests.conftest import FIXED_NOW, WorkerProcess, wait_until
from tests.reference import parse_metrics
from tests.test_report import png_size

NOW = int(FIXED_NOW.timestamp())
HOUR = 3600
DEALS = 1000
RIALS = 25_000_000_000_000  # 2.5 x 10^13 a deal
TOTAL = DEALS * RIALS  # 2.5 x 10^16
RATES = "date,currency,rate\n2026-10-01,USD,0.90\n2026-10-01,IRR,0.0000020\n"
FA = catalogue("fa")


def deal(n: int, amount: Any, currency: str) -> dict[str, Any]:
    return {
        "event_id": f"rial-{n}",
        "type": "deal.won",
        "occurred_at": format_time(NOW - (n % 700) * HOUR - 60),  # all within 30 days
        "source": "test",
        "data": {
            "deal_id": f"D-{n}",
            "customer_id": f"C-{n}",
            "rep_id": "r-1",
            "region": ("tehran", "isfahan")[n % 2],
            "product": "erp",
            "kind": "new",
            "amount": amount,
            "currency": currency,
        },
    }


@pytest.fixture(scope="module")
def rates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fx") / "rates.csv"
    path.write_text(RATES)
    return path


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, rates: Path) -> Iterator[WorkerProcess]:
    broker = start_broker()
    running: WorkerProcess | None = None
    try:
        running = WorkerProcess(
            broker.bootstrap,
            tmp_path_factory.mktemp("money") / "w1",
            SALESPULSE_REPORTING_CURRENCY="EUR",
            SALESPULSE_FX_RATES=str(rates),
        ).start()
        running.wait_ready()
        events = [deal(n, RIALS, "IRR") for n in range(DEALS)]
        events.append(deal(DEALS, Decimal("1234.56"), "USD"))
        with EventProducer(Settings.from_env({"SALESPULSE_BROKER": broker.bootstrap})) as producer:
            producer.send_many(events)
        wait_until(lambda: running.progress()["events"] == len(events), timeout=60)
        yield running
    finally:
        if running is not None:
            running.kill()
        broker.stop()


def rial_totals(worker: WorkerProcess) -> tuple[str, float]:
    """The 30-day rial sales as /kpis writes them, and summed from /metrics."""
    kpis = worker.kpis()["windows"]["30d"]["sales"]
    scrape = parse_metrics(worker.metrics())
    metrics = [
        v
        for (name, labels), v in scrape.gauges.items()
        if name == "salespulse_sales_amount" and ("window", "30d") in labels and ("currency", "IRR") in labels
    ]
    return kpis["amount_by_currency"]["IRR"], sum(metrics)


def sales_30d(worker: WorkerProcess) -> dict[str, Any]:
    return dict(worker.kpis()["windows"]["30d"]["sales"])


def test_a_thousand_deals_of_25_trillion_rials_sum_exactly_in_kpis_metrics_and_the_digest(
    worker: WorkerProcess,
) -> None:
    kpis, metrics = rial_totals(worker)
    assert kpis == "25000000000000000"  # an exact decimal string, not a float
    assert metrics == 2.5e16 and int(metrics) == TOTAL  # 2.5e16 is a float exactly (docs/metrics.md)
    by_region = sales_30d(worker)["amount_by_region"]
    assert Decimal(by_region["tehran"]["IRR"]) + Decimal(by_region["isfahan"]["IRR"]) == TOTAL
    digest = build_digest([worker.address], "30d", toman=False)
    assert "Sales amount (IRR): 25,000,000,000,000,000" in digest.text
    assert "Sales amount (USD): 1,234.56" in digest.text
    # EUR first: 2.5e16 rials at 0.0000020 and 1,234.56 dollars at 0.90.
    assert "Sales amount (EUR): 50,000,001,111.10" in digest.text
    assert digest.text.index("Sales amount (EUR)") < digest.text.index("Sales amount (IRR)")


def test_salespulse_kpis_shows_the_reporting_currency_first_and_exact_rials(worker: WorkerProcess) -> None:
    def kpis(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "salespulse.streams", "kpis", "--workers", worker.address, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    table = kpis()
    assert "25,000,000,000,000,000" in table
    assert table.index("Sales amount (EUR, all currencies)") < table.index("Sales amount (IRR)")
    # One rate all month: the rates at the end of the previous period are this period's.
    effect = table.index("Rate effect (EUR")
    assert table.index("Sales amount (EUR, all currencies)") < effect < table.index("Sales amount (IRR)")
    assert "+0.00" in table[effect : table.index("\n", effect)]
    month = orjson.loads(kpis("--json"))["windows"]["30d"]["sales"]
    assert month["amount_by_currency"]["IRR"] == "25000000000000000"
    assert month["amount_reporting"] == "50000001111.10"


def test_the_persian_digest_shows_rials_as_toman_and_chromium_renders_it(
    worker: WorkerProcess, tmp_path: Path
) -> None:
    digest = build_digest([worker.address], "30d", locale="fa")  # Toman: Persian's default
    toman = FA.num(f"{TOTAL // 10:,}")  # 2,500,000,000,000,000 in Persian digits and separators
    assert f"{FA.t('sales.amount')} (تومان): {toman}" in digest.text
    assert "IRR" not in digest.text and "ریال" not in digest.text
    page = write_digest(digest, tmp_path)
    assert toman in page.read_text() and "تومان" in page.read_text()
    shot = tmp_path / "digest-fa-toman.png"
    done = screenshot(page, shot, tmp_path / "chromium-profile", (1200, 2400))
    assert done.returncode == 0, done.stderr[-3000:]
    assert not console_errors(done.stderr)
    assert png_size(shot.read_bytes()) == (1200, 2400)
    pixels = imread(shot)[:, :, :3]
    ink = pixels.sum(axis=2) < 1.5
    assert ink.sum() > 50_000, "the page rendered almost nothing"
    # Right to left: the heading band's ink is on the right half.
    band = ink[40:110]
    assert int(band[:, 600:].sum()) > 3 * int(band[:, :600].sum())


def test_a_changed_rates_file_is_in_force_within_a_minute_without_a_restart(
    worker: WorkerProcess, rates: Path
) -> None:
    assert sales_30d(worker)["amount_reporting"] == "50000001111.10"
    rates.write_text(RATES.replace("0.0000020", "0.0000021"))
    started = time.monotonic()
    wait_until(lambda: sales_30d(worker)["amount_reporting"] == "52500001111.10", timeout=60)
    assert time.monotonic() - started < 60
    # The reporting series of /metrics too: 2.5e16 rials at 0.0000021 and 1,234.56 USD at 0.90.
    month = parse_metrics(worker.metrics()).gauges
    assert sum(
        v
        for (name, labels), v in month.items()
        if name == "salespulse_sales_amount_reporting" and ("window", "30d") in labels
    ) == pytest.approx(52500001111.104)
    assert "salespulse_fx_rates_file_valid 1.0" in worker.metrics()
    # A file that no longer reads keeps the rates in force, and says so.
    rates.write_text("date,currency,rate\n2026-10-01,IRR,zero\n")
    wait_until(lambda: "salespulse_fx_rates_file_valid 0.0" in worker.metrics(), timeout=60)
    assert sales_30d(worker)["amount_reporting"] == "52500001111.10"
    # No IRR rate: the rials are out of the total and counted, never taken at 1.0.
    rates.write_text("date,currency,rate\n2026-10-01,USD,0.90\n")
    wait_until(lambda: sales_30d(worker)["amount_reporting"] == "1111.10", timeout=60)
    sales = sales_30d(worker)
    assert sales["unconverted"] == {"IRR": {"events": DEALS, "amount": str(TOTAL)}}
    scrape = parse_metrics(worker.metrics())
    missing = {
        "window": "30d",
        "type": "deal.won",
        "currency": "IRR",
    }
    assert scrape.gauges["salespulse_fx_unconverted_events", frozenset(missing.items())] == DEALS
    rates.write_text(RATES)
    wait_until(lambda: sales_30d(worker)["amount_reporting"] == "50000001111.10", timeout=60)


def test_a_deal_applied_with_no_rate_is_counted_in_kpis_metrics_and_the_digest(worker: WorkerProcess) -> None:
    assert worker.kpis()["counters"]["unconverted"] == {}  # every deal so far had its rate
    yen = deal(DEALS + 1, 500000, "JPY")  # the rates file has no JPY
    with EventProducer(Settings.from_env({"SALESPULSE_BROKER": worker.env["SALESPULSE_BROKER"]})) as producer:
        producer.send_many([yen, yen])  # the copy is a duplicate: counted once
    wait_until(lambda: worker.kpis()["counters"]["unconverted"] == {"JPY": 1}, timeout=60)
    scrape = parse_metrics(worker.metrics())
    assert scrape.types["salespulse_fx_unconverted"] == "counter"
    assert 'salespulse_fx_unconverted_total{currency="JPY"} 1.0' in worker.metrics()
    digest = build_digest([worker.address], "30d", toman=False)
    assert "Events applied with no exchange rate (all time): 1" in digest.text
    assert sales_30d(worker)["amount_reporting"] == "50000001111.10"  # never at 1.0


def test_the_rial_sums_are_exact_after_a_restart(worker: WorkerProcess) -> None:
    worker.kill()
    worker.start()
    worker.wait_ready()
    wait_until(lambda: rial_totals(worker) == ("25000000000000000", 2.5e16), timeout=60)
    assert worker.kpis()["counters"]["unconverted"] == {"JPY": 1}  # kept in the changelog
    digest = build_digest([worker.address], "30d", toman=False)
    assert "Sales amount (IRR): 25,000,000,000,000,000" in digest.text
