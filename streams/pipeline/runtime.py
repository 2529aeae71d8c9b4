"""What a worker's parts share: the engine, partition ownership and the writes.

It lives apart from the app that builds it so that the web views can depend on it without
importing the app. The pipeline knows nothing of the views: whoever watches what is applied
(the metrics exporter, installed with the views by ``streams/composition.py``) sets
:attr:`Runtime.observe`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import faust
from faust.types import TP

from salespulse.schemas.topics import DEADLETTER, INPUT_TOPICS
from salespulse.streams.pipeline.engine import DeadLetter, Engine, Forward, Output
from salespulse.streams.pipeline.fx_rates import RatesFile
from salespulse.streams.pipeline.snapshot_writer import SnapshotWriter
from salespulse.streams.pipeline.state_table import Ownership, StateTable
from salespulse.streams.settings import Settings


def _unobserved(out: Output) -> None:
    """A runtime with no views (unit tests of the app) has nobody watching."""


@dataclass
class Writes:
    """A partition's writes: forwards, dead letters, and changelog records in the
    producer's batches (``last_count`` of them in the last)."""

    partition: int
    forwards: list[Forward] = field(default_factory=list)
    deadletters: list[DeadLetter] = field(default_factory=list)
    changelog: list[Any] = field(default_factory=list)
    last_count: int = 0


class Runtime:
    """Everything a worker shares between the consumer, the agents and the web views."""

    def __init__(self, settings: Settings, app: faust.App, engine: Engine) -> None:
        self.settings = settings
        self.app = app
        self.engine = engine
        self.ownership = Ownership()
        #: Called with every apply's output before anything awaits.
        self.observe: Callable[[Output], None] = _unobserved
        self.rates = RatesFile.open(settings.fx_rates, settings.reporting_currency)
        engine.fx = self.rates.rates
        self.table: StateTable | None = None
        self.snapshots: SnapshotWriter | None = None

    def owned(self) -> set[int]:
        return set(self.ownership.active)

    async def reload_rates(self) -> None:
        """Put a changed rates file in force (reads take the engine's rates as they find them)."""
        if self.rates.poll():
            self.engine.fx = self.rates.rates

    def still(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """Held while the engine state is applied to: a state image is never captured (in a
        thread) meanwhile. Reads change nothing, so they need not hold it. Nothing to hold
        without snapshots."""
        return contextlib.nullcontext() if self.snapshots is None else self.snapshots.lock

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

    def pack(self, writes: Writes, out: Output) -> None:
        """Add what a batch produced to its partition's writes. Changelog records go into the
        producer's batches at once: as bytes in a batch a record takes about half the memory
        of its key and value objects, and a fetch's writes are all held until they are sent.
        A fetch makes one set of writes a partition: each send to a partition waits until
        the one before it has gone out."""
        writes.forwards += out.forwards
        writes.deadletters += out.deadletters
        if not out.changelog:
            return
        producer = self.kafka_producer()
        batches = writes.changelog
        if not batches:
            batches.append(producer.create_batch())
        for key, value in out.changelog:
            if batches[-1].append(key=key, value=value, timestamp=None) is None:
                batches.append(producer.create_batch())
                writes.last_count = 0
                batches[-1].append(key=key, value=value, timestamp=None)
            writes.last_count += 1

    async def forward(self, forwards: Sequence[Forward]) -> None:
        """Send forwards and wait until all are acked.

        Forwards are awaited before the changelog is sent: once a record's offset is marked
        applied in the changelog, its copy is on its right partition, so a replay need not
        forward it again. Only fetches that hold a wrong-partition record or a close pay the
        wait, once for all their partitions.
        """
        if not forwards:
            return
        producer = self.kafka_producer()
        sent = [
            await producer.send(
                fw.topic,
                fw.value,
                key=fw.key,
                partition=fw.partition,
                timestamp_ms=fw.timestamp,
                headers=fw.headers,
            )
            for fw in forwards
        ]
        await asyncio.gather(*sent)

    async def send(self, writes: Writes) -> asyncio.Future[Any]:
        """Send dead letters and changelog records, once the forwards they follow are acked
        (:meth:`forward`); the future resolves once all are acked, and only then are the
        source offsets acked."""
        producer = self.kafka_producer()
        futures = []
        for dl in writes.deadletters:
            futures.append(await producer.send(DEADLETTER, dl.value, key=dl.key, headers=dl.headers()))
        if writes.changelog:
            assert self.table is not None
            topic = self.table.changelog_topic.get_topic_name()
            for batch in writes.changelog:
                futures.append(await producer.send_batch(batch, topic, partition=writes.partition))
            if self.snapshots is not None:
                self.snapshots.sent(writes.partition, futures[-1], writes.last_count)
        return asyncio.gather(*futures)

    async def persist(self, partition: int, out: Output) -> None:
        """Write what a batch produced and wait until the broker has it."""
        writes = Writes(partition)
        self.pack(writes, out)
        await self.forward(writes.forwards)
        await (await self.send(writes))

    async def handle_fetch(self, batches: dict[TP, Sequence[Any]]) -> asyncio.Future[Any]:
        """The batch path: apply a fetch's batches and start writing what they produced.

        The event loop gets a turn after each partition's batch (at most 1 MiB of records,
        some tens of milliseconds), so ``/healthz`` answers while a large fetch is applied;
        reads, images and rebalances wait for the whole fetch (:meth:`still`).
        """
        snapshots = self.snapshots
        prepared: dict[int, Writes] = {}
        counts = self.engine.partition_counts
        async with self.still():  # waits while a state image is being captured
            if snapshots is not None:
                snapshots.applying = True  # until every write is sent (a crash leaves it set)
            for tp, records in batches.items():
                counts[tp.topic] = self.partition_count(tp.topic)
                out = self.engine.apply(tp.topic, tp.partition, records)
                # Observed before any await, so /progress and the histogram never disagree.
                self.observe(out)
                writes = prepared.get(tp.partition)
                if writes is None:
                    writes = prepared[tp.partition] = Writes(tp.partition)
                self.pack(writes, out)
                del out  # its changelog records are in the producer's batches now
                await asyncio.sleep(0)
        # Shielded: a stop that cancels the fetch loop here still sends every write, so the
        # changelog gets what the state holds and a graceful stop can take its images.
        return await asyncio.shield(self._send(prepared.values()))

    async def _send(self, prepared: Collection[Writes]) -> asyncio.Future[Any]:
        await self.forward([fw for w in prepared for fw in w.forwards])
        writes = [await self.send(w) for w in prepared]
        snapshots = self.snapshots
        if snapshots is not None:
            snapshots.applying = False
            snapshots.tick()  # between batches, every write sent: the moment an image may be taken
        return asyncio.gather(*writes)
