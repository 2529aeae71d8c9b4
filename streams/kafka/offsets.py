"""True end offsets, and the start-up probe for brokers whose ListOffsets answers short.

Tansu 0.6 answers ListOffsets(latest) with the base offset of the last record batch + 1
instead of the end of the log (design brief, section 6). faust's recovery reads each
changelog only up to that answer, so it could stop short and lose the tail. The probe
writes one 2-record batch and compares ListOffsets with the Fetch high watermark; when
they differ, end offsets are taken from Fetch high watermarks instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from salespulse.streams.kafka.admin import PROBE_TOPIC, ensure_topics, probe_topic
from salespulse.streams.settings import Settings

log = logging.getLogger(__name__)


def true_end_offsets(
    client: dict[str, Any], partitions: Sequence[Any], *, timeout: float = 15.0
) -> dict[tuple[str, int], int]:
    """End offset per (topic, partition), from the high watermark a Fetch reports.

    Seeking to ListOffsets' answer minus one lands inside the last batch on both a correct
    and a faulty broker, and the Fetch for it carries the true high watermark.
    """
    tps = [TopicPartition(p.topic, p.partition) for p in partitions]
    consumer = KafkaConsumer(enable_auto_commit=False, group_id=None, fetch_max_wait_ms=100, **client)
    try:
        listed = consumer.end_offsets(tps)
        ends: dict[tuple[str, int], int] = {}
        pending = []
        for tp in tps:
            if listed[tp] <= 0:
                ends[(tp.topic, tp.partition)] = listed[tp]
            else:
                pending.append(tp)
        if pending:
            consumer.assign(pending)
            for tp in pending:
                consumer.seek(tp, listed[tp] - 1)
            deadline = time.monotonic() + timeout
            while pending and time.monotonic() < deadline:
                consumer.poll(timeout_ms=200, max_records=1000)
                for tp in list(pending):
                    hw = consumer.highwater(tp)
                    if hw is not None:
                        ends[(tp.topic, tp.partition)] = max(hw, listed[tp])
                        pending.remove(tp)
            if pending:
                raise TimeoutError(f"no high watermark for {pending} within {timeout}s")
        return ends
    finally:
        consumer.close()


def listoffsets_is_short(settings: Settings) -> bool:
    """Probe: does ListOffsets(latest) disagree with the Fetch high watermark?"""
    ensure_topics(settings, [probe_topic(settings)])
    client = settings.kafka_python_config
    producer = KafkaProducer(linger_ms=100, **client)
    try:
        # Two records sent together leave in one batch: the case the bug gets wrong.
        producer.send(PROBE_TOPIC, b"probe-1", partition=0)
        producer.send(PROBE_TOPIC, b"probe-2", partition=0)
        producer.flush(10)
    finally:
        producer.close()
    tp = TopicPartition(PROBE_TOPIC, 0)
    consumer = KafkaConsumer(enable_auto_commit=False, **client)
    try:
        listed = consumer.end_offsets([tp])[tp]
    finally:
        consumer.close()
    fetched = true_end_offsets(client, [tp])[(PROBE_TOPIC, 0)]
    short = bool(listed < fetched)
    if short:
        log.warning(
            "broker answers ListOffsets short (%d < high watermark %d): "
            "taking end offsets from Fetch high watermarks",
            listed,
            fetched,
        )
    return short
