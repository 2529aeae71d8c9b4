"""The Tansu end-offset bug: detected at start-up, worked around, and shown to matter."""

from __future__ import annotations

from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.partitioner.default import murmur2

from streams.generator import GeneratorConfig, generate
from streams.offsets import listoffsets_is_short, true_end_offsets
from streams.topics import route
from tests.conftest import FIXED_NOW, wait_until


def test_listoffsets_answers_short_after_a_multi_record_batch_and_fetch_does_not(settings: Any) -> None:
    client = settings.kafka_python_config
    producer = KafkaProducer(linger_ms=200, **client)
    for i in range(10):
        producer.send("ten", b"%d" % i, partition=0)
    producer.flush()
    producer.close()
    tp = TopicPartition("ten", 0)
    consumer = KafkaConsumer(enable_auto_commit=False, **client)
    listed = consumer.end_offsets([tp])[tp]
    consumer.close()
    assert listed == 1, "Tansu reports the last batch's base offset + 1"
    assert true_end_offsets(client, [tp]) == {("ten", 0): 10}
    assert listoffsets_is_short(client) is True


def partition_of(event: dict[str, Any]) -> int:
    return (murmur2(route(event)[1]) & 0x7FFFFFFF) % 4


def _apply_then_restart(spawn_worker: Any, producer: Any, end_offsets: str) -> tuple[int, int]:
    events = list(generate(GeneratorConfig(seed=5, now=FIXED_NOW), 3000))
    for event in events:
        producer.send(event)
    producer.flush()
    first = spawn_worker(f"before-{end_offsets}", SALESPULSE_END_OFFSETS=end_offsets)
    first.wait_ready()
    wait_until(lambda: first.progress()["events"] == 3000)
    # Two more events on one topic partition: their changelog records (KPI records, seen
    # ids, offsets) leave as one multi-record batch, the last one on that partition.
    leads = [e for e in generate(GeneratorConfig(seed=6, now=FIXED_NOW), 200) if e["type"] == "lead.created"]
    same = [e for e in leads if partition_of(e) == partition_of(leads[0])][:2]
    for event in same:
        producer.send(event)
    producer.flush()
    wait_until(lambda: first.progress()["events"] == 3002)
    before = first.kpis()
    first.stop()  # graceful: offsets committed, so the restart recovers from the changelog alone
    second = spawn_worker(f"after-{end_offsets}", SALESPULSE_END_OFFSETS=end_offsets)
    second.wait_ready()
    after = second.kpis()
    second.stop()
    total = sum(before["counters"]["events"].values())
    return total, sum(after["counters"]["events"].values())


def test_recovery_is_exact_with_the_workaround_and_short_without_it(spawn_worker: Any, producer: Any) -> None:
    before, after = _apply_then_restart(spawn_worker, producer, "auto")
    assert before == after == 3002


def test_trusting_listoffsets_on_tansu_loses_the_changelog_tail(spawn_worker: Any, producer: Any) -> None:
    # The same run with the workaround switched off: recovery stops at the short end offset.
    before, after = _apply_then_restart(spawn_worker, producer, "listoffsets")
    assert before == 3002
    assert after < before
