"""The periodic KPI digest: an HTML report with charts, sent by email on a schedule.

Sales managers do not watch Grafana. They read a weekly mail. This module turns the
cluster view of ``/kpis`` into that mail. For each of the eight KPIs it shows the headline
number, the change against the previous period, and a chart. Previous periods and trend
points come from the workers' retained hour buckets, through ``/kpis?at=<epoch seconds>``
(62 days, hour resolution), so the digest needs no database of its own.

Every number is read straight from the merged view (``view["windows"][window]``), so the
digest always agrees with ``salespulse kpis`` and ``/kpis``.

Delivery uses only the standard library (``email`` and ``smtplib``). A failed send is
retried with backoff and logged. A message that still cannot be sent stays in
``<out>/outbox`` and is sent again on the next run. Nothing is lost silently.

The package is split by concern: ``windows``, ``formatting``, ``model``, ``charts``,
``sections``, ``render`` and ``digest`` build the digest; ``files``, ``smtp``, ``mail`` and
``outbox`` store and deliver it; ``schedule`` and ``command`` run it. The names other code
imports are re-exported here, so ``from streams.report import ...`` keeps working.
"""

from __future__ import annotations

from salespulse.streams.report.charts import (
    DPI,
    chart_bars,
    chart_conversion_by_rep,
    chart_counts_trend,
    chart_nps_trend,
    chart_price_index,
    chart_sales_by_region,
)
from salespulse.streams.report.command import parse_duration, report_command
from salespulse.streams.report.digest import build_digest
from salespulse.streams.report.errors import DigestDeliveryError, ReportError
from salespulse.streams.report.files import image_filename, write_digest
from salespulse.streams.report.formatting import (
    BLUE,
    COUNT,
    GREEN,
    GREY,
    INDEX,
    INK,
    MONEY,
    ORANGE,
    PERCENT,
    RED,
    SCORE,
    format_change,
    format_value,
)
from salespulse.streams.report.mail import build_message, deliver, send_digest
from salespulse.streams.report.model import CID_DOMAIN, Digest, Metric, Section, cid
from salespulse.streams.report.outbox import (
    OUTBOX,
    OutboxResult,
    flush_outbox,
    pending_messages,
    queue_message,
)
from salespulse.streams.report.schedule import ScheduleResult, run_once, run_schedule
from salespulse.streams.report.smtp import SmtpSettings
from salespulse.streams.report.windows import DAY, DIGEST_WINDOWS, RETENTION_SECONDS, TREND, oldest_reach

__all__ = [
    "BLUE",
    "CID_DOMAIN",
    "COUNT",
    "DAY",
    "DIGEST_WINDOWS",
    "DPI",
    "GREEN",
    "GREY",
    "INDEX",
    "INK",
    "MONEY",
    "ORANGE",
    "OUTBOX",
    "PERCENT",
    "RED",
    "RETENTION_SECONDS",
    "SCORE",
    "TREND",
    "Digest",
    "DigestDeliveryError",
    "Metric",
    "OutboxResult",
    "ReportError",
    "ScheduleResult",
    "Section",
    "SmtpSettings",
    "build_digest",
    "build_message",
    "chart_bars",
    "chart_conversion_by_rep",
    "chart_counts_trend",
    "chart_nps_trend",
    "chart_price_index",
    "chart_sales_by_region",
    "cid",
    "deliver",
    "flush_outbox",
    "format_change",
    "format_value",
    "image_filename",
    "oldest_reach",
    "parse_duration",
    "pending_messages",
    "queue_message",
    "report_command",
    "run_once",
    "run_schedule",
    "send_digest",
    "write_digest",
]
