"""``/metrics`` answers in the format and encoding the scraper asks for, on the worker and the connector.

- No ``Accept`` (curl, a browser, an old scraper): the 0.0.4 text format, as before.
- ``Accept: application/openmetrics-text`` (what Prometheus sends): OpenMetrics, ending in
  ``# EOF``, with the very same samples and no ``_created`` series.
- ``Accept-Encoding: gzip``: the same body, gzipped, in either format.
"""

from __future__ import annotations

import gzip
import urllib.request
from typing import Any

from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families as text_families

from salespulse.streams.endpoints.connectors.vtiger.metrics import ConnectorMetrics, serve
from salespulse.streams.tools.broker import free_port
from salespulse.streams.tools.generator import GeneratorConfig, generate
from tests.conftest import FIXED_NOW, send_and_wait

OPENMETRICS = "application/openmetrics-text"
PROMETHEUS_ACCEPT = (  # what Prometheus 2.42 sends with every scrape
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
Sample = tuple[str, frozenset[tuple[str, str]], float]


def scrape(url: str, **headers: str) -> tuple[dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={k.replace("_", "-"): v for k, v in headers.items()})
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(response.headers), response.read()


def samples(families: Any) -> set[Sample]:
    return {(s.name, frozenset(s.labels.items()), float(s.value)) for f in families for s in f.samples}


def check_negotiation(url: str) -> set[Sample]:
    """Ask for each format and encoding; return the samples, which every answer must agree on."""
    plain_headers, plain = scrape(url)
    assert plain_headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "Content-Encoding" not in plain_headers
    assert not plain.rstrip().endswith(b"# EOF")
    text = samples(text_families(plain.decode()))
    assert text and not [s for s in text if s[0].endswith("_created")], "a _created series"

    for accept in (OPENMETRICS, PROMETHEUS_ACCEPT):
        om_headers, om = scrape(url, Accept=accept)
        assert om_headers["Content-Type"].startswith(f"{OPENMETRICS}; version=1.0.0; charset=utf-8"), accept
        assert om.endswith(b"# EOF\n"), accept
        assert samples(openmetrics_families(om.decode())) == text, accept

    for accept in ("", OPENMETRICS):
        zipped_headers, zipped = scrape(url, Accept=accept, Accept_Encoding="gzip, deflate")
        assert zipped_headers["Content-Encoding"] == "gzip"
        assert zipped[:2] == b"\x1f\x8b", "not a gzip stream"
        body = gzip.decompress(zipped).decode()
        parse = openmetrics_families if accept else text_families
        assert samples(parse(body)) == text
        assert "Accept-Encoding" in zipped_headers["Vary"]
    return text


def test_a_worker_answers_openmetrics_or_gzip_when_asked_and_the_0_0_4_text_otherwise(
    spawn_worker: Any, producer: Any
) -> None:
    worker = spawn_worker()
    worker.wait_ready()
    send_and_wait(worker, producer, list(generate(GeneratorConfig(seed=5, now=FIXED_NOW), 300)))

    found = check_negotiation(f"http://{worker.address}/metrics")

    names = {name for name, _, _ in found}
    assert {
        "salespulse_leads",
        "salespulse_events_total",
        "salespulse_event_to_state_seconds_bucket",
    } <= names
    assert sum(v for name, _, v in found if name == "salespulse_events_total") == 300


def test_the_connector_answers_openmetrics_or_gzip_when_asked_and_the_0_0_4_text_otherwise() -> None:
    metrics = ConnectorMetrics(
        "vtiger", reasons=["auth"], event_types=["deal.won"], skips=["no_account"], started=1_700_000_000.0
    )
    metrics.produced("deal.won")
    port = free_port()
    server = serve(metrics, "127.0.0.1", port)
    try:
        found = check_negotiation(f"http://127.0.0.1:{port}/metrics")
    finally:
        server.shutdown()
        server.server_close()

    labels = frozenset({("connector", "vtiger"), ("type", "deal.won")})
    assert ("salespulse_connector_events_total", labels, 1.0) in found
    assert (
        "salespulse_connector_last_success_timestamp_seconds",
        frozenset({("connector", "vtiger")}),
        1.7e9,
    ) in found
