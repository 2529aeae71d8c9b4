"""What a worker's parts share: the engine, partition ownership, the exporter and the writes.

It lives apart from the app that builds it so that the web views can depend on it without
importing the app: the app is the composition root and imports the views, never the reverse.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import faust
from faust.types import TP

from salespulse.schemas.topics import DEADLETTER, INPUT_TOPICS
from salespulse.streams.endpoints.metrics import Exporter
from salespulse.streams.pipeline.engine import Engine, Output
from salespulse.streams.pipeline.snapshot_writer import SnapshotWriter
from salespulse.streams.pipeline.state_table import Ownership, StateTable
from salespulse.streams.settings import Settings


class Runtime:
    """Everything a worker shares between the consumer, the agents and the web views."""

    def __init__(self, settings: Settings, app: faust.App, engine: Engine) -> None:
        self.settings = settings
        self.app = app
        self.engine = engine
        self.ownership = Ownership()
        self.exporter = Exporter(engine, self.owned, self.lag)
        self.table: StateTable | None = None
        self.snapshots: SnapshotWriter | None = None

    def owned(self) -> set[int]:
        return set(self.ownership.active)

    def kafka_producer(self) -> Any:
        """The app's aiokafka producer, for batch sends faust's own API does not offer."""
        return cast(Any, self.app.producer)._ensure_producer()

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the Fetch high watermark (right on Tansu, unlike ListOffsets)."""
        consumer = self.app.consumer
        lags: dict[tuple[str, int], int] = {}
        for p in self.owned():
            state = self.engine.partitions.get(p)
            for topic in INPUT_TOPICS:
                hw = consumer.highwater(TP(topic, p))
                if hw is not None and state is not None:
                    lags[(topic, p)] = max(0, hw - state.meta[topic].offset - 1)
        return lags

    def partition_count(self, topic: str) -> int:
        """Partitions of ``topic`` as the broker's metadata has them (they place the keys)."""
        consumer = cast(Any, self.app.consumer)._thread._ensure_consumer()
        partitions = consumer._client.cluster.partitions_for_topic(topic)
        return len(partitions) if partitions else self.settings.partitions

    async def write(self, partition: int, out: Output) -> asyncio.Future[Any]:
        """Send forwards, then dead letters and changelog records; the future resolves once
        all are acked, and only then are the source offsets acked.

        Forwards are awaited before the changelog is sent: once a record's offset is marked
        applied in the changelog, its copy is on its right partition, so a replay need not
        forward it again. Only batches that hold a wrong-partition record pay the wait.
        """
        producer = self.kafka_producer()
        if out.forwards:
            sent = [
                await producer.send(
                    fw.topic,
                    fw.value,
                    key=fw.key,
                    partition=fw.partition,
                    timestamp_ms=fw.timestamp,
                    headers=fw.headers,
                )
                for fw in out.forwards
            ]
            await asyncio.gather(*sent)
        futures = []
        for dl in out.deadletters:
            futures.append(await producer.send(DEADLETTER, dl.value, key=dl.key, headers=dl.headers()))
        if out.changelog:
            assert self.table is not None
            topic = self.table.changelog_topic.get_topic_name()
            batch = producer.create_batch()
            count = 0
            for key, value in out.changelog:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch, count = producer.create_batch(), 0
                    batch.append(key=key, value=value, timestamp=None)
                count += 1
            last = await producer.send_batch(batch, topic, partition=partition)
            futures.append(last)
            if self.snapshots is not None:
                self.snapshots.sent(partition, last, count)
        return asyncio.gather(*futures)

    async def persist(self, partition: int, out: Output) -> None:
        """Write what a batch produced and wait until the broker has it."""
        await (await self.write(partition, out))

    async def handle_fetch(self, batches: dict[TP, Sequence[Any]]) -> asyncio.Future[Any]:
        """The batch path: apply a fetch's batches and start writing what they produced."""
        snapshots = self.snapshots
        if snapshots is not None:
            snapshots.applying = True  # until every write is sent (a crash leaves it set)
        # Shielded: a stop that cancels the fetch loop here still applies and sends every
        # batch, so the changelog gets what the state holds and a graceful stop can take
        # its images.
        return await asyncio.shield(self._apply_and_send(batches))

    async def _apply_and_send(self, batches: dict[TP, Sequence[Any]]) -> asyncio.Future[Any]:
        counts = self.engine.partition_counts
        writes = []
        for tp, records in batches.items():
            counts[tp.topic] = self.partition_count(tp.topic)
            out = self.engine.apply(tp.topic, tp.partition, records)
            # Observed before any await, so /progress and the histogram never disagree.
            self.exporter.observe(out)
            # Sent before the next batch is applied, so one batch's changelog records are
            # held as objects at a time, not a whole fetch's (about 14 MB at 25,000 events).
            writes.append(await self.write(tp.partition, out))
            del out
        snapshots = self.snapshots
        if snapshots is not None:
            snapshots.applying = False
            snapshots.tick()  # between batches, every write sent: the moment an image may be taken
        return asyncio.gather(*writes)
