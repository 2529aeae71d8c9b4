"""The faust app: topics, the state table, one agent per KPI, and the batch path.

One app object per process, configured from :class:`~streams.settings.Settings`. The
agents are real faust agents (``agent.test_context()`` drives them one event at a time);
in a worker, whole fetched batches of the input topics reach the same engine through
:class:`~streams.consumer.BatchConsumer`, which is how the worker keeps up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, cast

import faust
import yaml
from faust.types import TP

from agents.base import Kpi
from agents.registry import KPIS
from streams.consumer import BatchConsumer, BatchTransport, pass_parsed_records
from streams.engine import Engine, MessageRecord, Output
from streams.metrics import Exporter
from streams.settings import Settings
from streams.state_table import Ownership, StateTable
from streams.topics import DEADLETTER, INPUT_TOPICS

log = logging.getLogger(__name__)

STATE_TABLE = "state"


def load_targets(path: Path | None) -> dict[tuple[str, str], float]:
    """Monthly lead targets per (region, rep) from the YAML file ``SALESPULSE_TARGETS``."""
    if path is None:
        return {}
    doc = yaml.safe_load(path.read_text()) or {}
    targets: dict[tuple[str, str], float] = {}
    for row in doc.get("targets", []):
        targets[(str(row["region"]), str(row["rep"]))] = float(row["monthly"])
    return targets


class SalesPulseApp(faust.App):
    """faust.App with the batch-carrying consumer."""

    def _new_transport(self) -> Any:
        return BatchTransport(self.conf.broker_consumer, self)


class Runtime:
    """Everything a worker shares between the consumer, the agents and the web views."""

    def __init__(self, settings: Settings, app: SalesPulseApp, engine: Engine) -> None:
        self.settings = settings
        self.app = app
        self.engine = engine
        self.ownership = Ownership()
        self.exporter = Exporter(engine, self.owned, self.lag)
        self.table: StateTable | None = None

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

    async def write(self, partition: int, out: Output) -> asyncio.Future[Any]:
        """Send dead letters and changelog records; the future resolves once all are acked."""
        producer = self.kafka_producer()
        futures = []
        for dl in out.deadletters:
            futures.append(await producer.send(DEADLETTER, dl.value, key=dl.key, headers=dl.headers()))
        if out.changelog:
            assert self.table is not None
            topic = self.table.changelog_topic.get_topic_name()
            batch = producer.create_batch()
            for key, value in out.changelog:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return asyncio.gather(*futures)

    async def persist(self, partition: int, out: Output) -> None:
        """Write what a batch produced and wait until the broker has it."""
        await (await self.write(partition, out))

    async def handle_fetch(self, batches: dict[TP, Sequence[Any]]) -> asyncio.Future[Any]:
        """The batch path: apply a fetch's batches and start writing what they produced."""
        outs: dict[int, Output] = {}
        for tp, records in batches.items():
            out = self.engine.apply(tp.topic, tp.partition, records)
            # Observed before any await, so /progress and the histogram never disagree.
            self.exporter.observe(out)
            merged = outs.get(tp.partition)
            if merged is None:
                outs[tp.partition] = out
            else:
                merged.extend(out)
        writes = [await self.write(partition, out) for partition, out in outs.items()]
        return asyncio.gather(*writes)


def _agent_body(runtime: Runtime, kpi: Kpi) -> Callable[[Any], Any]:
    async def process(stream: faust.StreamT[Any]) -> AsyncIterator[None]:
        async for event in stream.events():
            message = event.message
            record = MessageRecord.of(message)
            out = runtime.engine.apply(message.topic, message.partition, [record], only=kpi)
            runtime.exporter.observe(out)
            await runtime.persist(message.partition, out)
            yield None

    process.__name__ = f"kpi_{kpi.name}"
    return process


def create_app(
    settings: Settings, *, engine: Engine | None = None, epoch: str = ""
) -> tuple[SalesPulseApp, Runtime]:
    """Build the app and its runtime; nothing connects until the app starts.

    ``epoch`` names the state table (and so its changelog topic) after the broker identity:
    a worker whose broker was replaced under it may still retry a write into the new broker,
    and those stale records must land in a topic the new state never reads.
    """
    engine = engine or Engine(
        clock=settings.clock,
        label_cap=settings.label_cap,
        max_event_bytes=settings.max_event_bytes,
        targets=load_targets(settings.targets_file),
    )
    app = SalesPulseApp(
        settings.app_id,
        broker=settings.faust_broker,
        broker_credentials=None,
        datadir=str(settings.data_dir),
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        table_standby_replicas=1,
        web_enabled=True,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=settings.fetch_records,
        consumer_max_fetch_size=1024 * 1024,
        broker_commit_every=1_000_000,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        producer_max_request_size=4 * 1024 * 1024,
        producer_linger=0.005,
        **_broker_timeouts(settings),
    )
    runtime = Runtime(settings, app, engine)
    table = StateTable(
        app,
        engine=engine,
        ownership=runtime.ownership,
        name=f"{STATE_TABLE}-{epoch}" if epoch else STATE_TABLE,
        partitions=settings.partitions,
        beacon=app.beacon,
    )
    app.tables.add(table)
    runtime.table = table
    for kpi in KPIS:
        channel = app.topic(
            *sorted(kpi.topics),
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
        )
        app.agent(channel, name=f"kpi-{kpi.name}")(_agent_body(runtime, kpi))
    BatchConsumer.batch_topics = frozenset(INPUT_TOPICS)
    pass_parsed_records(BatchConsumer.batch_topics)
    BatchConsumer.batch_handler = runtime.handle_fetch
    BatchConsumer.changelog_topic = table.changelog_topic.get_topic_name()
    BatchConsumer.restore = engine.restore
    BatchConsumer.client_config = settings.kafka_python_config
    from streams.web import install_views

    install_views(app, runtime)
    return app, runtime


def _broker_timeouts(settings: Settings) -> dict[str, Any]:
    """Tansu completes a group join only after the full rebalance timeout: keep it short."""
    if settings.embedded:
        return {
            "broker_rebalance_timeout": 3.0,
            "broker_session_timeout": 6.0,
            "broker_heartbeat_interval": 1.0,
        }
    return {}
