"""Malformed and hostile input: clear 4xx over HTTP, dead letters on topics, no crash."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer

from salespulse.schemas.topics import DEADLETTER, INPUT_TOPICS
from salespulse.streams.tools.generator import GeneratorConfig, generate
from tests.conftest import FIXED_NOW, wait_until

TOKEN = "s3cret-token-of-the-ingest-tests"


def post(
    address: str, body: bytes, token: str | None = TOKEN, ctype: str = "application/json"
) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://{address}/events", data=body, method="POST")
    request.add_header("Content-Type", ctype)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def valid_events(n: int, seed: int = 3) -> list[dict[str, Any]]:
    return list(generate(GeneratorConfig(seed=seed, now=FIXED_NOW), n))


@pytest.fixture
def worker(spawn_worker: Any) -> Any:
    w = spawn_worker(SALESPULSE_INGEST_TOKEN=TOKEN)
    w.wait_ready()
    return w


def test_hostile_http_input_gets_a_4xx_naming_the_problem_and_the_worker_keeps_serving(worker: Any) -> None:
    good = valid_events(1)[0]

    def with_data(**changes: Any) -> bytes:
        event = orjson.loads(orjson.dumps(good))
        event["data"].update(changes)
        return orjson.dumps(event)

    missing = orjson.loads(orjson.dumps(good))
    del missing["event_id"]
    nps = next(
        e for e in valid_events(400) if e["type"] == "survey.answered" and e["data"]["survey"] == "nps"
    )
    won = next(e for e in valid_events(400) if e["type"] == "deal.won")
    cases: list[tuple[str, bytes, str | None, int, str]] = [
        ("not JSON", b"{this is not json", TOKEN, 400, "not valid JSON"),
        ("wrong type", orjson.dumps([good, "a string"]), TOKEN, 400, "must be an object"),
        ("missing field", orjson.dumps(missing), TOKEN, 400, "event_id"),
        ("score 11", orjson.dumps({**nps, "data": {**nps["data"], "score": 11}}), TOKEN, 400, "score"),
        (
            "negative amount",
            orjson.dumps({**won, "data": {**won["data"], "amount": -5}}),
            TOKEN,
            400,
            "amount",
        ),
        ("unknown type", orjson.dumps({**good, "type": "lead.exploded"}), TOKEN, 400, "unknown event type"),
        ("oversized body", b"[" + b" " * (9 * 1024 * 1024) + b"]", TOKEN, 413, "limit"),
        ("10,000-deep nesting", b"[" * 10_000 + b"]" * 10_000, TOKEN, 400, "nesting"),
        ("wrong token", orjson.dumps(good), "not-the-token", 401, "token"),
        ("no token", orjson.dumps(good), None, 401, "token"),
    ]
    for name, body, token, status, needle in cases:
        got_status, got = post(worker.address, body, token)
        assert got_status == status, (name, got)
        assert needle in orjson.dumps(got).decode(), (name, got)
    # Every bad event is named, by index, and nothing of the request is written.
    events = valid_events(5)
    events[1] = {**events[1], "occurred_at": "yesterday"}
    events[3] = {**events[3], "data": {}}
    status, body = post(worker.address, orjson.dumps(events))
    assert status == 400
    assert [p["index"] for p in body["problems"]] == [1, 3]
    assert all(p["field"] and p["reason"] for p in body["problems"])
    # Still serving, and valid events sent afterwards are accepted and applied.
    fresh = valid_events(50, seed=11)
    ndjson = b"\n".join(orjson.dumps(e) for e in fresh)
    status, body = post(worker.address, ndjson, ctype="application/x-ndjson")
    assert status == 202, body
    assert body == {"accepted": 50}
    status, body = post(worker.address, orjson.dumps(fresh[0]))
    assert status == 202
    wait_until(lambda: sum(worker.kpis()["counters"]["events"].values()) == 50)
    wait_until(lambda: worker.progress()["duplicates"] == 1)
    assert sum(worker.kpis()["counters"]["events"].values()) == 50


def test_garbage_on_every_input_topic_goes_to_the_dead_letter_topic_and_is_counted(
    worker: Any, producer: Any, settings: Any
) -> None:
    deep = b"[" * 5000 + b"]" * 5000
    lead = next(e for e in valid_events(50) if e["type"] == "lead.created")
    garbage: list[tuple[bytes, str]] = [
        (b"\x00\xffnot json at all", "not_json"),
        (orjson.dumps({"type": "lead.created", "data": {}}), "schema"),
        (orjson.dumps({**lead, "type": "nope.nope"}), "unknown_type"),
        (b'{"pad": "' + b"x" * 70_000 + b'"}', "too_large"),
        (deep, "not_json"),
    ]
    for topic in INPUT_TOPICS:
        for value, _ in garbage:
            producer.send_raw(topic, value, key=b"k")
    producer.send_raw("crm.deals", orjson.dumps(lead), key=b"L-1")  # a lead on the deals topic
    producer.flush()
    expected = {"not_json": 10, "schema": 5, "unknown_type": 5, "too_large": 5, "wrong_topic": 1}
    wait_until(lambda: {k: v for k, v in worker.kpis()["counters"]["rejected"].items() if v} == expected)
    consumer = KafkaConsumer(
        DEADLETTER,
        bootstrap_servers=list(settings.brokers),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
    )
    reasons: dict[str, int] = {}
    deadline = time.monotonic() + 20
    while sum(reasons.values()) < 26 and time.monotonic() < deadline:
        for message in consumer:
            headers = dict(message.headers)
            reason = headers["salespulse.reason"].decode()
            reasons[reason] = reasons.get(reason, 0) + 1
            assert headers["salespulse.detail"]
            assert headers["salespulse.source"].decode().split("/")[0] in INPUT_TOPICS
    consumer.close()
    assert reasons == expected
    metrics = worker.metrics()
    assert 'salespulse_events_rejected_total{reason="not_json"} 10.0' in metrics
    # The worker keeps running and counts what comes next.
    producer.send(valid_events(1, seed=99)[0])
    producer.flush()
    wait_until(lambda: sum(worker.kpis()["counters"]["events"].values()) == 1)
