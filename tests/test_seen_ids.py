"""The compact seen-id store answers exactly like a plain dict of first offsets.

A reference dict ``id -> first offset`` is checked against :class:`SeenIds` over enough ids
to force many merges into the sorted columns, with repeats (some re-stamped with another
hour), replays of earlier offsets, expiry and a restore from the changelog chunks the
store emitted.
"""

from __future__ import annotations

import random

import pytest

from salespulse.streams.pipeline import seen_ids
from salespulse.streams.pipeline.seen_ids import SeenIds


def _workload(n: int, seed: int) -> list[tuple[int, str, int]]:
    rng = random.Random(seed)
    out: list[tuple[int, str, int]] = []
    for offset in range(n):
        if out and rng.random() < 0.2:
            hour, event_id, _ = rng.choice(out)  # a duplicate, or a replay when earlier
            if rng.random() < 0.3:
                offset = rng.randrange(offset + 1)
            elif rng.random() < 0.3:
                hour = 1000 + rng.randrange(50)  # the same fact re-stamped with another time
        else:
            hour, event_id = 1000 + rng.randrange(50), f"ev-{rng.randrange(10**9)}"
        out.append((hour, event_id, offset))
    return out


def test_first_offsets_match_a_plain_dict_across_merges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seen_ids, "MERGE_AT", 64)  # many merges with a small workload
    store, reference = SeenIds(), {}
    for hour, event_id, offset in _workload(20_000, 1):
        want = reference.setdefault(event_id, offset)
        if offset < want:
            reference[event_id] = want = offset
        assert store.first_offset(hour, event_id, offset) == want
    assert len(store) == len(reference)
    assert len(store.keys) > 0, "the workload should have merged ids into the columns"


def test_only_new_and_earlier_offsets_are_pending_for_the_changelog() -> None:
    store = SeenIds()
    store.first_offset(1000, "a", 5)
    store.first_offset(1000, "a", 5)  # the same record replayed
    store.first_offset(1000, "a", 9)  # a duplicate
    store.first_offset(1000, "a", 3)  # an earlier copy, replayed after a crash
    assert store.pending == [1000, "a", 5, 1000, "a", 3]


def test_restore_from_the_pending_chunks_gives_the_same_answers() -> None:
    store = SeenIds()
    work = _workload(5_000, 2)
    for hour, event_id, offset in work:
        store.first_offset(hour, event_id, offset)
    restored = SeenIds()
    for key, chunk in store.drain():
        restored.restore(key, chunk, oldest_hour=0)
    for hour, event_id, offset in work:
        assert restored.first_offset(hour, event_id, offset) == store.first_offset(hour, event_id, offset)


def test_expire_forgets_hours_before_retention_in_both_parts() -> None:
    store = SeenIds()
    for i in range(40_000):  # over MERGE_AT: some ids are in the columns, some recent
        store.first_offset(1000 + i % 10, f"ev-{i}", i)
    assert len(store.keys) and store.recent
    store.expire(oldest_hour=1005)
    assert len(store) == 20_000
    assert store.first_offset(1004, "ev-4", 99_999) == 99_999, "an expired id counts as new"
    assert store.first_offset(1005, "ev-5", 99_999) == 5, "a retained id is still known"


@pytest.mark.parametrize("merge_at", [64, seen_ids.MERGE_AT])
def test_the_bloom_filter_passes_every_id_in_the_columns_and_few_others(
    monkeypatch: pytest.MonkeyPatch, merge_at: int
) -> None:
    # Small merges add to the filter in place; large ones also make it grow and be rebuilt.
    monkeypatch.setattr(seen_ids, "MERGE_AT", merge_at)
    store = SeenIds()
    for i in range(50_000):
        store.first_offset(1000 + i % 24, f"ev-{i}", i)
    assert len(store.keys) >= 40_000
    assert all(store._maybe_in_columns(int(key)) for key in store.keys)
    rng = random.Random(3)
    strangers = [rng.getrandbits(64) - (1 << 63) for _ in range(20_000)]
    passed = sum(store._maybe_in_columns(key) for key in strangers)
    assert passed < 0.05 * len(strangers), f"{passed} false positives in {len(strangers)}"


def test_a_copy_with_another_time_is_a_duplicate_and_expires_with_the_first() -> None:
    store = SeenIds()
    assert store.first_offset(1000, "a", 5) == 5
    assert store.first_offset(1001, "a", 9) == 5, "re-stamped an hour later: still a duplicate"
    assert store.pending == [1000, "a", 5]
    store.expire(oldest_hour=1001)
    assert store.first_offset(1001, "a", 12) == 12, "the first copy's hour decides expiry"


def test_a_late_copy_is_looked_up_but_not_remembered() -> None:
    store = SeenIds()
    store.first_offset(1000, "a", 5)
    for i in range(40_000):  # "a" merged into the columns
        store.first_offset(1000, f"ev-{i}", 10 + i)
    assert store.known_offset("a", 99_999) == 5
    assert store.known_offset("ev-39999", 99_999) == 40_009
    assert store.known_offset("never", 77) == 77
    before = len(store)
    store.known_offset("never", 78)
    assert len(store) == before


def test_recent_ids_stay_a_small_share_of_the_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seen_ids, "MERGE_AT", 256)
    store = SeenIds()
    most = 0
    for i in range(100_000):
        store.first_offset(1000, f"ev-{i}", i)
        most = max(most, len(store.recent) * 16 - len(store.keys))
    assert len(store) == 100_000
    assert most <= 16 * 256, "the small dicts grew past a sixteenth of the columns"


def test_offsets_past_32_bits_and_late_hours_survive_the_small_dict_and_the_merge(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(seen_ids, "MERGE_AT", 64)
    store = SeenIds()
    base = 1 << 40  # a long-lived partition's offsets
    far_hour = 70_000_000  # about the year 9955, still a valid event time
    for i in range(100):
        store.first_offset(far_hour if i % 2 else 1000, f"ev-{i}", base + i)
    assert len(store.keys) and store.recent, "some ids merged, some still recent"
    assert all(store.known_offset(f"ev-{i}", base + 500) == base + i for i in range(100))
    assert store.first_offset(1000, "ev-99", base - 1) == base - 1, "an earlier copy in the small dict"
    store.expire(1001)  # hour 1000 leaves retention; the far hour stays
    assert all(store.known_offset(f"ev-{i}", 7) == 7 for i in range(0, 100, 2))
    assert store.known_offset("ev-1", base + 500) == base + 1
    assert store.known_offset("ev-99", base + 500) == base - 1
