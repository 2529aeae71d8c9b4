"""Detractor follow-up with real workers, the real broker and a real Prometheus.

The list (``GET /detractors``, ``salespulse detractors``), the gauges and the follow-up
rates equal tests/reference.py, also after a SIGKILL mid-stream and a restart; a detractor
left unanswered past the target makes SalesPulseDetractorsUnanswered fire in Prometheus,
and a call to that customer clears it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from salespulse.schemas.event_time import format_time
from tests.conftest import FIXED_NOW, REPO, WorkerProcess, http, wait_until
from tests.detractor_corpus import HOUR, activity, answer, corpus
from tests.prometheus_process import running_prometheus
from tests.reference import expected
from tests.test_access import request
from tests.test_faults import assert_worker_exact, chunked, send_all, wait_applied
from tests.test_faults import corpus as generated

NOW = int(FIXED_NOW.timestamp())
TOKEN = "d3tractor-token-of-the-live-tests"


def cases(worker: WorkerProcess, status: str, window: str) -> list[dict[str, Any]]:
    code, body = request(
        f"http://{worker.address}/detractors?status={status}&window={window}", auth=f"Bearer {TOKEN}"
    )
    assert code == 200, body
    view = json.loads(body)
    assert (view["status"], view["window"]) == (status, window)
    return list(view["cases"])


def cli_cases(worker: WorkerProcess, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "salespulse.streams", "detractors", "--workers", worker.address, *args],
        capture_output=True,
        cwd=REPO,
        timeout=60,
        check=False,
        env={"SALESPULSE_INGEST_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr.decode()
    return dict(json.loads(done.stdout)) if "--json" in args else {"text": done.stdout.decode()}


@pytest.mark.slow
def test_cases_gauges_and_rates_equal_the_reference_after_a_sigkill_mid_stream(
    spawn_worker: Any, producer: Any
) -> None:
    # Hand-made cases (every rule) for two prefixes, plus generated traffic with comments,
    # re-answers of a response and follow-up calls.
    events = corpus(NOW, "a-") + generated(31, 6000) + corpus(NOW, "b-")
    ref = expected(events, NOW)
    assert len(ref.listed("open")) >= 10 and len(ref.listed("followed_up")) >= 10
    assert any(d.repeat for d in ref.deliveries)
    env = {"SALESPULSE_WEB_HOST": "0.0.0.0", "SALESPULSE_INGEST_TOKEN": TOKEN}
    worker = spawn_worker("detractors", **env)
    worker.wait_ready()
    first, second = chunked(events, len(events) // 2 + 1)
    send_all(producer, first)
    timer = threading.Timer(0.2, worker.kill)  # SIGKILL while the second half streams in
    timer.start()
    send_all(producer, second)
    timer.join()
    worker = spawn_worker("detractors", **env)  # same data dir: recovers from the changelog
    worker.wait_ready()
    wait_applied(worker, len(events))
    assert_worker_exact(worker, ref, "after SIGKILL and restart")  # every gauge and rate
    for status in ("open", "followed_up", "all"):
        for window in ("24h", "30d", "all"):
            assert cases(worker, status, window) == ref.listed(status, window), (status, window)
    # The operator's merged view, and the default query of the view.
    assert cli_cases(worker, "--status", "all", "--window", "all", "--json")["cases"] == ref.listed(
        "all", "all"
    )
    assert cases(worker, "open", "30d")[0]["answered_at"] <= cases(worker, "open", "30d")[-1]["answered_at"]
    assert f"{len(ref.listed('open'))} cases" in cli_cases(worker)["text"]
    # Customer-level data: the token is needed, and bad queries are refused with a reason.
    base = f"http://{worker.address}/detractors"
    assert request(base)[0] == 401
    code, body = request(f"{base}?status=closed", auth=f"Bearer {TOKEN}")
    assert code == 400 and b"status must be one of" in body
    code, body = request(f"{base}?window=2d", auth=f"Bearer {TOKEN}")
    assert code == 400 and b"window must be one of" in body


def test_an_unanswered_detractor_fires_the_alert_in_prometheus_and_a_call_clears_it(
    spawn_worker: Any, producer: Any, tmp_path: Path
) -> None:
    worker = spawn_worker("alert")
    worker.wait_ready()
    producer.send(answer(NOW - 30 * HOUR, "e2e-a1", "C-unanswered", 2, comment="nobody called"))
    producer.send(answer(NOW - 2 * HOUR, "e2e-a2", "C-recent", 3))  # open, within the target
    producer.flush()
    wait_until(lambda: worker.progress()["events"] == 2)
    # The alert rule as shipped, with a shorter `for` so the test need not wait 15 minutes.
    rules = yaml.safe_load((REPO / "prometheus" / "rules" / "alerts-kpi.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "SalesPulseDetractorsUnanswered":
                assert rule["for"] == "15m"
                rule["for"] = "2s"
    fast = tmp_path / "alerts-kpi.yml"
    fast.write_text(yaml.safe_dump(rules))
    shipped = REPO / "prometheus" / "rules"
    rule_files = [shipped / "thresholds.yml", shipped / "recording.yml", fast]
    with running_prometheus(tmp_path, [worker.address], rule_files) as base:

        def firing() -> list[dict[str, Any]]:
            status, body = http(f"{base}/api/v1/alerts")
            assert status == 200
            alerts = json.loads(body)["data"]["alerts"]
            return [
                a
                for a in alerts
                if a["labels"]["alertname"] == "SalesPulseDetractorsUnanswered" and a["state"] == "firing"
            ]

        alert = wait_until(firing, timeout=60)[0]
        assert alert["annotations"]["description"].startswith("1 detractor cases")
        assert "/detractors" in alert["annotations"]["description"]
        producer.send(activity(NOW - 1 * HOUR, "e2e-call", "C-unanswered", "call"))
        producer.flush()
        wait_until(lambda: not firing(), timeout=60)
    assert [c["customer_id"] for c in cases_local(worker)] == ["C-recent"]
    assert format_time(NOW - 1 * HOUR) in {c["followed_up_at"] for c in cases_local(worker, "followed_up")}


def cases_local(worker: WorkerProcess, status: str = "open") -> list[dict[str, Any]]:
    code, body = request(f"http://{worker.address}/detractors?status={status}", auth=f"Bearer {worker.token}")
    assert code == 200, body
    return list(json.loads(body)["cases"])
