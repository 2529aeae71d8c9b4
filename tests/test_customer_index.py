"""The customer index: ids to dense rows, checked against a plain dict, and the columns on it."""

from __future__ import annotations

import random

from salespulse.agents.base import ApplyContext, LabelFolder
from salespulse.agents.customers import CustomerIndex, TextColumn
from salespulse.agents.detractors import DetractorState, Policy
from salespulse.agents.rolling import Clock, LatestAnswer, LatestTime


def test_rows_are_dense_in_order_of_first_sight_and_stable_across_growth() -> None:
    index = CustomerIndex()
    rng = random.Random(7)
    customers = [f"C-{rng.getrandbits(40)}" for _ in range(50_000)]
    expected: dict[str, int] = {}
    for customer in customers + customers[:1000]:
        expected.setdefault(customer, len(expected))
        assert index.row(customer) == expected[customer]
    assert len(index) == len(expected)
    assert all(index.find(customer) == row for customer, row in expected.items())
    assert all(index.customer(row) == customer for customer, row in expected.items())
    assert index.find("C-none") == -1


def test_a_lookup_repeated_with_the_same_string_or_an_equal_one_gives_the_same_row() -> None:
    index = CustomerIndex()
    rng = random.Random(11)
    expected: dict[str, int] = {}
    # Each event's KPIs look its customer up one after another, with the same string object;
    # other events bring equal strings that are other objects, and unknown ones in between.
    for _ in range(20_000):
        customer = f"C-{rng.randrange(3_000)}"
        assert index.find(customer) == expected.get(customer, -1)
        expected.setdefault(customer, len(expected))
        assert index.row(customer) == index.find(customer) == index.row(customer) == expected[customer]
        assert index.find(f"unknown-{rng.getrandbits(32)}") == -1
        equal = "".join(["C-", customer[2:]])
        assert equal is not customer and index.row(equal) == expected[customer]
    assert len(index) == len(expected)


def test_customers_that_share_a_slot_get_their_own_rows() -> None:
    index = CustomerIndex()
    # Equal low 10 bits of the hash: all start probing at the same slot while the table
    # has at most 1,024 slots, which it has for these 400.
    customers = [c for c in (f"C-{i}" for i in range(2_000_000)) if hash(c) & 1023 == 0][:400]
    assert len(customers) == 400
    rows = [index.row(customer) for customer in customers]
    assert rows == list(range(len(customers)))
    assert [index.find(customer) for customer in customers] == rows


def test_maps_on_one_index_share_its_rows_and_each_holds_only_its_own_customers() -> None:
    index = CustomerIndex()
    activity, deal = LatestTime("activity", index), LatestTime("deal", index)
    answers = LatestAnswer("latest", index)
    assert activity.offer("C-1", 10) == -1
    assert answers.offer("C-2", 100, 5, 9) == -1
    assert deal.offer("C-3", 20) == -1
    assert [index.find(c) for c in ("C-1", "C-2", "C-3")] == [0, 1, 2]
    assert "C-2" not in activity and activity.get("C-2") is None and activity.get("C-3") is None
    assert "C-1" not in deal and deal.get("C-1") is None and answers.get("C-3") is None
    assert (len(activity), len(deal), len(answers)) == (1, 1, 1)
    # A column reaches only the last row it has a value for.
    assert (len(activity.minutes), len(answers.offsets), len(deal.minutes)) == (1, 2, 3)
    assert activity.offer("C-3", 30) == -1 and activity.get("C-3") == 30 and len(activity) == 2
    assert activity.get("C-2") is None and deal.get("C-3") == 20


def test_latest_time_holds_only_customers_it_has_a_time_for() -> None:
    lt = LatestTime("deal", CustomerIndex())
    assert lt.offer("C-1", -5) is None  # nothing older than "none yet" is stored
    assert "C-1" not in lt and len(lt) == 0
    assert lt.offer("C-1", 7) == -1
    assert "C-1" in lt and len(lt) == 1 and lt.get("C-1") == 7


def test_latest_answer_orders_by_time_then_offset_and_returns_the_replaced_score() -> None:
    la = LatestAnswer("latest", CustomerIndex())
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
    state = DetractorState(Policy(), CustomerIndex())
    customers = ["C-1", "Kunde-Ä-客", "lone-\ud800-surrogate", ""]
    for i, customer in enumerate(customers):
        state.offer_answer(customer, (now - 60, i, 2, "north", "crm-pro", None, None), ctx)
    listed = sorted(case.customer_id for case in state.listed(ctx.clock, "30d", "open"))
    assert listed == sorted(customers)


def test_a_text_column_matches_a_dict_through_replacements_removals_and_compactions() -> None:
    column, expected = TextColumn(), dict[int, bytes]()
    rng = random.Random(5)
    for step in range(60_000):
        row = rng.randrange(3000)
        text = None if rng.random() < 0.2 else f"R-{step}-{'x' * rng.randrange(600)}".encode()
        column.set(row, text)
        if text is None:
            expected.pop(row, None)
        else:
            expected[row] = text
    assert all(column.get(row) == expected.get(row) for row in range(3100))
    live = sum(map(len, expected.values()))
    # Replaced texts were reclaimed along the way: the arena holds the live ones and at most
    # as much garbage again (or 1 MiB).
    assert live <= len(column.arena) <= live + max(1 << 20, live) + 700
    assert column.get(-1) is None
