"""A real Prometheus scraping a real worker and a real vtiger connector: every panel query
answers, every rule evaluates."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from salespulse.streams.tools.generator import GeneratorConfig, generate
from tests.conftest import FIXED_NOW, REPO, http, wait_until
from tests.dashboard_queries import panel_queries
from tests.prometheus_process import query, ready_query, running_prometheus
from tests.test_connector_vtiger import connector_env, start_connector
from tests.vtiger_fake import FakeVtiger

DASHBOARDS = sorted((REPO / "dashboards").glob("*.json"))


@pytest.fixture
def connector(broker: Any) -> Any:
    """A long-running vtiger connector polling a quiet (empty) CRM every second."""
    crm = FakeVtiger()
    crm.start()
    env = connector_env(broker, crm, SALESPULSE_VTIGER_POLL="1")
    process = start_connector(env, "--loglevel", "warning")  # nobody reads its output here
    try:
        yield f"127.0.0.1:{env['SALESPULSE_CONNECTOR_PORT']}"
    finally:
        process.terminate()
        process.wait(15)
        crm.stop()


@pytest.fixture
def prometheus(tmp_path: Path, spawn_worker: Any, producer: Any, connector: str) -> Any:
    worker = spawn_worker(
        SALESPULSE_TARGETS=str(REPO / "config" / "targets.example.yml"),
        SALESPULSE_REPORTING_CURRENCY="EUR",
        SALESPULSE_FX_RATES=str(REPO / "config" / "fx-rates.example.csv"),
    )
    for event in generate(GeneratorConfig(seed=21, now=FIXED_NOW, late_share=0.01), 4000):
        producer.send(event)
    producer.send_raw("crm.leads", b"not json", key=b"x")
    producer.flush()
    worker.wait_ready()
    wait_until(lambda: worker.progress()["events"] + worker.progress()["rejected"] >= 4000)
    rules = sorted((REPO / "prometheus" / "rules").glob("*.yml"))
    with running_prometheus(tmp_path, [worker.address], rules, connectors=[connector]) as base:
        # rate() and the 2-minute running maxima need a few scrapes before they answer.
        wait_until(lambda: ready_query(base, "salespulse:events:rate5m"), timeout=60)
        # Latency quantiles need events applied while Prometheus watches.
        for event in generate(GeneratorConfig(seed=22, recent_share=1.0), 300):
            producer.send(event)
            time.sleep(0.01)
        producer.flush()
        wait_until(lambda: ready_query(base, "salespulse:event_to_state_seconds:p99"), timeout=60)
        yield base


def test_every_panel_query_of_every_dashboard_returns_a_series(prometheus: str) -> None:
    assert len(DASHBOARDS) == 2
    empty = []
    total = 0
    for board in DASHBOARDS:
        for title, expr in panel_queries(board):
            total += 1
            if not query(prometheus, expr):
                empty.append(f"{board.name} / {title}: {expr}")
    assert total > 20
    assert not empty, "\n".join(empty)


def test_every_rule_evaluates_and_every_recording_rule_has_data(prometheus: str) -> None:
    status, body = http(f"{prometheus}/api/v1/rules")
    assert status == 200
    groups = orjson.loads(body)["data"]["groups"]
    recording = [r for g in groups for r in g["rules"] if r["type"] == "recording"]
    alerting = [r for g in groups for r in g["rules"] if r["type"] == "alerting"]
    assert recording and alerting
    unhealthy = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"]
    assert not unhealthy, unhealthy
    no_data = [r["name"] for r in recording if not query(prometheus, r["name"])]
    assert not no_data, no_data
