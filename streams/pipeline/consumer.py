"""faust's consumer, carrying whole fetched batches of the input topics to the engine.

faust 0.15.3 hands every message through a task per message, a lock and flow control
(design brief, section 6): about 13k events/s at best. Here the drain loop passes each
fetched record batch of an input topic straight to a handler, which applies it, writes
its changelog records and dead letters, waits for the broker's acks, and only then marks
the offsets as acked in bulk. Every other topic (changelogs for recovery and standbys)
keeps faust's normal per-message path. Offsets are committed by faust as before, after
it has flushed its producer, so a committed offset never runs ahead of its state.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar, cast

from aiokafka.consumer import fetcher as aiokafka_fetcher
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from salespulse.streams.kafka.offsets import true_end_offsets

log = logging.getLogger(__name__)

BatchHandler = Callable[[dict[TP, Sequence[Any]]], Awaitable["asyncio.Future[Any]"]]


#: faust asks for fetch_max_wait_ms=1500. Tansu holds a fetch for the full wait even when
#: records arrive meanwhile, which put event-to-state latency at 1-2 s; 50 ms measured a
#: p50 of 22 ms at 5,000 events/s on the raw consumer path.
FETCH_MAX_WAIT_MS = 50


class InputRecords(aiokafka_fetcher.PartitionRecords):  # type: ignore[misc]
    """aiokafka's iterator over one fetched partition; input topics' records go out as parsed.

    aiokafka wraps every record in a ConsumerRecord (eleven fields, about 0.8 µs) and the
    batch path reads four of them, which the parsed record already has: offset, key, value
    and timestamp (ms). Records of every other topic (changelogs) stay ConsumerRecords.
    """

    raw_topics: ClassVar[frozenset[str]] = frozenset()

    def _consumer_record(self, tp: Any, record: Any) -> Any:
        if tp.topic in self.raw_topics:
            return record
        return super()._consumer_record(tp, record)


def pass_parsed_records(topics: frozenset[str]) -> None:
    """Make this process's aiokafka fetchers hand ``topics``' records on as parsed."""
    InputRecords.raw_topics = topics
    aiokafka_fetcher.PartitionRecords = InputRecords


class FastFetchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class BatchConsumer(faust_aiokafka.Consumer):
    """The aiokafka consumer with a batch path for the input topics."""

    batch_topics: frozenset[str] = frozenset()
    batch_handler: BatchHandler | None = None
    #: Checks, on each assignment, that the broker is still the one the state came from.
    verify_broker: Callable[[], bool] | None = None
    on_foreign_broker: Callable[[str], None] | None = None
    #: The state changelog, and what restores one of its records into the engine.
    changelog_topic: str = ""
    restore: Callable[[bytes, bytes | None], None] | None = None
    #: Set when the broker's ListOffsets answers short (the Tansu end-offset bug).
    end_offsets_from_fetch = False
    client_config: Mapping[str, Any] = {}

    def _new_consumer_thread(self) -> FastFetchConsumerThread:
        return FastFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batch_next: dict[TP, int] = {}
        self._batch_active: set[TP] = set()

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        """End offsets for recovery; read from Fetch high watermarks on a faulty broker."""
        if not self.end_offsets_from_fetch or not partitions:
            return await super().highwaters(*partitions)
        ends = await asyncio.to_thread(true_end_offsets, dict(self.client_config), list(partitions))
        return {tp: ends[(tp.topic, tp.partition)] for tp in partitions}

    def _new_offset(self, tp: TP) -> int | None:
        if tp.topic in self.batch_topics:
            return self._batch_next.pop(tp, None)
        return super()._new_offset(tp)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._batch_next.pop(tp, None)
        self._batch_active.difference_update(revoked)
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        # A broker restarted empty on the same address makes the group rejoin: stop before
        # the old in-memory state touches a single record of the new broker.
        verify = self.verify_broker
        if verify is not None and not await asyncio.to_thread(verify):
            assert self.on_foreign_broker is not None
            self.on_foreign_broker("assigned partitions by a broker that is not the one the state came from")
        self._batch_active = set(assigned)
        await super().on_partitions_assigned(assigned, generation_id)

    def _acker(self, ends: dict[TP, tuple[int, int]]) -> Callable[[asyncio.Future[Any]], None]:
        """Ack a fetch's offsets once its changelog and dead letters are on the broker.

        Writes to one partition complete in order, so acks arrive in offset order. A failed
        write must never let a later batch's ack commit past it, so the process stops at
        once; its replacement recovers the changelog and replays from the last commit.
        """

        def ack(written: asyncio.Future[Any]) -> None:
            if written.cancelled() or written.exception() is not None:
                reason = "cancelled" if written.cancelled() else repr(written.exception())
                log.critical("changelog write failed (%s): exiting to replay", reason)
                logging.shutdown()
                os._exit(70)
            for tp, (next_offset, count) in ends.items():
                if tp in self._batch_active:
                    self._acked.setdefault(tp, [])  # marks tp as having offsets to commit
                    self._batch_next[tp] = next_offset
                    self._n_acked += count

        return ack

    def _restore_batch(self, tp: TP, records: Sequence[Any]) -> bool:
        """Recover a fetched changelog batch in one go, keeping faust's Recovery books.

        faust's own path queues every changelog record as an event (about 6,000 records/s
        here); the engine restores a record in a few microseconds. Recovery's offsets are
        updated exactly as its loop would, and the end of recovery signalled the same way.
        """
        restore = self.restore
        recovery = cast(Any, self.app.tables).recovery
        if restore is None:
            return False
        # Recovery's liveness books too, or it warns "no event received" while it recovers.
        now = time.monotonic()
        if tp in recovery.active_tps:
            offsets = recovery.active_offsets
            recovery._active_events_received_at[tp] = now
            recovery._last_active_event_processed_at = now
        elif tp in recovery.standby_tps:
            offsets = recovery.standby_offsets
            recovery._standby_events_received_at[tp] = now
        else:
            return False
        recovery._last_flush_at = now
        seen = offsets.get(tp)
        last = None
        for record in records:
            if seen is None or record.offset > seen:
                restore(record.key, record.value)
                last = record.offset
        if last is not None:
            offsets[tp] = last
        if recovery.in_recovery and not recovery.need_recovery():
            recovery.flush_buffers()
            recovery._set_recovery_ended()
            recovery.signal_recovery_end.set()
        return True

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - faust loop
        callback = self.callback
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        handler = self.batch_handler
        batch_topics = self.batch_topics
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                records, active = await self._wait_next_records(1.0)
                await asyncio.sleep(0)
                if not records or self.should_stop:
                    continue
                if not self.flow_active:
                    await self.perform_seek()
                    continue
                generation = self.app.consumer_generation_id
                batches: dict[TP, Sequence[Any]] = {}
                for tp, recs in records.items():
                    if self.app.consumer_generation_id != generation or not self.flow_active:
                        break
                    if active is not None and tp not in active:
                        continue
                    if handler is not None and tp.topic in batch_topics:
                        # The engine skips offsets it has applied, so no read-offset filter.
                        batches[tp] = recs
                        continue
                    if tp.topic == self.changelog_topic and self._restore_batch(tp, recs):
                        continue
                    for record in recs:
                        await self.wait_first(
                            callback(self._to_message(tp, record)), self.suspend_flow.wait()
                        )
                        self._read_offset[tp] = record.offset
                if batches and handler is not None:
                    ends = {tp: (recs[-1].offset + 1, len(recs)) for tp, recs in batches.items()}
                    # One handler call per fetch: one changelog write per partition.
                    written = await handler(batches)
                    written.add_done_callback(self._acker(ends))
                # Handled: let the records go now. faust's consumer thread holds on to the
                # fetch it returned until the next one is in, so two fetches' records (about
                # 10 MB each at 25,000) would be alive at once.
                for recs in records.values():
                    recs.clear()
                commit_every = self._commit_every
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise


class BatchTransport(faust_aiokafka.Transport):
    Consumer = BatchConsumer
