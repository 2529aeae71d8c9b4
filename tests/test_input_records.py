"""The input topics' records reach the batch path as aiokafka parsed them, with the same values.

aiokafka wraps each fetched record in a ConsumerRecord; the worker skips that wrapper for
the input topics only. Built here from real record batches, as the broker returns them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka.consumer import fetcher
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import ConsumerRecord, TopicPartition

from salespulse.schemas.topics import INPUT_TOPICS, LEADS
from salespulse.streams.pipeline.consumer import InputRecords, pass_parsed_records

CHANGELOG = "salespulse-state-changelog"
#: aiokafka's own class, which wraps every record.
WRAPPING = InputRecords.__bases__[0]


def _batches(count: int, per_batch: int) -> bytes:
    """``count`` records in batches of ``per_batch``, offsets from 0, as a Fetch response holds them."""
    out = bytearray()
    for first in range(0, count, per_batch):
        builder = DefaultRecordBatchBuilder(
            magic=2,
            compression_type=0,
            is_transactional=0,
            producer_id=-1,
            producer_epoch=-1,
            base_sequence=-1,
            batch_size=1 << 20,
        )
        for i in range(min(per_batch, count - first)):
            n = first + i
            value = None if n % 7 == 3 else f'{{"n":{n}}}'.encode()
            builder.append(i, timestamp=1_790_000_000_000 + n, key=f"k-{n}".encode(), value=value, headers=[])
        batch = bytearray(builder.build())
        batch[0:8] = first.to_bytes(8, "big")  # the base offset, as the broker assigns it
        out += batch
    return bytes(out)


def _records(cls: type[Any], topic: str, data: bytes, fetch_offset: int = 0) -> list[Any]:
    records: Iterator[Any] = cls(
        TopicPartition(topic, 0), MemoryRecords(data), [], fetch_offset, None, None, False, 0
    )
    return list(records)


@pytest.fixture
def parsed_input_topics() -> Iterator[None]:
    before, topics = fetcher.PartitionRecords, InputRecords.raw_topics
    pass_parsed_records(frozenset(INPUT_TOPICS))
    yield
    fetcher.PartitionRecords, InputRecords.raw_topics = before, topics


@pytest.mark.usefixtures("parsed_input_topics")
def test_input_topics_get_parsed_records_with_the_consumer_record_values() -> None:
    assert fetcher.PartitionRecords is InputRecords
    data = _batches(1_000, 128)
    wrapped = _records(WRAPPING, LEADS, data, fetch_offset=5)
    parsed = _records(fetcher.PartitionRecords, LEADS, data, fetch_offset=5)
    assert len(parsed) == len(wrapped) == 995
    assert not any(isinstance(r, ConsumerRecord) for r in parsed)
    for p, w in zip(parsed, wrapped, strict=True):
        assert (p.offset, p.key, p.value, p.timestamp) == (w.offset, w.key, w.value, w.timestamp)


@pytest.mark.usefixtures("parsed_input_topics")
def test_other_topics_keep_consumer_records() -> None:
    records = _records(fetcher.PartitionRecords, CHANGELOG, _batches(10, 4))
    assert [r.offset for r in records] == list(range(10))
    assert all(isinstance(r, ConsumerRecord) and r.topic == CHANGELOG for r in records)
