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
``outbox`` store and deliver it; ``schedule`` and ``command`` run it. Import them from
their modules: this file re-exports nothing, because a worker imports ``catalogue`` at
start and must not load matplotlib, fontTools and PIL (tens of MB) with it unless it
builds a page.
"""
