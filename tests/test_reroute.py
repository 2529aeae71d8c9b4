"""Exact with any producer: records on a wrong partition are forwarded, and ids count once.

Keyed state is exact only if every copy of a key lands on ``murmur2(key) mod partitions``.
confluent-kafka (librdkafka) hashes keys with CRC32 by default, and kafka-go's writer picks
partitions round robin. The worker forwards such records to their right partition, where
they are applied once; these tests hold every number to the independent reference.
"""

from __future__ import annotations

import random
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from typing import Any

import confluent_kafka
import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from salespulse.schemas.event_time import format_time
from salespulse.schemas.partitions import murmur2, partition_for
from salespulse.schemas.topics import DEADLETTER, route
from salespulse.streams.pipeline.engine import FORWARDED_FROM, Engine
from salespulse.streams.tools.generator import GeneratorConfig, generate
from tests.conftest import FIXED_NOW, WorkerProcess
from tests.reference import expected
from tests.test_agents_unit import Rec
from tests.test_faults import assert_exact, wait_applied

PARTITIONS = 4
NOW = int(FIXED_NOW.timestamp())
CLOCK = format_time(NOW)
TOKEN = "reroute-token-of-the-reroute-tests"


# -- the partitioner ---------------------------------------------------------------------------


def test_the_contract_partitioner_is_kafkas_murmur2() -> None:
    rng = random.Random(5)
    for _ in range(5_000):
        key = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        assert murmur2(key) == kafka_python_murmur2(key) & 0xFFFFFFFF, key
    # Values the Java client's tests pin down for these keys.
    assert [partition_for(k, 4) for k in (b"C-000001", b"C-000002", b"team-a")] == [
        (kafka_python_murmur2(k) & 0x7FFFFFFF) % 4 for k in (b"C-000001", b"C-000002", b"team-a")
    ]


# -- the engine, without Kafka -----------------------------------------------------------------


def lead(event_id: str, lead_id: str, t: int = NOW - 60) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "lead.created",
        "occurred_at": format_time(t),
        "source": "test",
        "data": {"lead_id": lead_id, "rep_id": "r-1", "region": "north", "source": "web"},
    }


def leads_1h(engine: Engine) -> int:
    return int(engine.kpis_view(range(PARTITIONS))["windows"]["1h"]["leads"]["leads"])


def test_a_record_on_its_right_partition_pays_no_forward() -> None:
    engine = Engine(clock=CLOCK, partitions=PARTITIONS)
    ev = lead("e1", "L-1")
    right = partition_for(b"L-1", PARTITIONS)
    out = engine.apply("crm.leads", right, [Rec(0, b"L-1", orjson.dumps(ev))])
    assert out.forwards == [] and out.deadletters == []
    assert leads_1h(engine) == 1
    assert engine.counters(range(PARTITIONS))["rerouted"] == dict.fromkeys(engine.partition_counts, 0)


def test_a_record_on_a_wrong_partition_is_forwarded_once_and_applied_where_it_belongs() -> None:
    engine = Engine(clock=CLOCK, partitions=PARTITIONS)
    value = orjson.dumps(lead("e1", "L-1"))
    right = partition_for(b"L-1", PARTITIONS)
    wrong = (right + 1) % PARTITIONS
    record = Rec(7, b"L-1", value, timestamp=NOW * 1000, headers=[("trace", b"abc")])
    out = engine.apply("crm.leads", wrong, [record])
    (forward,) = out.forwards
    assert (forward.topic, forward.partition, forward.key, forward.value) == (
        "crm.leads",
        right,
        b"L-1",
        value,
    )
    assert forward.timestamp == NOW * 1000, "the original record time, so latency includes the hop"
    assert forward.headers == [("trace", b"abc"), (FORWARDED_FROM, f"crm.leads/{wrong}/7".encode())]
    assert leads_1h(engine) == 0, "not applied where it arrived"
    assert engine.counters([wrong])["rerouted"]["crm.leads"] == 1
    # A replay of the same offset does not forward it again, nor count it again.
    assert engine.apply("crm.leads", wrong, [record]).forwards == []
    assert engine.counters([wrong])["rerouted"]["crm.leads"] == 1
    # Where it lands it counts once, even if a crash made it arrive twice.
    arrived = [Rec(offset, forward.key, forward.value, None, forward.headers) for offset in (0, 1)]
    engine.apply("crm.leads", right, arrived)
    assert leads_1h(engine) == 1
    assert engine.counters(range(PARTITIONS))["duplicates"] == 1


def test_a_forwarded_record_on_a_wrong_partition_again_is_dead_lettered_not_forwarded() -> None:
    engine = Engine(clock=CLOCK, partitions=PARTITIONS)
    right = partition_for(b"L-1", PARTITIONS)
    wrong = (right + 1) % PARTITIONS
    hop = [(FORWARDED_FROM, b"crm.leads/9/3")]
    out = engine.apply("crm.leads", wrong, [Rec(0, b"L-1", orjson.dumps(lead("e1", "L-1")), None, hop)])
    assert out.forwards == []
    (dead,) = out.deadletters
    assert dead.reason == "wrong_partition"
    assert "crm.leads/9/3" in dead.detail and "partition count" in dead.detail
    assert engine.counters([wrong])["rejected"]["wrong_partition"] == 1


def test_an_event_id_sent_again_an_hour_later_counts_once() -> None:
    engine = Engine(clock=CLOCK, partitions=1)
    first, restamped = lead("same", "L-1", NOW - 2 * 3600), lead("same", "L-1", NOW - 600)
    engine.apply(
        "crm.leads", 0, [Rec(0, b"L-1", orjson.dumps(first)), Rec(1, b"L-1", orjson.dumps(restamped))]
    )
    view = engine.kpis_view([0])
    assert view["windows"]["24h"]["leads"]["leads"] == 1
    assert view["windows"]["1h"]["leads"]["leads"] == 0, "the first copy counts, at its own time"
    assert view["counters"]["duplicates"] == 1


# -- real producers against a real worker ------------------------------------------------------


def corpus(seed: int, count: int) -> list[dict[str, Any]]:
    # No re-answers of a response: which answer of a response counts is the first on its
    # right partition, and forwarding reorders records there, which the reference (send
    # order) cannot know. Duplicates are byte-for-byte copies, so their order is moot.
    config = GeneratorConfig(
        seed=seed, now=FIXED_NOW, customers=300, duplicate_share=0.02, late_share=0.01, reanswer_share=0.0
    )
    return list(generate(config, count))


def post_events(worker: WorkerProcess, events: Sequence[dict[str, Any]]) -> None:
    for i in range(0, len(events), 500):
        body = b"\n".join(orjson.dumps(e) for e in events[i : i + 500])
        request = urllib.request.Request(f"http://{worker.address}/events", data=body, method="POST")
        request.add_header("Content-Type", "application/x-ndjson")
        request.add_header("Authorization", f"Bearer {TOKEN}")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 202


def rerouted_by_topic(placed: Sequence[tuple[dict[str, Any], int]]) -> dict[str, int]:
    """How many of these (event, partition it was produced to) are on a wrong partition."""
    counts: Counter[str] = Counter()
    for event, p in placed:
        topic, key = route(event)
        if p != partition_for(key, PARTITIONS):
            counts[topic] += 1
    return dict(counts)


def produce_round_robin(bootstrap: str, events: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """The contract's topics and keys, partitions picked in turn (kafka-go's default writer)."""
    producer = KafkaProducer(bootstrap_servers=[bootstrap], linger_ms=5, acks="all")
    placed = []
    for i, event in enumerate(events):
        topic, key = route(event)
        producer.send(topic, orjson.dumps(event), key=key, partition=i % PARTITIONS)
        placed.append((event, i % PARTITIONS))
    producer.flush(30)
    producer.close()
    return placed


def check_exact(worker: WorkerProcess, deliveries: list[dict[str, Any]], rerouted: dict[str, int]) -> None:
    kpis = wait_applied(worker, len(deliveries))
    ref = expected(deliveries, NOW)
    assert_exact(kpis, worker.metrics(), ref, "rerouted", rerouted=rerouted)
    assert sum(rerouted.values()) > len(deliveries) // 3, "most keys should have come in on a wrong partition"


def test_confluent_kafka_with_its_defaults_mixed_with_http_ingest_is_exact(
    spawn_worker: Any, broker: Any
) -> None:
    events = corpus(21, 4_000)
    worker = spawn_worker("confluent", SALESPULSE_INGEST_TOKEN=TOKEN)
    worker.wait_ready()
    rng = random.Random(4)
    via_http = [e for e in events if rng.random() < 0.5]
    http_ids = {id(e) for e in via_http}
    via_confluent = [e for e in events if id(e) not in http_ids]
    post_events(worker, via_http)

    placed: list[tuple[dict[str, Any], int]] = []
    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for event in via_confluent:
        topic, key = route(event)

        def delivered(err: Any, msg: Any, event: dict[str, Any] = event) -> None:
            assert err is None, err
            placed.append((event, msg.partition()))

        producer.produce(topic, orjson.dumps(event), key=key, on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert len(placed) == len(via_confluent)
    check_exact(worker, via_http + via_confluent, rerouted_by_topic(placed))


def test_a_round_robin_producer_that_keeps_the_contract_keys_is_exact(spawn_worker: Any, broker: Any) -> None:
    events = corpus(22, 4_000)
    worker = spawn_worker("round-robin")
    worker.wait_ready()
    placed = produce_round_robin(broker.bootstrap, events)
    check_exact(worker, events, rerouted_by_topic(placed))


@pytest.mark.slow
def test_a_worker_killed_between_forwarding_and_committing_is_exact_after_restart(
    spawn_worker: Any, broker: Any
) -> None:
    events = corpus(23, 4_000)
    # Commits held back: when the worker dies, every forward is on its right partition and
    # no source offset is committed, so the restart replays every wrong-partition record.
    worker = spawn_worker("kill", SALESPULSE_COMMIT_INTERVAL="600")
    worker.wait_ready()
    placed = produce_round_robin(broker.bootstrap, events)
    rerouted = rerouted_by_topic(placed)
    wait_applied(worker, len(events))
    assert forwarded_copies(broker.bootstrap) == sum(rerouted.values()) + forecast_forwards(events)
    worker.kill()
    worker = spawn_worker("kill")
    worker.wait_ready()
    check_exact(worker, events, rerouted)
    time.sleep(1.0)
    assert forwarded_copies(broker.bootstrap) == sum(rerouted.values()) + forecast_forwards(events), (
        "a replay forwarded again"
    )
    assert dead_letters(broker.bootstrap) == []


def forecast_forwards(events: Sequence[dict[str, Any]]) -> int:
    """Closes naming an opportunity: each (duplicates counted once) is forwarded once more,
    from its crm.deals partition to its opportunity's crm.leads partition (issue 31)."""
    closes = ("deal.won", "deal.lost")
    return len({e["event_id"] for e in events if e["type"] in closes and "opportunity_id" in e["data"]})


def forwarded_copies(bootstrap: str) -> int:
    """Records on the input topics that carry the forwarded header."""
    consumer = KafkaConsumer(
        "crm.leads",
        "crm.deals",
        "crm.activities",
        "crm.surveys",
        "crm.market",
        bootstrap_servers=[bootstrap],
        auto_offset_reset="earliest",
        consumer_timeout_ms=3_000,
    )
    n = sum(1 for record in consumer if any(k == FORWARDED_FROM for k, _ in record.headers))
    consumer.close()
    return n


def dead_letters(bootstrap: str) -> list[Any]:
    consumer = KafkaConsumer(
        DEADLETTER, bootstrap_servers=[bootstrap], auto_offset_reset="earliest", consumer_timeout_ms=2_000
    )
    records = list(consumer)
    consumer.close()
    return records


def test_the_same_event_id_an_hour_apart_through_http_counts_once(spawn_worker: Any) -> None:
    worker = spawn_worker("restamp", SALESPULSE_INGEST_TOKEN=TOKEN)
    worker.wait_ready()
    first, restamped = lead("01SAME", "L-9", NOW - 2 * 3600), lead("01SAME", "L-9", NOW - 3600)
    post_events(worker, [first])
    post_events(worker, [restamped])
    kpis = wait_applied(worker, 2)
    assert kpis["counters"]["events"]["lead.created"] == 1
    assert kpis["counters"]["duplicates"] == 1
    assert kpis["windows"]["24h"]["leads"]["leads"] == 1
