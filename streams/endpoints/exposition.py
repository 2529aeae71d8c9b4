"""One ``/metrics`` answer for every SalesPulse process: the worker's and the connector's.

prometheus-client's own exposition picks the format the scraper asks for (``Accept``:
OpenMetrics for Prometheus, the 0.0.4 text format for everyone else, as before) and
compresses when ``Accept-Encoding`` allows gzip. Its HTTP handlers own the server, which
neither the worker (faust's aiohttp) nor the connector (its small ``http.server``) can
hand over, so both call this with their request's two headers instead.
"""

from __future__ import annotations

import gzip

from prometheus_client import disable_created_metrics
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import Collector

# A ``_created`` series per counter would double the connector's series for a timestamp no
# dashboard or rule reads (the worker's families carry none). The switch is the library's,
# process-wide, and every process that serves this answer wants it off.
disable_created_metrics()  # type: ignore[no-untyped-call]


def exposition(
    registry: Collector, accept: str = "", accept_encoding: str = ""
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a ``/metrics`` answer to a request with these headers."""
    encoder, content_type = choose_encoder(accept)
    body = encoder(registry)
    # Caches must not hand a gzipped OpenMetrics answer to a client that asked for neither.
    headers = {"Content-Type": content_type, "Vary": "Accept, Accept-Encoding"}
    if gzip_accepted(accept_encoding):
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    return body, headers
