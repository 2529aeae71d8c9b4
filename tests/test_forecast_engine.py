"""The forecast in the engine, without Kafka: every number of ``/forecast`` equals the reference.

A seeded corpus of opportunities with a life (tests/forecast_corpus.py: out-of-order and
duplicated updates, slips across period boundaries, reassignments, closes on other
partitions than their opportunities, updates after a close) goes through an engine as a
worker drives it (tests/engine_driver.py, forwards included), in both calendars. Its
answers for the current period, a past day and a closed period's daily accuracy, by rep,
team, region and company, must equal tests/forecast_reference.py's; and so must those of an
engine restored from its changelog, compacted or not, and from a state image.
"""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

import pytest

from salespulse.agents.forecast import ForecastKpi
from salespulse.agents.forecast_calendar import FiscalCalendar
from salespulse.agents.forecast_plan import parse_plan, parse_stages
from salespulse.agents.forecast_state import ForecastPolicy
from salespulse.agents.registry import KPIS
from salespulse.schemas.partitions import partition_for
from salespulse.schemas.topics import close_route, route
from salespulse.streams.pipeline import state_image
from salespulse.streams.pipeline.engine import Engine, PartitionState
from tests.engine_driver import PARTITIONS, Driver, compacted, replayed
from tests.forecast_corpus import NOW, corpus, targets
from tests.forecast_reference import Calendar, Model, differences
from tests.reference import epoch_seconds

DAY = 86400
CALENDARS = {"gregorian": Calendar("gregorian"), "jalali": Calendar("jalali")}
#: (calendar, the current quarter, a closed quarter, the year, a month)
PERIODS = {
    "gregorian": ("2026-Q4", "2026-Q3", "2026", "2026-11"),
    "jalali": ("1405-Q3", "1405-Q2", "1405", "1405-08"),
}


def kpis_for(calendar: str) -> tuple[Any, ...]:
    cal = FiscalCalendar.parse(calendar)
    doc = targets(calendar)
    forecast = ForecastKpi(ForecastPolicy(cal, parse_stages(doc)), parse_plan(doc, cal))
    return tuple(forecast if kpi.name == "forecast" else kpi for kpi in KPIS)


def queries(calendar: str) -> list[dict[str, str]]:
    current, closed, year, month = PERIODS[calendar]
    past = str(NOW - 16 * DAY)
    return [
        *({"period": current, "by": by} for by in ("rep", "team", "region", "company")),
        {"period": current, "by": "rep", "as_of": past},
        {"period": current, "by": "team", "as_of": past},
        {"period": closed, "by": "rep"},
        {"period": closed, "by": "team"},
        {"period": closed, "by": "company"},
        {"period": year, "by": "company"},
        {"period": year, "by": "region", "from": str(NOW - 60 * DAY), "to": str(NOW - 5 * DAY)},
        {"period": month, "by": "rep", "from": str(NOW - 20 * DAY)},
    ]


def expected_view(model: Model, q: dict[str, str]) -> dict[str, Any]:
    return model.view(
        q["period"],
        q["by"],
        int(q.get("as_of", NOW)),
        None if "from" not in q else int(q["from"]),
        None if "to" not in q else int(q["to"]),
    )


def assert_matches(engine: Engine, model: Model, calendar: str, context: str) -> None:
    for q in queries(calendar):
        answer = engine.forecast(range(PARTITIONS), q)
        problems = differences(answer, expected_view(model, q))
        assert not problems, f"{context} {q}: {len(problems)} differences:\n" + "\n".join(problems[:20])


@pytest.fixture(scope="module", params=["gregorian", "jalali"])
def driven(request: pytest.FixtureRequest) -> tuple[str, Driver, Model]:
    calendar = request.param
    events = corpus(7)
    driver = Driver.at(NOW, kpis=kpis_for(calendar))
    for start in range(0, len(events), 97):  # batches of several events, as fetches are
        driver.apply(events[start : start + 97], NOW)
    return calendar, driver, Model(events, targets(calendar), CALENDARS[calendar])


def test_the_corpus_has_every_awkward_case() -> None:
    events = corpus(7)
    ids = Counter(e["event_id"] for e in events)
    assert sum(n - 1 for n in ids.values()) > 20, "delivered twice"
    kinds = Counter(e["type"] for e in events)
    assert kinds["opportunity.updated"] > 200 and kinds["deal.lost"] > 10 and kinds["deal.won"] > 50
    closes = [e for e in events if close_route(e) is not None]
    elsewhere = [
        e
        for e in closes
        if partition_for(route(e)[1], PARTITIONS) != partition_for(close_route(e)[1], PARTITIONS)
    ]
    assert len(elsewhere) > len(closes) // 2, "closes landing on other partitions than their opportunities"
    first_seen: dict[str, int] = {}
    late_creation = closed_early = after_close = 0
    close_time = {e["data"]["opportunity_id"]: epoch_seconds(e["occurred_at"]) for e in closes}
    for i, e in enumerate(events):
        opp = e["data"].get("opportunity_id")
        if opp is None:
            continue
        if e["type"] == "opportunity.created" and opp in first_seen:
            late_creation += 1
        if e["type"] in ("deal.won", "deal.lost") and opp not in first_seen:
            closed_early += 1
        if e["type"] == "opportunity.updated" and opp in close_time:
            after_close += epoch_seconds(e["occurred_at"]) > close_time[opp]
        first_seen.setdefault(opp, i)
    assert late_creation > 5, "updates arriving before their opportunity's creation"
    assert closed_early > 0, "a close arriving before its opportunity"
    assert after_close > 5, "updates after the close, which must not reopen it"
    reps = {}
    moved = 0
    for e in sorted(events, key=lambda e: e["occurred_at"]):
        if e["type"].startswith("opportunity."):
            opp = e["data"]["opportunity_id"]
            moved += opp in reps and reps[opp] != e["data"]["rep_id"]
            reps[opp] = e["data"]["rep_id"]
    assert moved > 10, "reassignments between reps"


def test_every_number_equals_the_reference_in_both_calendars(driven: tuple[str, Driver, Model]) -> None:
    calendar, driver, model = driven
    assert not driver.deadletters
    assert_matches(driver.engine, model, calendar, calendar)


def test_the_reference_sees_slips_mismatches_accuracy_and_every_movement(
    driven: tuple[str, Driver, Model],
) -> None:
    """The comparison above means something: the corpus makes every number non-trivial."""
    calendar, _, model = driven
    current, closed, _, _ = PERIODS[calendar]
    view = model.view(current, "team", NOW)
    assert any(row["quota_mismatch"] for row in view["rows"]), "a team quota differing from its members'"
    assert view["slips"], "slipped deals"
    moved = {m for m, by_currency in view["waterfall"].items() if any(by_currency.values())}
    assert moved == set(view["waterfall"]), f"every movement happens: only {sorted(moved)}"
    past = model.view(closed, "rep", NOW)
    assert past["closed"] and any(
        row["accuracy"]["forecast"]["accuracy"][0] not in (None, 0.0, 1.0) for row in past["rows"]
    )
    assert any(row["attainment"] for row in past["rows"])
    rows = model.view(current, "rep", NOW)["rows"]
    assert {row["unit"] for row in rows} == {"amount", "deals"}
    assert {row["currency"] for row in rows} >= {"USD", "EUR"}


def test_a_restored_engine_answers_the_same_from_its_changelog_compacted_or_not(
    driven: tuple[str, Driver, Model],
) -> None:
    calendar, driver, model = driven
    for log, label in ((driver.changelog, "full"), (compacted(driver.changelog), "compacted")):
        engine = replayed(log, "2026-11-26T12:00:00Z", kpis=kpis_for(calendar))
        assert_matches(engine, model, calendar, f"restored from the {label} changelog")


def test_a_state_image_read_back_answers_the_same(driven: tuple[str, Driver, Model]) -> None:
    calendar, driver, model = driven
    copy = Engine(clock="2026-11-26T12:00:00Z", partitions=PARTITIONS, kpis=kpis_for(calendar))
    for p, state in driver.engine.partitions.items():
        buffer = io.BytesIO()
        state_image.dump(state_image.capture(state), buffer)
        buffer.seek(0)
        fresh = PartitionState(p, copy.kpis)
        state_image.fill(fresh, state_image.load(buffer))
        copy.partitions[p] = fresh
    assert_matches(copy, model, calendar, "from state images")


def test_an_image_taken_under_another_calendar_does_not_fit(driven: tuple[str, Driver, Model]) -> None:
    calendar, driver, _ = driven
    other = "jalali" if calendar == "gregorian" else "gregorian:4"
    state = driver.engine.partitions[0]
    buffer = io.BytesIO()
    state_image.dump(state_image.capture(state), buffer)
    buffer.seek(0)
    fresh = PartitionState(0, kpis_for(other))
    with pytest.raises(state_image.ImageMismatch, match="FiscalCalendar"):
        state_image.fill(fresh, state_image.load(buffer))


def test_the_prometheus_series_of_the_current_and_next_quarter_equal_the_reference_by_rep(
    driven: tuple[str, Driver, Model],
) -> None:
    """Summed over regions, each rep's series are the numbers of ``/forecast?by=rep`` of the
    quarter, and the quotas are the reps' amount quotas; nothing names an opportunity."""
    calendar, driver, model = driven
    current = PERIODS[calendar][0]
    year, quarter = current.split("-Q")
    following = f"{year}-Q{int(quarter) + 1}" if quarter != "4" else f"{int(year) + 1}-Q1"
    samples = list(driver.engine.samples(range(PARTITIONS)))
    forecast = [(n, labels, v) for n, labels, v in samples if n.startswith("salespulse_forecast")]
    assert all("opportunity" not in str(labels) for _, labels, _ in forecast)
    for label, name in (("current", current), ("next", following)):
        sums: Counter[tuple[str, str, str]] = Counter()
        quotas = {}
        for metric, labels, value in forecast:
            if labels.get("period") != label:
                continue
            if metric == "salespulse_forecast_amount":
                sums[labels["rep"], labels["currency"], labels["measure"]] += value
            elif metric == "salespulse_forecast_quota":
                quotas[labels["rep"], labels["currency"]] = value
        view = model.view(name, "rep", NOW)
        want: Counter[tuple[str, str, str]] = Counter()
        for row in view["rows"]:
            if row["unit"] != "amount":
                continue
            if row["quota"] is not None:
                assert quotas.pop((row["rep"], row["currency"])) == row["quota"], (label, row["rep"])
            for measure in ("closed_won", "commit", "best_case", "pipeline", "weighted"):
                want[row["rep"], row["currency"], measure] += row[measure]
        assert not quotas, f"{label}: quotas of no row {quotas}"
        keys = {k for k, v in (sums + want).items() if abs(v) > 1e-6}
        assert keys, f"{label}: no forecast series"
        assert all(abs(sums[k] - want[k]) < 1e-6 for k in keys), label
    left = [v for n, labels, v in forecast if n == "salespulse_forecast_period_left_ratio"]
    assert len(left) == 1 and 0 < left[0] < 1
