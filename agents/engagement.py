"""KPI 5: engagement of existing customers, and customers at risk.

A customer is engaged in a window when it has at least one ``customer.activity`` there,
which is the same as its latest activity falling in the window; so a histogram of latest
activity times gives the distinct counts without scanning customers. Known customers have
at least one ``deal.won`` of any age. A known customer is at risk when the minute of its
latest activity or deal is more than 30 days (43,200 minutes) before the clock's minute;
that count is kept incrementally as customers and the clock move.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from salespulse.agents.base import (
    ApplyContext,
    CountersState,
    Event,
    ExportContext,
    Sample,
    Series,
    in_window,
    merged_window,
    window_samples,
)
from salespulse.agents.customers import CustomerIndex
from salespulse.agents.rolling import WINDOW_NAMES, Clock, LatestTime, WindowedCounter
from salespulse.schemas.topics import ACTIVITIES, DEALS

AT_RISK_MINUTES = 30 * 24 * 60


class AtRisk:
    """Known customers by the minute of their latest touch, and how many are too old."""

    def __init__(self) -> None:
        self.by_minute: dict[int, int] = {}
        self.threshold: int | None = None
        self.count = 0

    def move(self, before: int | None, after: int) -> None:
        if before is not None:
            self.by_minute[before] -= 1
            if not self.by_minute[before]:
                del self.by_minute[before]
            if self.threshold is not None and before < self.threshold:
                self.count -= 1
        self.by_minute[after] = self.by_minute.get(after, 0) + 1
        if self.threshold is not None and after < self.threshold:
            self.count += 1

    def at(self, clock: Clock) -> int:
        """At-risk count at ``clock``, changing nothing: the running count at its own minute."""
        threshold = clock.minute - AT_RISK_MINUTES
        return self.count if threshold == self.threshold else self._count_below(threshold)

    def refresh(self, clock: Clock) -> None:
        """Move the running count to ``clock`` (when applying only)."""
        threshold = clock.minute - AT_RISK_MINUTES
        if threshold != self.threshold:
            self.count, self.threshold = self._count_below(threshold), threshold

    def _count_below(self, threshold: int) -> int:
        """Customers whose latest touch is before ``threshold``: from the running count when
        the minutes in between are fewer than the customers' distinct minutes, else a sum."""
        old = self.threshold
        if old is None or abs(threshold - old) > len(self.by_minute):
            return sum(n for m, n in self.by_minute.items() if m < threshold)
        lo, hi = sorted((old, threshold))
        moved = sum(self.by_minute.get(m, 0) for m in range(lo, hi))
        return self.count + (moved if threshold > old else -moved)


class EngagementState(CountersState):
    def __init__(self, customers: CustomerIndex) -> None:
        super().__init__((ACTIVITIES, WindowedCounter("activities", ("channel",), 1)))
        self.activity = LatestTime("activity", customers)
        self.deal = LatestTime("deal", customers)
        self.engaged = WindowedCounter("engaged", (), 1, persisted=False)
        self.at_risk = AtRisk()

    def _latest(self, customer: str) -> int:
        deal = self.deal.get(customer)
        assert deal is not None, "only known customers have a latest touch"
        activity = self.activity.get(customer)
        return deal if activity is None else max(activity, deal)

    def offer_activity(self, customer: str, minute: int, clock: Clock) -> None:
        known = customer in self.deal
        before = self._latest(customer) if known else None
        old = self.activity.offer(customer, minute)
        if old is None:
            return
        if old >= 0:
            self.engaged.adjust(old * 60, (), [-1], clock)
        self.engaged.adjust(minute * 60, (), [1], clock)
        if known:
            self.at_risk.move(before, self._latest(customer))

    def offer_deal(self, customer: str, minute: int) -> None:
        before = self._latest(customer) if customer in self.deal else None
        if self.deal.offer(customer, minute) is not None:
            self.at_risk.move(before, self._latest(customer))

    def drain(self, topic: str, offset: int, clock: Clock) -> Iterator[tuple[list[object], list[int] | None]]:
        yield from super().drain(topic, offset, clock)
        if topic == ACTIVITIES:
            yield from self.activity.drain_dirty(offset)
        elif topic == DEALS:
            yield from self.deal.drain_dirty(offset)

    def restore(self, topic: str, key: list[Any], rec: list[int] | None, ctx: ApplyContext) -> None:
        if key[0] not in ("activity", "deal"):
            super().restore(topic, key, rec, ctx)
        elif rec is None:  # latest touches never expire, so they never get a tombstone
            return
        elif key[0] == "activity":
            self.offer_activity(key[1], rec[0], ctx.clock)
            self.activity.restored(key[1])
        else:
            self.offer_deal(key[1], rec[0])
            self.deal.restored(key[1])

    def profile(self, customer: str) -> dict[str, Any]:
        """The customer's part of the profile (a read: changes nothing)."""
        row = self.activity.index.peek(customer)
        act, deal = self.activity.at_row(row), self.deal.at_row(row)
        return {
            "known": deal is not None,
            "last_activity_minute": act,
            "last_deal_minute": deal,
        }


class EngagementKpi:
    name = "engagement"
    title = "Engagement of existing customers"
    event_types = frozenset({"customer.activity", "deal.won"})
    topics = frozenset({ACTIVITIES, DEALS})

    def new_state(self, customers: CustomerIndex) -> EngagementState:
        return EngagementState(customers)

    def apply(self, state: EngagementState, event: Event, ctx: ApplyContext) -> None:
        d = event.data
        minute = event.t // 60
        state.at_risk.refresh(ctx.clock)
        customer = d["customer_id"]
        if event.type == "deal.won":
            state.offer_deal(customer, minute)
            return
        state.offer_activity(customer, minute, ctx.clock)
        if not event.late:
            labels = (ctx.fold("channel", d["channel"]),)
            state.counters["activities"].add(event.t, labels, [1], event.offset, ctx.clock)

    def samples(self, states: Sequence[EngagementState], ctx: ExportContext) -> Iterator[Sample]:
        yield from window_samples(
            [s.counters["activities"] for s in states],
            "salespulse_customer_activities",
            ("channel",),
            [({}, 0, 1)],
            ctx.clock,
        )
        for window in WINDOW_NAMES:
            sums = merged_window([s.engaged for s in states], window, ctx.clock)
            engaged = sums.get((), [0])[0]
            yield "salespulse_customers_engaged", {"window": window}, float(engaged)
        known = sum(len(s.deal) for s in states)
        yield "salespulse_customers_known", {}, float(known)
        at_risk = sum(s.at_risk.at(ctx.clock) for s in states)
        yield "salespulse_customers_at_risk", {}, float(at_risk)

    def summarize(self, series: Series, window: str) -> dict[str, Any]:
        w = in_window(window)
        known = series.total("salespulse_customers_known")
        at_risk = series.total("salespulse_customers_at_risk")
        return {
            "customers_engaged": series.total("salespulse_customers_engaged", w),
            "activities": series.total("salespulse_customer_activities", w),
            "activities_by_channel": series.group("salespulse_customer_activities", "channel", w),
            "customers_known": known,
            "customers_at_risk": at_risk,
            "at_risk_share": at_risk / known if known else None,
        }


KPI: EngagementKpi = EngagementKpi()
