"""The faust app: topics, the state table, one agent per KPI, and the batch path.

One app object per process, configured from :class:`~salespulse.streams.settings.Settings`. The
agents are real faust agents (``agent.test_context()`` drives them one event at a time);
in a worker, whole fetched batches of the input topics reach the same engine through
:class:`~salespulse.streams.pipeline.consumer.BatchConsumer`, which is how the worker keeps up.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import faust
import yaml

from salespulse.agents.base import Kpi
from salespulse.agents.detractors import DetractorsKpi, Policy
from salespulse.agents.forecast import ForecastKpi
from salespulse.agents.forecast_calendar import FiscalCalendar
from salespulse.agents.forecast_plan import PlanError, parse_plan, parse_stages
from salespulse.agents.forecast_state import ForecastPolicy
from salespulse.agents.registry import KPIS
from salespulse.schemas.topics import INPUT_TOPICS
from salespulse.streams.kafka.admin import state_table
from salespulse.streams.pipeline.consumer import BatchConsumer, BatchTransport, pass_parsed_records
from salespulse.streams.pipeline.engine import Engine, MessageRecord
from salespulse.streams.pipeline.fx_rates import POLL_SECONDS
from salespulse.streams.pipeline.runtime import Runtime
from salespulse.streams.pipeline.snapshot import Snapshots
from salespulse.streams.pipeline.snapshot_writer import SnapshotWriter
from salespulse.streams.pipeline.state_table import PromptTableManager, StateTable
from salespulse.streams.settings import Settings, SettingsError

log = logging.getLogger(__name__)


def targets_doc(path: Path | None) -> dict[str, Any]:
    """The YAML file ``SALESPULSE_TARGETS`` (lead targets; quotas, teams, stages), or nothing."""
    if path is None:
        return {}
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict):
        raise SettingsError(f"SALESPULSE_TARGETS: {path} holds no mapping of targets, quotas, teams, stages")
    return doc


def load_targets(path: Path | None) -> dict[tuple[str, str], float]:
    """Monthly lead targets per (region, rep) from the YAML file ``SALESPULSE_TARGETS``."""
    doc = targets_doc(path)
    targets: dict[tuple[str, str], float] = {}
    for row in doc.get("targets", []):
        targets[(str(row["region"]), str(row["rep"]))] = float(row["monthly"])
    return targets


class SalesPulseApp(faust.App):
    """faust.App with the batch-carrying consumer."""

    def _new_transport(self) -> Any:
        return BatchTransport(self.conf.broker_consumer, self)


def _agent_body(runtime: Runtime, kpi: Kpi) -> Callable[[Any], Any]:
    async def process(stream: faust.StreamT[Any]) -> AsyncIterator[None]:
        async for event in stream.events():
            message = event.message
            record = MessageRecord.of(message)
            async with runtime.still():
                out = runtime.engine.apply(message.topic, message.partition, [record], only=kpi)
            runtime.observe(out)
            await runtime.persist(message.partition, out)
            yield None

    process.__name__ = f"kpi_{kpi.name}"
    return process


def _snapshot_tick(writer: SnapshotWriter) -> Callable[[], Any]:
    async def snapshot() -> None:
        writer.tick()

    return snapshot


def forecast_kpi(settings: Settings) -> ForecastKpi:
    """The forecast with the fiscal calendar of ``settings`` and the quotas, teams and stages
    of its targets file; a mistake there stops the worker with a message naming it."""
    calendar = FiscalCalendar.parse(settings.fiscal_calendar)
    doc = targets_doc(settings.targets_file)
    try:
        return ForecastKpi(ForecastPolicy(calendar, parse_stages(doc)), parse_plan(doc, calendar))
    except PlanError as exc:
        raise SettingsError(f"SALESPULSE_TARGETS: {exc}") from None


def configured_kpis(settings: Settings) -> tuple[Kpi, ...]:
    """The registry's KPIs, with the detractor follow-up target and channels of ``settings``,
    and the forecast's calendar, quotas, teams and stages."""
    # By type, not by ``name``: on a class compiled by mypyc, ``DetractorsKpi.name`` is the
    # attribute's descriptor, not the string, and a lookup by it never matched.
    policy = Policy(settings.detractor_sla, frozenset(settings.human_channels))
    forecast = forecast_kpi(settings)
    return tuple(
        DetractorsKpi(policy)
        if isinstance(kpi, DetractorsKpi)
        else forecast
        if isinstance(kpi, ForecastKpi)
        else kpi
        for kpi in KPIS
    )


def create_app(
    settings: Settings,
    *,
    kpis: tuple[Kpi, ...] | None = None,
    epoch: str = "",
    topic_id: Callable[[str], str | None] | None = None,
) -> tuple[SalesPulseApp, Runtime]:
    """Build the app and its runtime; nothing connects until the app starts.

    ``epoch`` names the state table (and so its changelog topic) after the broker identity:
    a worker whose broker was replaced under it may still retry a write into the new broker,
    and those stale records must land in a topic the new state never reads. ``topic_id``
    looks up a topic's id on the broker; given it (a worker whose hash seed is its data
    directory's), the state has a local snapshot unless ``SALESPULSE_SNAPSHOT_INTERVAL`` is 0.
    ``kpis`` replaces the configured eight (the benchmark's no-KPI reference worker).
    """
    engine = Engine(
        clock=settings.clock,
        label_cap=settings.label_cap,
        max_event_bytes=settings.max_event_bytes,
        targets=load_targets(settings.targets_file),
        partitions=settings.partitions,
        kpis=configured_kpis(settings) if kpis is None else kpis,
        max_clock_skew=settings.max_clock_skew,
        outcome_memory=settings.outcome_memory,
    )
    app = SalesPulseApp(
        settings.app_id,
        broker=settings.faust_broker,
        broker_credentials=None,
        datadir=str(settings.data_dir),
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        table_standby_replicas=1,
        web_enabled=True,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=settings.fetch_records,
        consumer_max_fetch_size=1024 * 1024,
        broker_commit_every=1_000_000,
        broker_commit_interval=settings.commit_interval,
        stream_wait_empty=False,
        producer_max_request_size=4 * 1024 * 1024,
        producer_linger=0.005,
        TableManager=PromptTableManager,
        **_broker_timeouts(settings),
    )
    runtime = Runtime(settings, app, engine)
    app.timer(POLL_SECONDS, on_leader=False)(runtime.reload_rates)
    if topic_id is not None and settings.snapshot_interval > 0:
        snapshots = Snapshots(
            settings.data_dir / "snapshots", settings.partitions, settings.snapshot_interval
        )
        runtime.snapshots = SnapshotWriter(snapshots, engine, runtime.owned)
        # One partition's image a tick, so a worker with many never stalls for all at once.
        app.timer(min(1.0, settings.snapshot_interval), on_leader=False)(_snapshot_tick(runtime.snapshots))
    table = StateTable(
        app,
        engine=engine,
        ownership=runtime.ownership,
        snapshots=runtime.snapshots,
        topic_id=topic_id,
        name=state_table(epoch),
        partitions=settings.partitions,
        beacon=app.beacon,
    )
    app.tables.add(table)
    runtime.table = table
    for kpi in engine.kpis:
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
