"""Prometheus export: a collector that reads the KPI tables at scrape time.

Nothing is counted per event here; a scrape reads the running window sums of the
partitions this worker actively owns (a standby exports nothing). The registry is our
own, not the global one faust's sensors would serve.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from salespulse.streams.endpoints.connectors.base import CAUSES, OTHER_MODULE
from salespulse.streams.endpoints.exposition import exposition
from salespulse.streams.pipeline.engine import Engine, Output

HELP = {
    "salespulse_leads": "Leads created in the window.",
    "salespulse_opportunities": "Opportunities created in the window.",
    "salespulse_lead_target": "Monthly lead target prorated to the window (static; aggregate with max).",
    "salespulse_customers_acquired": "Customers acquired (deal.won of kind new) in the window.",
    "salespulse_marketing_spend": "Marketing spend in the window, in the currency's major unit.",
    "salespulse_deals_won": "Deals won in the window.",
    "salespulse_deals_lost": "Deals lost in the window.",
    "salespulse_sales_amount": "Amount won in the window, in the currency's major unit.",
    "salespulse_competitor_price": "Latest observed competitor price.",
    "salespulse_list_price": "Latest list price of our product.",
    "salespulse_customers_engaged": "Distinct customers with at least one activity in the window.",
    "salespulse_customer_activities": "Customer activities in the window.",
    "salespulse_customers_known": "Customers with at least one deal won, of any age.",
    "salespulse_customers_at_risk": "Known customers whose latest activity or deal is over 30 days old.",
    "salespulse_enps_responses": "eNPS answers by category (team=all is org-wide; anonymity rules apply).",
    "salespulse_expansion_deals": "Deals won by expansion kind (kind=all is every deal won).",
    "salespulse_expansion_amount": "Amount of upsell and cross-sell deals won in the window.",
    "salespulse_reporting_currency_info": "The reporting currency amounts are converted to (static; max).",
    "salespulse_sales_amount_reporting": "Amount won in the window in the reporting currency, by day's rate.",
    "salespulse_sales_amount_reporting_previous_rates": "The same sales at the previous period's rates.",
    "salespulse_marketing_spend_reporting": "Marketing spend in the window in the reporting currency.",
    "salespulse_expansion_amount_reporting": "Upsell and cross-sell amounts in the reporting currency.",
    "salespulse_list_price_reporting": "Latest list price in the reporting currency, newest rate.",
    "salespulse_competitor_price_reporting": "Latest competitor price in the reporting currency.",
    "salespulse_fx_unconverted_events": "Events in the window whose currency has no rate for their day.",
    "salespulse_fx_unconverted_amount": "Their amount in their own currency: out of the reporting totals.",
    "salespulse_nps_responses": "NPS answers by category in the window.",
    "salespulse_nps_customers": "Customers by the category of their latest NPS answer.",
    "salespulse_detractors_open": "Detractor cases not yet followed up, by region and owner.",
    "salespulse_detractors_overdue": "Detractor cases open longer than the follow-up target.",
    "salespulse_detractor_cases": "Detractor cases by answer time in the window: opened, followed up, "
    "followed up within the target.",
    "salespulse_forecast_amount": "Forecast of the current and next fiscal quarter by measure (closed_won, "
    "commit, best_case, pipeline, weighted), in the currency's units.",
    "salespulse_forecast_quota": "A rep's amount quota for the current and next fiscal quarter (static; "
    "aggregate with max).",
    "salespulse_forecast_period_left_ratio": "Share of the current fiscal quarter still ahead (static; "
    "aggregate with max).",
}

COUNTERS = {
    "events": ("salespulse_events", "Events applied, by type (duplicates excluded).", "type"),
    "late": ("salespulse_events_late", "Events older than bucket retention, by type.", "type"),
    "rejected": (
        "salespulse_events_rejected",
        "Messages sent to crm.deadletter, by reason.",
        "reason",
    ),
    "duplicates": ("salespulse_events_duplicate", "Events whose event_id was already seen.", ""),
    "comments_truncated": (
        "salespulse_comments_truncated",
        "Survey comments over 2,000 characters, cut to that length.",
        "",
    ),
    "rounded": (
        "salespulse_amounts_rounded",
        "Amounts finer than their currency's minor unit (prices: a millionth), rounded half to even.",
        "currency",
    ),
    "unconverted": (
        "salespulse_fx_unconverted",
        "Won deals, spend and prices applied with no rate into the reporting currency, by currency.",
        "currency",
    ),
    "rerouted": (
        "salespulse_events_rerouted",
        "Records that arrived on a partition their key does not belong to, forwarded to the right one.",
        "topic",
    ),
}

#: The vendors with a webhook, and what became of a request (the labels of
#: ``salespulse_webhook_requests_total``; every pair is exported from 0).
WEBHOOK_VENDORS = ("hubspot", "salesforce", "pipedrive", "delighted", "typeform")
WEBHOOK_OUTCOMES = (
    "accepted",  # 2xx: every part mapped (or carried nothing to count), and the broker acked
    "unmappable",  # 2xx: authenticated, but some part went to crm.deadletter as unmappable
    "unauthorized",  # 401: signature, timestamp, credentials or org did not match
    "disabled",  # 404: the vendor's settings are not set
    "bad_request",  # 400/413: not the vendor's kind of request, or too large
    "unavailable",  # 5xx: the broker or the vendor's API did not answer; the vendor retries
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class WebhookCounters(Collector):
    """Webhook requests per vendor and outcome, the unmappable payloads they dead-lettered, and
    what each connector dead-lettered and which customer fallbacks its won deals took.

    These are counted by the web views of this process, not kept in partition state: like
    any process counter they restart from 0 with the worker, which ``rate()`` allows for.
    The dead-record and fallback series are named as the vtiger connector's own, so one
    alert and one dashboard query read every connector.
    """

    NAME = "salespulse_webhook_requests"
    HELP = "Vendor webhook requests, by vendor and outcome."

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()
        self.unmappable = 0
        self.dead_records: Counter[tuple[str, str, str]] = Counter()
        self.fallbacks: Counter[tuple[str, str]] = Counter()
        self._modules: dict[str, tuple[str, ...]] = {}

    def declare(self, vendor: str, modules: Iterable[str], fallbacks: Iterable[str]) -> None:
        """Export a connector's dead-record and fallback series from 0."""
        self._modules[vendor] = (*sorted(set(modules)), OTHER_MODULE)
        for module in self._modules[vendor]:
            for cause in CAUSES:
                self.dead_records[(vendor, module, cause)] += 0
        for reason in fallbacks:
            self.fallbacks[(vendor, reason)] += 0

    def request(self, vendor: str, outcome: str, unmappable: int = 0) -> None:
        self.requests[(vendor, outcome)] += 1
        self.unmappable += unmappable

    def dead(self, vendor: str, module: str, cause: str) -> None:
        """One record dead-lettered; a module the connector does not declare counts as ``other``."""
        if module not in self._modules.get(vendor, ()):
            module = OTHER_MODULE
        self.dead_records[(vendor, module, cause)] += 1

    def fallback(self, vendor: str, reason: str) -> None:
        self.fallbacks[(vendor, reason)] += 1

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.NAME, self.HELP, labels=["vendor", "outcome"])
        for vendor in WEBHOOK_VENDORS:
            for outcome in WEBHOOK_OUTCOMES:
                family.add_metric([vendor, outcome], self.requests[(vendor, outcome)])
        yield family
        dead = CounterMetricFamily(
            "salespulse_connector_records_dead",
            "Records sent to crm.deadletter because they cannot be mapped, by connector, module and reason.",
            labels=["connector", "module", "reason"],
        )
        for labels, n in sorted(self.dead_records.items()):
            dead.add_metric(list(labels), n)
        yield dead
        fallbacks = CounterMetricFamily(
            "salespulse_connector_fallbacks",
            "Won deals whose customer is not their own organisation, by the fallback taken.",
            labels=["connector", "reason"],
        )
        for pair, n in sorted(self.fallbacks.items()):
            fallbacks.add_metric(list(pair), n)
        yield fallbacks


class KpiCollector(Collector):
    """Reads gauges and counters from the engine for the partitions owned right now."""

    def __init__(
        self,
        engine: Engine,
        owned: Callable[[], set[int]],
        lag: Callable[[], dict[tuple[str, int], int]],
        webhooks: WebhookCounters,
        rates_valid: Callable[[], bool],
    ) -> None:
        self.engine = engine
        self.owned = owned
        self.lag = lag
        self.webhooks = webhooks
        self.rates_valid = rates_valid

    def collect(self) -> Iterator[Metric]:
        owned = self.owned()
        families: dict[str, GaugeMetricFamily] = {}
        for name, labels, value in self.engine.samples(owned):
            family = families.get(name)
            if family is None:
                family = families[name] = GaugeMetricFamily(name, HELP.get(name, name), labels=sorted(labels))
            family.add_metric([labels[k] for k in sorted(labels)], float(value))
        yield from families.values()
        counters = self.engine.counters(owned)
        # Unmappable webhook payloads never reach a topic's decoder: the web views count them.
        rejected = counters["rejected"]
        rejected["unmappable"] = rejected.get("unmappable", 0) + self.webhooks.unmappable
        for key, counts in counters.items():
            name, doc, label = COUNTERS[key]
            counter = CounterMetricFamily(name, doc, labels=[label] if label else [])
            if isinstance(counts, int):
                counter.add_metric([], counts)
            else:
                for value_label, n in sorted(counts.items()):
                    counter.add_metric([value_label], n)
            yield counter
        lag = GaugeMetricFamily(
            "salespulse_consumer_lag",
            "Records behind the high watermark (from Fetch responses), per owned partition.",
            labels=["topic", "partition"],
        )
        for (topic, partition), n in sorted(self.lag().items()):
            lag.add_metric([topic, str(partition)], n)
        yield lag
        owned_gauge = GaugeMetricFamily(
            "salespulse_partitions_owned", "Partitions this worker actively owns and exports."
        )
        owned_gauge.add_metric([], len(owned))
        yield owned_gauge
        valid = GaugeMetricFamily(
            "salespulse_fx_rates_file_valid",
            "1 when the rates file last read without error (0: the previous rates stay in force).",
        )
        valid.add_metric([], float(self.rates_valid()))
        yield valid


class LatencyHistogram(Collector):
    """``salespulse_event_to_state_seconds``, observed a whole batch at a time.

    A fetch of thousands of records carries few distinct record timestamps (producers
    batch), so each distinct timestamp is bucketed once. A ``Histogram.observe`` per event,
    with its lock and bucket search, took 3% of a worker's time.
    """

    NAME = "salespulse_event_to_state_seconds"
    HELP = "From the Kafka record timestamp to the moment the table applied the event."

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = (*bounds, math.inf)
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0

    def observe(self, timestamps_ms: list[int], applied_ms: float) -> None:
        for ts, n in Counter(timestamps_ms).items():
            seconds = max(0.0, applied_ms - ts) / 1000.0
            self.counts[bisect.bisect_left(self.bounds, seconds)] += n
            self.sum += seconds * n

    def collect(self) -> Iterator[Metric]:
        cumulative = itertools.accumulate(self.counts)
        les = [floatToGoString(b) for b in self.bounds]  # type: ignore[no-untyped-call]
        buckets = list(zip(les, cumulative, strict=True))
        yield HistogramMetricFamily(self.NAME, self.HELP, buckets=buckets, sum_value=self.sum)


class Exporter:
    """The worker's registry: the KPI collector, the webhook counters and the latency histogram."""

    def __init__(
        self,
        engine: Engine,
        owned: Callable[[], set[int]],
        lag: Callable[[], dict[tuple[str, int], int]],
        rates_valid: Callable[[], bool] = lambda: True,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.webhooks = WebhookCounters()
        self.registry.register(KpiCollector(engine, owned, lag, self.webhooks, rates_valid))
        self.registry.register(self.webhooks)
        self.latency = LatencyHistogram()
        self.registry.register(self.latency)

    def observe(self, out: Output) -> None:
        self.latency.observe(out.timestamps, out.applied_ms)

    def render(self, accept: str = "", accept_encoding: str = "") -> tuple[bytes, dict[str, str]]:
        """The ``/metrics`` answer in the format and encoding the request's headers ask for."""
        return exposition(self.registry, accept, accept_encoding)

    def value(self, name: str, labels: dict[str, Any] | None = None) -> float | None:
        value = self.registry.get_sample_value(name, labels or {})
        return None if value is None else float(value)
