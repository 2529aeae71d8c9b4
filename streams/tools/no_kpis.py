"""The no-KPI reference path for ``salespulse bench``: the real worker, with no KPI work.

``vs_raw`` says how far the worker is from fetching and decoding alone, but not where the
rest goes. This worker runs everything a worker does for every event except the KPIs: the
consumer path, decode and the contract checks, routing and the partition check, dedupe,
the changelog's offset and dedupe records, the snapshot and the acks. Its one KPI takes
every input topic and keeps nothing. Measured in the same run, the gap between it and the
full worker is what the eight KPIs cost, and its own ``vs_raw`` bounds what making them
cheaper could ever give.

It runs under its own application id, so its consumer group and changelog are its own,
and it is told apart from a worker by nothing else: the bench reads its ``/progress``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from salespulse.agents.base import ApplyContext, Event, ExportContext, Sample, Series
from salespulse.agents.customers import CustomerIndex
from salespulse.agents.rolling import Clock
from salespulse.schemas.topics import INPUT_TOPICS
from salespulse.streams.composition import run_worker
from salespulse.streams.pipeline.hash_seed import pin
from salespulse.streams.settings import Settings

APP_ID = "salespulse-no-kpis"


class NothingKept:
    """A KPI state with nothing in it: no changelog records, nothing to restore."""

    def drain(self, topic: str, offset: int, clock: Clock) -> Iterator[tuple[list[object], list[Any] | None]]:
        return iter(())

    def restore(self, topic: str, key: list[Any], rec: list[Any] | None, ctx: ApplyContext) -> None:
        raise ValueError(f"the no-KPI reference writes no KPI records, but read {key!r}")


class NoKpi:
    """Subscribes to every input topic, so every event is fetched, decoded and deduped."""

    name = "none"
    title = "No KPI (benchmark reference)"
    event_types: frozenset[str] = frozenset()
    topics = frozenset(INPUT_TOPICS)

    def new_state(self, customers: CustomerIndex) -> NothingKept:
        return NothingKept()

    def apply(self, state: Any, event: Event, ctx: ApplyContext) -> None:
        raise AssertionError("no event type is dispatched to the no-KPI reference")

    def samples(self, states: Sequence[Any], ctx: ExportContext) -> Iterator[Sample]:
        return iter(())

    def summarize(self, series: Series, window: str) -> dict[str, Any]:
        return {}


def main() -> None:
    """Run the worker as ``salespulse worker`` would, from the ``SALESPULSE_*`` variables."""
    settings = Settings.from_env().with_overrides(app_id=APP_ID)
    if settings.snapshot_interval > 0:
        pin(settings.data_dir)  # a worker takes state images, so this one does too
    run_worker(settings, "warning", kpis=(NoKpi(),))


if __name__ == "__main__":
    main()
