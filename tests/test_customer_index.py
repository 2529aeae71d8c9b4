"""The customer index: ids' hashes to dense rows, checked against a plain dict, and the columns on it."""

from __future__ import annotations

import random

from salespulse.agents.base import ApplyContext, LabelFolder
from salespulse.agents.customers import CustomerIndex
from salespulse.agents.detractors import DetractorState, Policy
from salespulse.agents.rolling import Clock, LatestAnswer, LatestTime


def test_rows_are_dense_in_order_of_first_sight_and_stable_across_growth() -> None:
    index = CustomerIndex()
    rng = random.Random(7)
    keys = [rng.getrandbits(64) - (1 << 63) for _ in range(50_000)]
    expected: dict[int, int] = {}
    for key in keys + keys[:1000]:
        expected.setdefault(key, len(expected))
        assert index.row(key) == expected[key]
    assert len(index) == len(expected)
    assert all(index.find(key) == row for key, row in expected.items())
    assert index.find(12345) == -1


def test_keys_that_share_a_slot_get_their_own_rows() -> None:
    index = CustomerIndex()
    # Equal low bits: all start probing at the same slot, whatever the table's size.
    keys = [i << 40 for i in range(1, 200)] + [-(i << 40) for i in range(1, 200)]
    rows = [index.row(key) for key in keys]
    assert rows == list(range(len(keys)))
    assert [index.find(key) for key in keys] == rows


def test_latest_time_keeps_a_row_only_for_customers_it_holds() -> None:
    lt = LatestTime("deal")
    assert lt.offer("C-1", -5) is None  # nothing older than "none yet" is stored
    assert "C-1" not in lt and len(lt) == 0
    assert lt.offer("C-1", 7) == -1
    assert "C-1" in lt and len(lt) == 1 and lt.get("C-1") == 7


def test_latest_answer_orders_by_time_then_offset_and_returns_the_replaced_score() -> None:
    la = LatestAnswer("latest")
    assert la.offer("C-1", 100, 5, 9) == -1
    assert la.offer("C-1", 100, 4, 3) is None
    assert la.offer("C-1", 100, 6, 3) == 9
    assert la.offer("C-1", 99, 50, 10) is None
    assert la.get("C-1") == (100, 6, 3)
    assert list(la.drain_dirty()) == [(["latest", "C-1"], [100, 6, 3])]
    assert la.get("C-2") is None


def test_a_detractor_case_shows_its_customer_id_exactly_whatever_characters_it_holds() -> None:
    now = 1_795_953_600
    ctx = ApplyContext(Clock(now), LabelFolder())
    state = DetractorState(Policy())
    customers = ["C-1", "Kunde-Ä-客", "lone-\ud800-surrogate", ""]
    for i, customer in enumerate(customers):
        state.offer_answer(customer, (now - 60, i, 2, "north", "crm-pro", None, None), ctx)
    listed = sorted(case.customer_id for case in state.listed(ctx.clock, "30d", "open"))
    assert listed == sorted(customers)
