"""The rolling-window table, bucket by bucket, without Kafka (rules in docs/semantics.md).

With the clock at second ``T``, ``cm = T // 60`` and ``ch = T // 3600``: ``1h`` holds minute
buckets ``cm-59 .. cm``; ``24h``/``7d``/``30d`` hold hour buckets ``ch-23``/``ch-167``/``ch-719 ..
ch``; hour buckets are retained for ``ch-1487 .. ch`` and anything older is late.
"""

from __future__ import annotations

import pytest

from salespulse.agents.customers import CustomerIndex
from salespulse.agents.rolling import (
    HOUR,
    MINUTE,
    RETENTION_HOURS,
    WINDOW_NAMES,
    Clock,
    LatestMap,
    LatestTime,
    WindowedCounter,
)
from salespulse.schemas.event_time import parse_time

#: Deliberately not on a minute or hour boundary, so bucket edges are not the clock's edges.
T = parse_time("2026-11-26T12:34:56Z")
CLOCK = Clock(T)
CM = T // MINUTE
CH = T // HOUR
LABELS = ("north",)

#: (window, first hour bucket inside it) for the hour-bucketed windows.
HOUR_WINDOWS = [("24h", 23), ("7d", 167), ("30d", 719)]


def counter() -> WindowedCounter:
    return WindowedCounter("leads", ("region",), 1)


def counts(c: WindowedCounter, clock: Clock = CLOCK) -> dict[str, int]:
    c.refresh(clock)
    return {name: c.window(name).get(LABELS, [0])[0] for name in WINDOW_NAMES}


# -- the clock ---------------------------------------------------------------------------


def test_clock_buckets_are_floor_divisions_of_whole_seconds() -> None:
    assert CLOCK.minute == T // 60
    assert CLOCK.hour == T // 3600
    assert CLOCK.oldest_hour == CH - 1487
    assert RETENTION_HOURS == 1488


def test_an_event_in_hour_ch_minus_1487_is_retained_and_ch_minus_1488_is_late() -> None:
    assert not CLOCK.is_late((CH - 1487) * HOUR)
    assert not CLOCK.is_late((CH - 1487) * HOUR + HOUR - 1)
    assert CLOCK.is_late((CH - 1488) * HOUR + HOUR - 1)
    assert CLOCK.is_late((CH - 1488) * HOUR)


def test_future_events_are_never_late() -> None:
    assert not CLOCK.is_late(T + 10 * 86400)


# -- window boundaries -------------------------------------------------------------------


@pytest.mark.parametrize("second", [0, MINUTE - 1], ids=["first-second", "last-second"])
def test_an_event_in_minute_cm_minus_59_counts_in_1h(second: int) -> None:
    c = counter()
    c.add((CM - 59) * MINUTE + second, LABELS, [1], 0, CLOCK)
    assert counts(c)["1h"] == 1


@pytest.mark.parametrize("second", [0, MINUTE - 1], ids=["first-second", "last-second"])
def test_an_event_in_minute_cm_minus_60_does_not_count_in_1h(second: int) -> None:
    c = counter()
    c.add((CM - 60) * MINUTE + second, LABELS, [1], 0, CLOCK)
    got = counts(c)
    assert got["1h"] == 0
    assert got["24h"] == 1  # still inside the current hour-bucketed windows


def test_an_event_in_the_current_minute_counts_in_every_window() -> None:
    c = counter()
    c.add(CM * MINUTE, LABELS, [1], 0, CLOCK)
    assert counts(c) == dict.fromkeys(WINDOW_NAMES, 1)


@pytest.mark.parametrize(("window", "back"), HOUR_WINDOWS)
def test_an_event_in_the_oldest_hour_of_a_window_counts(window: str, back: int) -> None:
    c = counter()
    c.add((CH - back) * HOUR, LABELS, [1], 0, CLOCK)
    c.add((CH - back) * HOUR + HOUR - 1, LABELS, [1], 1, CLOCK)
    assert counts(c)[window] == 2


@pytest.mark.parametrize(("window", "back"), HOUR_WINDOWS)
def test_an_event_one_hour_before_a_window_does_not_count(window: str, back: int) -> None:
    c = counter()
    c.add((CH - back - 1) * HOUR + HOUR - 1, LABELS, [1], 0, CLOCK)
    assert counts(c)[window] == 0


def test_windows_nest_for_events_spread_over_two_months() -> None:
    c = counter()
    ages_in_hours = [0, 1, 23, 24, 167, 168, 719, 720, 1487]
    for offset, age in enumerate(ages_in_hours):
        c.add((CH - age) * HOUR, LABELS, [1], offset, CLOCK)
    got = counts(c)
    # (CH - 0) * HOUR is the start of the current hour: 34 minutes ago, inside 1h.
    assert got == {"1h": 1, "24h": 3, "7d": 5, "30d": 7}


def test_the_clock_moving_on_drops_events_out_of_their_windows() -> None:
    c = counter()
    c.add(CM * MINUTE, LABELS, [1], 0, CLOCK)
    assert counts(c, Clock(T + 59 * MINUTE))["1h"] == 1
    assert counts(c, Clock(T + 60 * MINUTE))["1h"] == 0
    assert counts(c, Clock(T + 60 * MINUTE))["24h"] == 1
    assert counts(c, Clock((CH + 24) * HOUR))["24h"] == 0
    assert counts(c, Clock((CH + 24) * HOUR))["7d"] == 1


# -- future events -----------------------------------------------------------------------


def test_a_future_event_is_counted_once_the_clock_reaches_its_minute() -> None:
    c = counter()
    future = (CM + 5) * MINUTE
    c.add(future, LABELS, [1], 0, CLOCK)
    assert counts(c)["1h"] == 0
    assert counts(c, Clock(future - 1))["1h"] == 0
    assert counts(c, Clock(future))["1h"] == 1


def test_a_future_event_in_the_current_hour_already_counts_in_the_hour_windows() -> None:
    # 24h holds hour buckets ch-23 .. ch: a later minute of the current hour is inside.
    c = counter()
    c.add((CM + 5) * MINUTE, LABELS, [1], 0, CLOCK)
    got = counts(c)
    assert got["1h"] == 0
    assert got["24h"] == got["7d"] == got["30d"] == 1


def test_a_future_event_in_a_later_hour_is_counted_once_the_clock_reaches_that_hour() -> None:
    c = counter()
    future = (CH + 3) * HOUR + 10 * MINUTE
    c.add(future, LABELS, [1], 0, CLOCK)
    assert counts(c) == dict.fromkeys(WINDOW_NAMES, 0)
    assert counts(c, Clock((CH + 3) * HOUR - 1)) == dict.fromkeys(WINDOW_NAMES, 0)
    assert counts(c, Clock((CH + 3) * HOUR)) == {"1h": 0, "24h": 1, "7d": 1, "30d": 1}
    assert counts(c, Clock(future)) == dict.fromkeys(WINDOW_NAMES, 1)


# -- retention ---------------------------------------------------------------------------


def test_hour_buckets_are_dropped_once_older_than_retention() -> None:
    c = counter()
    c.add((CH - 1487) * HOUR, LABELS, [1], 0, CLOCK)
    c.refresh(CLOCK)
    assert c.labels_seen() == {LABELS}
    c.refresh(Clock((CH + 1) * HOUR))
    assert c.hours == {}
    assert c.labels_seen() == set()


def test_idle_label_sets_stay_known_while_a_bucket_is_retained() -> None:
    c = counter()
    c.add((CH - 800) * HOUR, LABELS, [1], 0, CLOCK)
    assert counts(c) == dict.fromkeys(WINDOW_NAMES, 0)
    assert c.labels_seen() == {LABELS}


# -- replay safety -----------------------------------------------------------------------


def test_the_same_offset_applied_twice_counts_once() -> None:
    c = counter()
    t = CM * MINUTE
    c.add(t, LABELS, [1], 7, CLOCK)
    c.add(t, LABELS, [1], 7, CLOCK)
    assert counts(c) == dict.fromkeys(WINDOW_NAMES, 1)


def test_a_lower_offset_after_a_higher_one_on_the_same_record_is_skipped() -> None:
    c = counter()
    t = CM * MINUTE
    c.add(t, LABELS, [1], 9, CLOCK)
    c.add(t + 1, LABELS, [1], 8, CLOCK)  # same minute and hour bucket, same labels
    assert counts(c) == dict.fromkeys(WINDOW_NAMES, 1)


def test_a_higher_offset_on_the_same_record_is_applied() -> None:
    c = counter()
    t = CM * MINUTE
    c.add(t, LABELS, [1], 8, CLOCK)
    c.add(t, LABELS, [1], 9, CLOCK)
    assert counts(c) == dict.fromkeys(WINDOW_NAMES, 2)


def test_a_lower_offset_on_another_record_is_applied() -> None:
    c = counter()
    c.add(CM * MINUTE, LABELS, [1], 9, CLOCK)
    c.add(CM * MINUTE, ("south",), [1], 3, CLOCK)
    c.add((CH - 2) * HOUR, LABELS, [1], 4, CLOCK)
    c.refresh(CLOCK)
    assert c.window("24h") == {LABELS: [2], ("south",): [1]}


def test_drained_records_carry_the_offset_they_applied_up_to() -> None:
    c = counter()
    c.add(CM * MINUTE, LABELS, [1], 3, CLOCK)
    c.add(CM * MINUTE, LABELS, [1], 5, CLOCK)
    drained = sorted(c.drain_dirty())
    assert drained == [
        (["leads", "h", CH, "north"], [5, 2]),
        (["leads", "m", CM, "north"], [5, 2]),
    ]
    assert list(c.drain_dirty()) == []


def test_restored_records_rebuild_the_same_windows_and_skip_replays() -> None:
    original = counter()
    for offset, t in enumerate([CM * MINUTE, (CM - 30) * MINUTE, (CH - 5) * HOUR, (CH - 200) * HOUR]):
        original.add(t, LABELS, [1], offset, CLOCK)
    restored = counter()
    for (_family, res, bucket, *labels), rec in original.drain_dirty():
        restored.restore(str(res), int(str(bucket)), tuple(map(str, labels)), rec, CLOCK)
    assert counts(restored) == counts(original) == {"1h": 2, "24h": 3, "7d": 3, "30d": 4}
    restored.add(CM * MINUTE, LABELS, [1], 0, CLOCK)  # a replay of offset 0
    assert counts(restored) == counts(original)


def test_derived_adjustments_are_not_persisted() -> None:
    c = WindowedCounter("engaged", (), 1, persisted=False)
    c.adjust(CM * MINUTE, (), [1], CLOCK)
    c.adjust(CM * MINUTE, (), [1], CLOCK)
    c.adjust(CM * MINUTE, (), [-1], CLOCK)
    assert c.window("1h") == {(): [1]}
    assert list(c.drain_dirty()) == []


# -- latest values -----------------------------------------------------------------------


def test_latest_map_keeps_the_greatest_time_not_the_last_arrival() -> None:
    m = LatestMap("list")
    assert m.offer(("p", "USD"), 100, 5, [10]) == []
    assert m.offer(("p", "USD"), 90, 9, [20]) is None  # older event arriving later
    assert m.records[("p", "USD")] == [100, 5, 10]


def test_latest_map_breaks_equal_times_by_offset() -> None:
    m = LatestMap("list")
    m.offer(("p", "USD"), 100, 5, [10])
    assert m.offer(("p", "USD"), 100, 6, [20]) == [100, 5, 10]
    assert m.offer(("p", "USD"), 100, 4, [30]) is None
    assert m.offer(("p", "USD"), 100, 6, [40]) is None  # a replay changes nothing
    assert m.records[("p", "USD")] == [100, 6, 20]


def test_latest_map_restore_is_not_written_back() -> None:
    m = LatestMap("list")
    m.restore(("p", "USD"), [100, 5, 10])
    assert m.records == {("p", "USD"): [100, 5, 10]}
    assert list(m.drain_dirty()) == []


def test_latest_time_only_moves_forward() -> None:
    lt = LatestTime("activity", CustomerIndex())
    assert lt.offer("C-1", 50) == -1
    assert lt.offer("C-1", 40) is None
    assert lt.offer("C-1", 50) is None
    assert lt.offer("C-1", 60) == 50
    assert list(lt.drain_dirty(offset=12)) == [(["activity", "C-1"], [60, 12])]
