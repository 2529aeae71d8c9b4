"""A worker as it runs: the pipeline with its views and exporter installed on top.

The pipeline (``pipeline/``) applies events and knows nothing of HTTP; the endpoints
(``endpoints/``) read the pipeline's runtime. Only this module sees both, so the imports of
the house flow one way: here, then the endpoints, then the pipeline, then the contract
(``tests/test_layout.py``).
"""

from __future__ import annotations

from salespulse.agents.base import Kpi
from salespulse.streams.endpoints.web import install_views
from salespulse.streams.pipeline import worker
from salespulse.streams.settings import Settings


def run_worker(settings: Settings, loglevel: str = "info", kpis: tuple[Kpi, ...] | None = None) -> None:
    """Run one worker, serving every view, until SIGINT or SIGTERM; ``kpis`` replaces the
    configured eight (the benchmark's no-KPI reference)."""
    worker.run_worker(settings, install_views, loglevel, kpis)
