"""Starting a worker safely: wait for the broker, prepare topics, probe it, then run faust.

A worker started before its broker must not crash: it answers ``/healthz`` (alive) and
``/readyz`` (503) while it retries with a clear log line. Before faust starts it creates
and checks the topics (a cluster that cannot hold them stops it once, with one message
and no retry), probes the broker for the short ListOffsets answer, and checks that the state
it keeps belongs to this broker; a watchdog re-checks that while the worker runs, and a
worker that finds itself on a different broker (or on recreated topics) starts over from
empty state instead of trusting stale offsets.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hashlib
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import faust
import orjson
from aiohttp import web as aioweb
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaConfigurationError, KafkaError

from salespulse.agents.base import Kpi
from salespulse.streams.hot_path import describe
from salespulse.streams.kafka.admin import (
    admin_client,
    broker_identity,
    changelog_topic,
    ensure_topics,
    input_topics,
    leader_topic,
    topic_id,
)
from salespulse.streams.kafka.offsets import listoffsets_is_short
from salespulse.streams.pipeline.allocator import fix_mmap_threshold
from salespulse.streams.pipeline.app import SalesPulseApp, create_app
from salespulse.streams.pipeline.consumer import BatchConsumer
from salespulse.streams.pipeline.hash_seed import pinned
from salespulse.streams.pipeline.internals import check_internals
from salespulse.streams.pipeline.runtime import Runtime
from salespulse.streams.settings import Settings
from salespulse.streams.tokens import TOKEN_FILE, worker_settings

log = logging.getLogger("salespulse.worker")


def identity_epoch(identity: dict[str, Any]) -> str:
    """A short stamp of the broker identity, carried by every changelog record."""
    raw = orjson.dumps(identity, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(raw, digest_size=6).hexdigest()


def same_broker(saved: dict[str, Any], current: dict[str, Any]) -> bool:
    """True unless the cluster id or the id of an input topic has changed."""
    return bool(
        saved.get("cluster_id") == current.get("cluster_id") and saved.get("topics") == current.get("topics")
    )


def check_state_dir(settings: Settings, identity: dict[str, Any]) -> None:
    """Wipe on-disk state that belongs to another broker; remember this one.

    The generated token stays: it is not state, and clients already hold it.
    """
    marker = settings.data_dir / "broker-identity.json"
    if marker.exists():
        saved = orjson.loads(marker.read_bytes())
        if not same_broker(saved, identity):
            log.warning("state in %s belongs to another broker: wiping it", settings.data_dir)
            for path in settings.data_dir.iterdir():
                if path.name == TOKEN_FILE:
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    marker.write_bytes(orjson.dumps(identity))


async def _serve_not_ready(settings: Settings) -> aioweb.AppRunner:
    async def healthz(request: aioweb.Request) -> aioweb.Response:
        return aioweb.json_response({"status": "alive"})

    async def readyz(request: aioweb.Request) -> aioweb.Response:
        return aioweb.json_response(
            {"status": "waiting for broker", "broker": ",".join(settings.brokers)}, status=503
        )

    async def unavailable(request: aioweb.Request) -> aioweb.Response:
        return aioweb.json_response({"error": "broker unreachable; worker not started"}, status=503)

    web = aioweb.Application()
    web.router.add_get("/healthz", healthz)
    web.router.add_get("/readyz", readyz)
    web.router.add_route("*", "/{tail:.*}", unavailable)
    runner = aioweb.AppRunner(web)
    await runner.setup()
    await aioweb.TCPSite(runner, settings.web_host, settings.web_port).start()
    return runner


def wait_for_broker(settings: Settings) -> dict[str, Any]:
    """Retry until the broker answers and the topics are ready, serving 503 on /readyz meanwhile.

    Returns the broker identity. A cluster or a topic that cannot hold the state raises
    :class:`~salespulse.streams.kafka.admin.TopicsRefused` at once: no retry fixes it.
    """
    loop = asyncio.new_event_loop()
    # Alive (and not ready) from the first moment, however long the broker takes.
    runner = loop.run_until_complete(_serve_not_ready(settings))
    try:
        attempt = 0
        while True:
            try:
                ensure_topics(settings, input_topics(settings))
                identity = broker_identity(settings)
                # Created here rather than by faust, so the changelog is compacted and checked
                # before a record is written; faust finds both topics and leaves them be.
                epoch = identity_epoch(identity)
                ensure_topics(settings, [changelog_topic(settings, epoch), leader_topic(settings)])
                return identity
            except KafkaConfigurationError:
                raise
            except (KafkaError, OSError) as exc:
                attempt += 1
                delay = min(5.0, 0.5 * attempt)
                log.warning(
                    "broker %s not reachable (%s); retrying in %.1fs (attempt %d)",
                    ",".join(settings.brokers),
                    exc,
                    delay,
                    attempt,
                )
                loop.run_until_complete(asyncio.sleep(delay))
    finally:
        loop.run_until_complete(runner.cleanup())
        loop.close()


def restart_process(reason: str) -> None:
    """Start over as a fresh process: in-memory state and positions go with the old one."""
    log.error("%s: restarting with empty state", reason)
    logging.shutdown()
    os.execv(sys.executable, [sys.executable, "-m", "salespulse.streams", *sys.argv[1:]])


def _watch_identity(settings: Settings, identity: dict[str, Any], interval: float = 2.0) -> None:
    """Start over when the broker under us is not the one we started with.

    This catches a broker replaced while the group stays quiet; a replaced broker that
    triggers a rejoin is caught before any record is applied, by the check on assignment.
    """
    admin: KafkaAdminClient | None = None
    while True:
        time.sleep(interval)
        try:
            admin = admin or admin_client(settings)
            current = broker_identity(settings, admin)
        except (KafkaError, OSError):
            if admin is not None:
                admin.close()
            admin = None
            continue
        if current.get("topics") and not same_broker(identity, current):
            restart_process("the broker changed identity (restarted or topics recreated)")


def _still_same_broker(settings: Settings, identity: dict[str, Any]) -> bool:
    """Checked on every partition assignment, before any record of it is applied."""
    for _ in range(3):
        try:
            return same_broker(identity, broker_identity(settings))
        except (KafkaError, OSError):
            time.sleep(0.5)
    return False


def tune_gc() -> None:
    """Collect cycles rarely: a worker allocates a few small containers per event.

    Python's default starts a collection every 700 container allocations and a full one
    every 100 of those, which walk the hundreds of thousands of long-lived bucket records.
    SalesPulse makes almost no reference cycles (reference counting frees the rest), so
    rarer collections lose nothing; they lifted throughput by 10-15% (salespulse bench).
    Freezing moves start-up objects out of every future collection.
    """
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)


def faust_worker(app: faust.App, loglevel: str) -> faust.Worker:
    """A faust worker for a process whose output is a log file, not a terminal.

    faust's progress spinner sets the root logger to DEBUG whenever the level asked for is
    WARNING or above, so every debug call in aiokafka built a log record only to drop it:
    3-4% of a worker's time under ``salespulse bench``, which runs it at WARNING.
    """
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.spinner = None
    return worker


def run_worker(
    settings: Settings,
    serve: Callable[[SalesPulseApp, Runtime], None],
    loglevel: str = "info",
    kpis: tuple[Kpi, ...] | None = None,
) -> None:
    """Run one worker until SIGINT or SIGTERM. ``serve`` installs what it answers over HTTP
    (``streams/composition.py``); ``kpis`` replaces the configured eight."""
    check_internals()  # faust and aiokafka as the batch path was written against, or stop now
    fix_mmap_threshold()  # before any state is built
    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = worker_settings(settings)  # the token, generated at the first start if none is set
    identity = wait_for_broker(settings)
    check_state_dir(settings, identity)
    BatchConsumer.end_offsets_from_fetch = settings.end_offsets == "fetch" or (
        settings.end_offsets == "auto" and listoffsets_is_short(settings)
    )
    # partial objects, not functions: stored on the class they must not become methods.
    BatchConsumer.verify_broker = functools.partial(_still_same_broker, settings, identity)
    BatchConsumer.on_foreign_broker = functools.partial(restart_process)
    # A state image keeps ids as hashes: only a process seeded as its data dir may use one.
    snapshots = settings.snapshot_interval > 0 and pinned(settings.data_dir)
    app, runtime = create_app(
        settings,
        kpis=kpis,
        epoch=identity_epoch(identity),
        topic_id=functools.partial(topic_id, settings) if snapshots else None,
    )
    serve(app, runtime)
    log.info("hot path: %s; local state snapshot: %s", describe(), "on" if snapshots else "off")
    tune_gc()
    watchdog = threading.Thread(target=_watch_identity, args=(settings, identity), daemon=True)
    watchdog.start()
    faust_worker(app, loglevel).execute_from_commandline()
