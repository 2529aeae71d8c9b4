"""The connector's own metrics and its small HTTP server (``/metrics``, ``/healthz``).

The connector is its own process on its own port (``SALESPULSE_CONNECTOR_PORT``), with its
own registry, so nothing of a worker's or a library's global metrics leaks in and the
series are there from the first scrape. Prometheus' ``SalesPulseConnectorStalled`` alert
reads ``salespulse_connector_last_success_timestamp_seconds``: a poll that finds nothing
new is a success, so a quiet CRM never looks stalled, and each page done counts too, so a
first start working through months of records is not a stall either, as long as no module
is failing. Until the first success the gauge holds the start time: a connector that never
succeeds alerts after the same threshold as one that stopped succeeding.
``SalesPulseConnectorDeadLetters`` reads ``salespulse_connector_records_dead_total``, named
and labelled as the worker's series for the webhook connectors.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from salespulse.streams.endpoints.connectors.base import CAUSES, FALLBACKS
from salespulse.streams.endpoints.exposition import exposition

OUTCOMES = ("success", "failure")


class ConnectorMetrics:
    """Counters and the last-success gauge of one connector, labelled ``connector``."""

    def __init__(
        self,
        connector: str,
        *,
        reasons: Iterable[str],
        event_types: Iterable[str],
        skips: Iterable[str],
        started: float,
        modules: Iterable[str] = (),
    ) -> None:
        self.connector = connector
        self.registry = CollectorRegistry()
        self.polls = Counter(
            "salespulse_connector_polls",
            "Polls of the source system, by outcome.",
            ["connector", "outcome"],
            registry=self.registry,
        )
        self.last_success = Gauge(
            "salespulse_connector_last_success_timestamp_seconds",
            "Unix time of the last successful poll or page (the start time until the first).",
            ["connector"],
            registry=self.registry,
        )
        self.errors = Counter(
            "salespulse_connector_errors",
            "Failed polls, by cause.",
            ["connector", "reason"],
            registry=self.registry,
        )
        self.events = Counter(
            "salespulse_connector_events",
            "Events produced and acknowledged by the broker, by type.",
            ["connector", "type"],
            registry=self.registry,
        )
        self.skipped = Counter(
            "salespulse_connector_records_skipped",
            "Records that are no fact for SalesPulse (a task, a call about no account), by reason.",
            ["connector", "reason"],
            registry=self.registry,
        )
        self.dead_records = Counter(
            "salespulse_connector_records_dead",
            "Records sent to crm.deadletter because they cannot be mapped, by connector, module and reason.",
            ["connector", "module", "reason"],
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "salespulse_connector_fallbacks",
            "Won deals (and calls) whose customer is not their own organisation, by the fallback taken.",
            ["connector", "reason"],
            registry=self.registry,
        )
        for module in modules:
            for cause in CAUSES:
                self.dead_records.labels(connector, module, cause)
        for fallback in FALLBACKS:
            self.fallbacks.labels(connector, fallback)
        for outcome in OUTCOMES:
            self.polls.labels(connector, outcome)
        for reason in reasons:
            self.errors.labels(connector, reason)
        for event_type in event_types:
            self.events.labels(connector, event_type)
        for skip in skips:
            self.skipped.labels(connector, skip)
        self.last_success.labels(connector).set(started)

    def succeeded(self, at: float) -> None:
        self.polls.labels(self.connector, "success").inc()
        self.last_success.labels(self.connector).set(at)

    def progressed(self) -> None:
        """A page is done: the connector is working, even if its poll is not over yet."""
        self.last_success.labels(self.connector).set(time.time())

    def failed(self, *reasons: str) -> None:
        """A poll failed, whole or in some modules, for these reasons (one per failure)."""
        self.polls.labels(self.connector, "failure").inc()
        for reason in reasons:
            self.errors.labels(self.connector, reason).inc()

    def produced(self, event_type: str) -> None:
        self.events.labels(self.connector, event_type).inc()

    def skip(self, reason: str) -> None:
        self.skipped.labels(self.connector, reason).inc()

    def dead(self, module: str, cause: str) -> None:
        self.dead_records.labels(self.connector, module, cause).inc()

    def fallback(self, reason: str) -> None:
        self.fallbacks.labels(self.connector, reason).inc()

    def render(self, accept: str = "", accept_encoding: str = "") -> tuple[bytes, dict[str, str]]:
        """The ``/metrics`` answer in the format and encoding the request's headers ask for."""
        return exposition(self.registry, accept, accept_encoding)


def serve(metrics: ConnectorMetrics, host: str, port: int) -> ThreadingHTTPServer:
    """Serve ``/metrics`` and ``/healthz`` from a daemon thread; returns the server."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] == "/metrics":
                body, headers = metrics.render(
                    self.headers.get("Accept", ""), self.headers.get("Accept-Encoding", "")
                )
                self._answer(200, body, headers)
            elif self.path.split("?", 1)[0] == "/healthz":
                self._answer(200, orjson.dumps({"status": "alive", "connector": metrics.connector}))
            else:
                self._answer(404, orjson.dumps({"error": "not found; try /metrics or /healthz"}))

        def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {"Content-Type": "application/json"}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # scrapes are not news
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="connector-http", daemon=True).start()
    return server
