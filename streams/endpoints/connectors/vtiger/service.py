"""``salespulse connect vtiger``: poll, produce, wait; on failure, say why and back off.

Every failure (vtiger down, refused credentials, a refused query, a module without the
fields vtiger documents, the broker gone) is one clear log line naming the cause and one
``salespulse_connector_errors_total{reason}``, never a crash loop. A module that fails is
tried again at the next poll while the others go on at their usual pace; only when every
module failed (or the broker did) does the next try wait a growing pause. A broker failure
starts again from what the state topic holds, so a failure half way through a page
repairs itself. A record that cannot be mapped is no failure: it goes to the dead letters
(see :mod:`.poller`). ``--once`` polls once and exits non-zero if anything failed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from kafka.errors import KafkaError

from salespulse.agents.rolling import RETENTION_HOURS
from salespulse.streams.endpoints.connectors.mapping import MappingError, load_mapping
from salespulse.streams.endpoints.connectors.vtiger.client import VtigerClient, VtigerError
from salespulse.streams.endpoints.connectors.vtiger.metrics import ConnectorMetrics, serve
from salespulse.streams.endpoints.connectors.vtiger.poller import VtigerPoller, wall_clock
from salespulse.streams.endpoints.connectors.vtiger.records import (
    MODULES,
    SOURCE,
    Translator,
    UnexpectedRecord,
    crm_account,
    to_vtiger_time,
)
from salespulse.streams.endpoints.connectors.vtiger.state import StateStore
from salespulse.streams.endpoints.producer import BrokerUnavailable, EventProducer
from salespulse.streams.kafka.admin import connector_state_topic, ensure_topics, input_topics
from salespulse.streams.settings import Settings

log = logging.getLogger("salespulse.connect.vtiger")

REASONS = ("unreachable", "auth", "query", "vtiger", "unexpected_field", "broker")
SKIPS = ("not_call_or_meeting", "no_customer", "past_retention", "deleted")
EVENT_TYPES = (
    "lead.created",
    "opportunity.created",
    "opportunity.updated",
    "deal.won",
    "deal.lost",
    "customer.activity",
)
BACKOFF_FIRST = 2.0
BACKOFF_MOST = 300.0
#: OSError covers the broker's and the state topic's timeouts.
FAILURES = (VtigerError, UnexpectedRecord, BrokerUnavailable, KafkaError, OSError)


class ConnectorConfigError(ValueError):
    """The connector cannot start with these settings; the message names the setting."""


def first_start(settings: Settings, now: datetime | None = None) -> str:
    """Where a first start reads from: ``SALESPULSE_VTIGER_SINCE``, else the bucket retention."""
    zone = ZoneInfo(settings.vtiger_timezone)
    since = settings.vtiger_since_time() or (now or datetime.now(UTC)) - timedelta(hours=RETENTION_HOURS)
    return to_vtiger_time(since, zone)


def connector_clock(settings: Settings) -> Callable[[], datetime]:
    """The wall clock, or the fixed time ``SALESPULSE_CLOCK`` names (tests and replays): what
    holds a planned meeting and ages the memory."""
    if settings.clock in {"wall", "stream"}:
        return wall_clock
    try:
        fixed = datetime.fromisoformat(settings.clock)
    except ValueError:
        raise ConnectorConfigError(
            f"SALESPULSE_CLOCK={settings.clock!r} is not wall, stream or an RFC 3339 time"
        ) from None
    if fixed.tzinfo is None:
        raise ConnectorConfigError(f"SALESPULSE_CLOCK={settings.clock!r} names no zone")
    return lambda: fixed


def backoff(failures: int) -> float:
    """Seconds before the next try after ``failures`` failures in a row: 2, 4, 8, ... 300."""
    return float(min(BACKOFF_MOST, BACKOFF_FIRST * 2 ** max(0, failures - 1)))


class Connection:
    """A producer, a vtiger session and the stored state, opened together and dropped together."""

    def __init__(self, settings: Settings, translator: Translator, metrics: ConnectorMetrics) -> None:
        ensure_topics(settings, [*input_topics(settings), connector_state_topic(settings)])
        self.producer = EventProducer(settings)
        self.client = VtigerClient(settings.vtiger_url, settings.vtiger_user, settings.vtiger_access_key)
        try:
            clock = connector_clock(settings)
            store = StateStore(settings, self.producer, SOURCE, translator.account)
            self.poller = VtigerPoller(
                self.client,
                translator,
                self.producer,
                store,
                first_start(settings, clock()),
                metrics,
                clock=clock,
            )
            self.poller.recover()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.client.logout()
        with contextlib.suppress(Exception):
            self.producer.close()


def _translator(settings: Settings) -> Translator:
    missing = [
        name
        for name, value in (
            ("SALESPULSE_VTIGER_URL", settings.vtiger_url),
            ("SALESPULSE_VTIGER_USER", settings.vtiger_user),
            ("SALESPULSE_VTIGER_ACCESS_KEY", settings.vtiger_access_key),
        )
        if not value
    ]
    if missing:
        raise ConnectorConfigError(f"set {', '.join(missing)} to connect to vtiger (see docs/connectors.md)")
    try:
        mapping = load_mapping(settings.connectors_file)
    except MappingError as exc:
        raise ConnectorConfigError(f"SALESPULSE_CONNECTORS: {exc}") from None
    return Translator(mapping, crm_account(settings.vtiger_url), ZoneInfo(settings.vtiger_timezone))


def run_vtiger(settings: Settings, *, once: bool, stop: threading.Event) -> int:
    """Poll until ``stop`` is set (or once); returns the exit status."""
    translator = _translator(settings)
    connector_clock(settings)  # a clock it cannot read stops it here, not in the retry loop
    metrics = ConnectorMetrics(
        SOURCE, reasons=REASONS, event_types=EVENT_TYPES, skips=SKIPS, started=time.time(), modules=MODULES
    )
    server = None if once else serve(metrics, settings.web_host, settings.connector_port)
    if server is not None:
        log.info("metrics on http://%s:%d/metrics", settings.web_host, settings.connector_port)
    connection: Connection | None = None
    failures = 0
    try:
        while not stop.is_set():
            try:
                if connection is None:
                    connection = Connection(settings, translator, metrics)
                produced, failed = connection.poller.poll()
            except FAILURES as exc:
                reason = _reason(exc)
                metrics.failed(reason)
                failures += 1
                if connection is not None:
                    connection.close()
                    connection = None
                if once:
                    log.error("vtiger poll failed (%s): %s", reason, exc)
                    return 1
                log.error("vtiger poll failed (%s): %s; retrying in %.0fs", reason, exc, backoff(failures))
                stop.wait(backoff(failures))
                continue
            for module, error in failed.items():
                log.error("vtiger %s poll failed (%s): %s", module, _reason(error), error)
            log.info("polled vtiger at %s: %d new events", settings.vtiger_url, produced)
            if failed:
                metrics.failed(*(_reason(error) for error in failed.values()))
            else:
                metrics.succeeded(time.time())
            if once:
                return 1 if failed else 0
            failures = failures + 1 if len(failed) == len(MODULES) else 0
            stop.wait(backoff(failures) if failures else settings.vtiger_poll)
        return 0
    finally:
        if connection is not None:
            connection.close()
        if server is not None:
            server.shutdown()


def _reason(exc: BaseException) -> str:
    """The ``reason`` label of a failure."""
    return exc.reason if isinstance(exc, VtigerError | UnexpectedRecord) else "broker"
