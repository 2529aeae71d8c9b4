"""The raw reference path for ``salespulse bench``: fetch and decode, nothing else.

It runs as its own process, set up as a worker is (``tune_gc``), and prints one JSON line
with its timing. Run inside the bench's process it carried the bench's heap, the million
generated events, and paid for the full collections of it: the same events measured
277,000 events/s on a first read there, 352,000 on a second and 363,000-372,000 in a fresh
process (docs/benchmark.md), which moved ``vs_raw`` by a third from run to run.
"""

from __future__ import annotations

import asyncio
import sys
import time

import click
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from salespulse.schemas.topics import INPUT_TOPICS
from salespulse.streams.pipeline.worker import tune_gc


async def consume(bootstrap: str, count: int, partitions: int) -> float:
    """Seconds to fetch and orjson-decode ``count`` events from the input topics' start."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=8 << 20
    )
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in INPUT_TOPICS for p in range(partitions)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        loads = orjson.loads
        seen = 0
        started = time.perf_counter()
        while seen < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=50_000)
            for records in batches.values():
                for record in records:
                    loads(record.value)
                seen += len(records)
        return time.perf_counter() - started
    finally:
        await consumer.stop()


@click.command()
@click.option("--broker", required=True)
@click.option("--count", type=int, required=True)
@click.option("--partitions", type=int, default=4)
def main(broker: str, count: int, partitions: int) -> None:
    tune_gc()
    seconds = asyncio.run(consume(broker, count, partitions))
    sys.stdout.write(orjson.dumps({"events": count, "seconds": seconds}).decode() + "\n")


if __name__ == "__main__":
    main()
