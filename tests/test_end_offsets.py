"""The Tansu end-offset bug: detected at start-up, worked around, and shown to matter."""

from __future__ import annotations

import re
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.partitioner.default import murmur2

from salespulse.schemas.topics import route
from salespulse.streams.kafka.offsets import listoffsets_is_short, true_end_offsets
from salespulse.streams.tools.generator import GeneratorConfig, generate
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
    assert listoffsets_is_short(settings) is True


def partition_of(event: dict[str, Any]) -> int:
    return (murmur2(route(event)[1]) & 0x7FFFFFFF) % 4


ROW = re.compile(r"^\|[^|]*\|\s*(\d+)\s*\|\s*(-?\d+)\s*\|", re.M)


def recovery_highwaters(log: str) -> dict[int, int]:
    """The end offsets faust's recovery read up to, from its 'Highwater' log table."""
    start = log.index("Highwater for active changelog partitions")
    block = log[start : log.index("active offsets at start of reading", start)]
    # faust logs the last offset to read (end - 1).
    return {int(p): int(h) + 1 for p, h in ROW.findall(block)}


def _apply_then_restart(spawn_worker: Any, producer: Any, settings: Any, end_offsets: str) -> dict[str, Any]:
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
    second = spawn_worker(
        f"after-{end_offsets}", SALESPULSE_END_OFFSETS=end_offsets, SALESPULSE_TEST_LOGLEVEL="info"
    )
    second.wait_ready()
    after = second.kpis()
    second.stop()
    admin = KafkaAdminClient(**settings.kafka_python_config)
    changelog = next(
        t for t in admin.list_topics() if t.startswith("salespulse-state") and t.endswith("-changelog")
    )
    admin.close()
    true_ends = true_end_offsets(
        settings.kafka_python_config, [TopicPartition(changelog, p) for p in range(4)]
    )
    return {
        "before": before,
        "after": after,
        "recovered_to": recovery_highwaters(second.log_path.read_text()),
        "true_ends": {p: true_ends[(changelog, p)] for p in range(4)},
        "last_batch_partition": partition_of(same[0]),
    }


def test_recovery_reads_changelogs_to_their_true_end_and_is_exact(
    spawn_worker: Any, producer: Any, settings: Any
) -> None:
    run = _apply_then_restart(spawn_worker, producer, settings, "auto")
    assert run["recovered_to"] == run["true_ends"]
    assert run["before"]["counters"] == run["after"]["counters"]
    assert run["before"]["series"] == run["after"]["series"]
    assert sum(run["after"]["counters"]["events"].values()) == 3002


def test_without_the_workaround_recovery_would_stop_short_of_the_changelog_tail(
    spawn_worker: Any, producer: Any, settings: Any
) -> None:
    # The same run trusting ListOffsets: recovery's end offsets fall inside the last batch.
    run = _apply_then_restart(spawn_worker, producer, settings, "listoffsets")
    p = run["last_batch_partition"]
    assert run["recovered_to"][p] < run["true_ends"][p]
