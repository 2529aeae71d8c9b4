"""KPI 4: competitor pricing.

Keeps the latest competitor price per (product, competitor, currency) and our latest list
price per (product, currency). Latest means greatest ``occurred_at``, offset breaking ties,
and events of any age count. Price index = list price / competitor price, same currency.
Prices are only compared, never summed, so they keep millionths of the currency's major unit
(``agents/money.py``); in the reporting currency they are worth what the newest rate on or
before the read's day makes of them, as any value that stands now.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from salespulse.agents.base import (
    ApplyContext,
    Event,
    ExportContext,
    Sample,
    Series,
    Value,
    ratio,
)
from salespulse.agents.customers import CustomerIndex
from salespulse.agents.money import DAY, major
from salespulse.agents.rolling import Clock, LatestMap
from salespulse.schemas.topics import MARKET


class PricingState:
    def __init__(self) -> None:
        self.competitor = LatestMap("competitor")
        self.list_price = LatestMap("list")

    def drain(self, topic: str, offset: int, clock: Clock) -> Iterator[tuple[list[object], list[int]]]:
        if topic == MARKET:
            yield from self.competitor.drain_dirty()
            yield from self.list_price.drain_dirty()

    def restore(self, topic: str, key: list[Any], rec: list[int] | None, ctx: ApplyContext) -> None:
        if rec is None:  # latest prices never expire, so they never get a tombstone
            return
        family, *labels = key
        target = self.competitor if family == "competitor" else self.list_price
        for name, value in zip(
            ("product", "competitor", "currency") if family == "competitor" else ("product", "currency"),
            labels,
            strict=True,
        ):
            ctx.fold.register(name, value)
        target.restore(tuple(labels), rec)


class PricingKpi:
    name = "pricing"
    title = "Competitor pricing"
    event_types = frozenset({"competitor.price_observed", "product.price_set"})
    topics = frozenset({MARKET})

    def new_state(self, customers: CustomerIndex) -> PricingState:
        return PricingState()

    def apply(self, state: PricingState, event: Event, ctx: ApplyContext) -> None:
        d = event.data
        product, currency = ctx.fold("product", d["product"]), ctx.fold("currency", d["currency"])
        price = [d["price"]]
        if event.type == "product.price_set":
            state.list_price.offer((product, currency), event.t, event.offset, price)
        else:
            key = (product, ctx.fold("competitor", d["competitor"]), currency)
            state.competitor.offer(key, event.t, event.offset, price)

    def samples(self, states: Sequence[PricingState], ctx: ExportContext) -> Iterator[Sample]:
        fx, today = ctx.fx, ctx.clock.now // DAY
        for state in states:
            for name, latest, label_names in (
                ("salespulse_competitor_price", state.competitor, ("product", "competitor", "currency")),
                ("salespulse_list_price", state.list_price, ("product", "currency")),
            ):
                for key, rec in latest.records.items():
                    labels = dict(zip(label_names, key, strict=True))
                    currency = labels["currency"]
                    yield name, labels, major(rec[2], currency, price=True)
                    reporting = fx.to_reporting(rec[2], currency, today, price=True) if fx.enabled else None
                    if reporting is not None:
                        yield name + "_reporting", labels, reporting

    def summarize(self, series: Series, window: str) -> dict[str, Any]:
        list_prices: dict[tuple[str, str], Value] = {}
        competitors: list[tuple[str, str, str, Value]] = []
        for lab, value in series.named("salespulse_list_price"):
            list_prices[(lab["product"], lab["currency"])] = value
        for lab, value in series.named("salespulse_competitor_price"):
            competitors.append((lab["product"], lab["competitor"], lab["currency"], value))
        rows = []
        for product, competitor, currency, price in sorted(competitors):
            ours = list_prices.get((product, currency))
            rows.append(
                {
                    "product": product,
                    "competitor": competitor,
                    "currency": currency,
                    "competitor_price": price,
                    "list_price": ours,
                    "price_index": None if ours is None else ratio(float(ours), float(price)),
                }
            )
        return {"prices": rows}


KPI: PricingKpi = PricingKpi()
