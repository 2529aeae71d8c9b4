"""A deal's outcome counts once for life, and so does a survey response.

A CRM sends a deal's outcome again whenever the closed deal is edited (Salesforce at the
deal's LastModifiedDate, Delighted with ids that change with updated_at), often long after
the 62 days event ids are remembered. The engine remembers every deal's win, every deal's
loss and every response id for ``SALESPULSE_OUTCOME_MEMORY`` (3 years) after the first
copy's event time, with the offset it was first applied at, and persists them in a few
changelog keys a partition (streams/pipeline/outcomes.py).

Here the engine alone (no Kafka), checked against ``tests/reference.py``: the 63-day edit,
a win after a loss, late first outcomes, expiry with tombstones, few live keys, restores
from the changelog (full, compacted, cut anywhere in a batch) and from a state image, and a
generated stream with re-sends in random batches. tests/test_outcomes_live.py runs the same
through real workers.
"""

from __future__ import annotations

import io
import random
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from salespulse.agents.rolling import HOUR, OUTCOME_MEMORY, RETENTION_HOURS
from salespulse.schemas.event_time import format_time
from salespulse.streams.pipeline import state_image
from salespulse.streams.pipeline.engine import Engine, PartitionState
from salespulse.streams.pipeline.outcomes import FOLD_EVERY, PART_SIZE
from salespulse.streams.settings import Settings, SettingsError
from salespulse.streams.tools.generator import GeneratorConfig, generate
from tests.engine_driver import PARTITIONS, Driver, Entry, compacted, live_keys, replayed
from tests.reference import (
    Clock,
    deliveries,
    diff,
    epoch_seconds,
    expected,
    gauge_diff,
    kpis_series,
    outcome,
    partition_of,
)
from tests.test_future_events import answer as nps_answer

T = int(datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC).timestamp())
DAY = 24 * HOUR
ALL = range(PARTITIONS)


def won(i: int, t: int, deal: str, customer: str = "C-1", amount: float = 1000.0) -> dict[str, Any]:
    return {
        "event_id": f"won-{i}",
        "type": "deal.won",
        "occurred_at": format_time(t),
        "source": "test",
        "data": {
            "deal_id": deal,
            "customer_id": customer,
            "rep_id": "r-1",
            "region": "north",
            "product": "crm",
            "kind": "new",
            "amount": amount,
            "currency": "EUR",
        },
    }


def lost(i: int, t: int, deal: str) -> dict[str, Any]:
    return {
        "event_id": f"lost-{i}",
        "type": "deal.lost",
        "occurred_at": format_time(t),
        "source": "test",
        "data": {"deal_id": deal, "rep_id": "r-1", "region": "north"},
    }


def answer(i: int, t: int, score: int, response: str, customer: str = "C-1") -> dict[str, Any]:
    event = nps_answer(i, t, score, customer)
    event["data"]["response_id"] = response
    return event


def assert_reference(
    engine: Engine, sent: list[dict[str, Any]], clock: int, *, counters: bool = True
) -> None:
    """Every window, gauge and (unless the clock moved since an event was judged) counter of
    ``engine`` equals the reference over ``sent`` at ``clock``."""
    ref = expected(sent, clock)
    view = engine.kpis_view(ALL)
    problems = diff(view["windows"], ref.windows) + gauge_diff(kpis_series(view), ref.gauges)
    assert not problems, "\n".join(problems[:30])
    if counters:
        got = view["counters"]
        assert (got["events"], got["late"], got["duplicates"]) == (ref.events, ref.late, ref.duplicates)


def outcome_keys(entries: Iterable[Entry], tombstones: bool) -> list[list[Any]]:
    """The ``[tag, key]`` of outcome records among ``entries``: tombstones, or records with outcomes."""
    keys = [(orjson.loads(key), value) for _, key, value in entries]
    return [k[3:] for k, value in keys if k[2] == "outcomes" and (value is None) == tombstones]


def flat(batches: list[list[Entry]]) -> list[Entry]:
    return [entry for batch in batches for entry in batch]


# -- the rule --------------------------------------------------------------------------------------


def test_the_same_deal_won_again_63_days_later_with_a_new_event_id_and_time_counts_once() -> None:
    driver = Driver.at(T)
    driver.apply([won(0, T, "D-1", amount=1000.0)], T, written=T)
    later = T + 63 * DAY  # the first copy's event id is forgotten by now
    driver.apply([won(1, later, "D-1", amount=1200.0)], later, written=later)
    counters = driver.engine.counters(ALL)
    assert (counters["events"]["deal.won"], counters["duplicates"]) == (1, 1)
    sales = driver.engine.kpis_view(ALL)["windows"]["24h"]["sales"]
    assert (sales["deals_won"], sales["amount_by_currency"]) == (0, {})
    # The copy with the first event id (Salesforce derives it from the deal) again 1 h on.
    driver.apply([won(0, later + HOUR, "D-1", amount=1300.0)], later + HOUR, written=later + HOUR)
    assert driver.engine.counters(ALL)["duplicates"] == 2
    assert_reference(driver.engine, driver.sent, later + HOUR, counters=False)


def test_a_win_after_a_loss_counts_both_and_a_second_win_or_loss_does_not() -> None:
    events = [
        lost(0, T - 5 * HOUR, "D-2"),
        won(1, T - 4 * HOUR, "D-2", customer="C-2"),  # reopened and won: counts, the loss stays
        lost(2, T - 3 * HOUR, "D-2"),  # a new event id for the same loss
        won(3, T - 2 * HOUR, "D-2", customer="C-2", amount=5.0),  # and for the same win
        won(4, T - 5 * HOUR, "D-3", customer="C-3"),
        lost(5, T - 4 * HOUR, "D-3"),  # a loss after a win counts too
    ]
    driver = Driver.at(T)
    for event in events:  # one batch each, in this order
        driver.apply([event], T, written=T)
    sales = driver.engine.kpis_view(ALL)["windows"]["24h"]["sales"]
    assert (sales["deals_won"], sales["deals_lost"], sales["amount_by_currency"]) == (2, 2, {"EUR": 2000.0})
    assert driver.engine.counters(ALL)["duplicates"] == 2
    assert_reference(driver.engine, driver.sent, T)


def test_a_late_first_outcome_is_remembered_and_one_past_the_memory_is_not() -> None:
    events = [
        won(0, T - 100 * DAY, "D-4", customer="C-4"),  # older than the windows: late
        lost(1, T - 90 * DAY, "D-5"),
        answer(2, T - 80 * DAY, 3, "R-1", customer="C-5"),
        won(3, T - 1100 * DAY, "D-6", customer="C-6"),  # older than the 3-year memory
        won(4, T - HOUR, "D-4", customer="C-4"),  # its re-sends within the windows
        lost(5, T - 2 * HOUR, "D-5"),
        answer(6, T - HOUR, 9, "R-1", customer="C-5"),
        won(7, T - HOUR, "D-6", customer="C-6"),
    ]
    driver = Driver.at(T)
    for event in events:
        driver.apply([event], T, written=T)
    counters = driver.engine.counters(ALL)
    late = {kind: n for kind, n in counters["late"].items() if n}
    assert late == {"deal.won": 2, "deal.lost": 1, "survey.answered": 1}
    assert counters["duplicates"] == 2, "the win and the loss of D-4 and D-5"
    window = driver.engine.kpis_view(ALL)["windows"]["24h"]
    assert (window["sales"]["deals_won"], window["sales"]["deals_lost"]) == (1, 0), "only D-6, forgotten"
    assert window["nps"]["responses"] == 0, "R-1 was answered 80 days ago: a repeat"
    profile = driver.engine.profile("C-5", ALL)
    assert profile is not None and profile["nps"]["score"] == 9, "the repeat is the latest answer"
    assert_reference(driver.engine, driver.sent, T)


def test_the_outcome_memory_is_a_duration_of_3_years_by_default_never_shorter_than_the_retention() -> None:
    assert Settings.from_env({}).outcome_memory == OUTCOME_MEMORY == 1095 * DAY
    assert Settings.from_env({"SALESPULSE_OUTCOME_MEMORY": "730d"}).outcome_memory == 730 * DAY
    # 5,356,800 s are the 62 days of retention.
    with pytest.raises(SettingsError, match=r"SALESPULSE_OUTCOME_MEMORY='61d': expected `int` >= 5356800"):
        Settings.from_env({"SALESPULSE_OUTCOME_MEMORY": "61d"})
    with pytest.raises(SettingsError, match="SALESPULSE_OUTCOME_MEMORY"):
        Settings.from_env({"SALESPULSE_OUTCOME_MEMORY": "3 years"})


# -- the changelog ---------------------------------------------------------------------------------


def test_new_outcomes_are_folded_into_parts_and_expired_ones_get_tombstones() -> None:
    memory = 100 * DAY
    driver = Driver.at(T, outcome_memory=memory)
    batches = [
        flat(driver.apply([won(i, T - i * HOUR, f"D-{i}")], T, written=T)) for i in range(FOLD_EVERY - 1)
    ]
    news = [keys for batch in batches for keys in outcome_keys(batch, tombstones=False)]
    assert [tag for tag, _ in news] == ["new"] * (FOLD_EVERY - 1), "a record a batch, all on one partition"
    assert live_keys(e for e in driver.changelog if orjson.loads(e[1])[2] == "outcomes") == FOLD_EVERY - 1
    fold = flat(driver.apply([won(99, T, "D-99")], T, written=T))
    assert outcome_keys(fold, tombstones=False) == [["part", 0]]
    assert sorted(map(str, outcome_keys(fold, tombstones=True))) == sorted(map(str, news))
    outcomes = [e for e in driver.changelog if orjson.loads(e[1])[2] == "outcomes"]
    assert live_keys(outcomes) == 1
    (part,) = [value for _, key, value in compacted(outcomes)]
    assert part is not None and len(orjson.loads(part)) == 3 * FOLD_EVERY

    # The newest of them, D-99, leaves the memory: the part's tombstone; D-0 counts again.
    gone = (T // HOUR + memory // HOUR) * HOUR
    out = flat(driver.apply([won(100, gone, "D-0")], gone, written=gone))
    assert outcome_keys(out, tombstones=True) == [["part", 0]]
    assert outcome_keys(out, tombstones=False) == [["new", 16]]
    assert driver.engine.counters(ALL)["duplicates"] == 0
    assert live_keys(e for e in driver.changelog if orjson.loads(e[1])[2] == "outcomes") == 1


def test_a_partitions_live_outcome_keys_are_its_parts_and_fewer_than_the_fold_more() -> None:
    driver = Driver.at(T)
    n = 0
    for batch in range(400):
        driver.apply([won(n + i, T - batch * 60, f"D-{n + i}") for i in range(7)], T, written=T)
        n += 7
    outcomes = compacted(e for e in driver.changelog if orjson.loads(e[1])[2] == "outcomes")
    parts = [len(orjson.loads(v or b"")) // 3 for _, k, v in outcomes if orjson.loads(k)[3] == "part"]
    assert parts[:-1] == [PART_SIZE] * (n // PART_SIZE), "full parts, then the one being filled"
    assert len(outcomes) - len(parts) < FOLD_EVERY
    held = sum(len(orjson.loads(v or b"")) // 3 for _, _, v in outcomes)
    assert held == n, "every outcome once: in a part, or in a record not folded yet"
    print(f"\n{n} outcomes: {len(outcomes)} live keys ({len(parts)} parts)")


def engines_alike(driver: Driver, clock: str) -> dict[str, Engine]:
    """The driver's engine, and engines restored from its changelog (all of it, its compacted
    copy) and from state images of it."""
    copy = Engine(clock=clock, partitions=PARTITIONS)
    for p, state in driver.engine.partitions.items():
        fresh = PartitionState(p, copy.kpis)
        image = io.BytesIO()
        state_image.dump(state_image.capture(state), image)
        image.seek(0)
        state_image.fill(fresh, state_image.load(image))
        copy.partitions[p] = fresh
    # The snapshot keeps the worker's labels beside the images, and loading it takes them back.
    for label, values in driver.engine.fold.seen.items():
        for value in values:
            copy.fold.register(label, value)
    return {
        "original": driver.engine,
        "full replay": replayed(driver.changelog, clock),
        "compacted": replayed(compacted(driver.changelog), clock),
        "image": copy,
    }


def test_the_memory_comes_back_the_same_from_the_changelog_full_or_compacted_and_from_an_image() -> None:
    driver = Driver.at(T)
    rng = random.Random(7)
    deals = [f"D-{i}" for i in range(3000)]
    for batch in range(60):  # folds, full parts, and a part being filled
        size = rng.choice((1, 5, 40, 200))
        events = [won(batch * 1000 + i, T - rng.randrange(200) * DAY, rng.choice(deals)) for i in range(size)]
        events += [answer(batch * 1000 + 500 + i, T - rng.randrange(90) * DAY, 7, f"R-{i}") for i in range(3)]
        driver.apply(events, T, written=T)
    assert_reference(driver.engine, driver.sent, T)
    engines = engines_alike(driver, format_time(T))
    # Each goes on alike: the same decisions, the same records, and later the same expiry.
    resent = [won(10**6 + i, T, deal) for i, deal in enumerate(deals[:1500])] + [answer(10**6, T, 1, "R-1")]
    later = T + 1000 * DAY
    written: dict[str, dict[tuple[int, bytes], bytes | None]] = {}
    for name, engine in engines.items():
        follower = Driver(engine, offsets=dict(driver.offsets))
        records = flat(follower.apply(resent, T, written=T))
        records += flat(follower.apply([won(2 * 10**6, later, "D-new")], later, written=later))
        written[name] = {(p, key): value for p, key, value in records}  # tombstones in any order
        counters = engine.counters(ALL)
        assert counters == engines["original"].counters(ALL), name
    assert all(records == written["original"] for records in written.values()), "the same records"
    assert sum(v is None for (_, k), v in written["original"].items() if orjson.loads(k)[2] == "outcomes")


def test_a_batch_replayed_after_a_crash_anywhere_in_its_changelog_writes_counts_once() -> None:
    driver = Driver.at(T)
    for i in range(0, 40, 2):  # 20 batches: a fold, and records not folded yet
        driver.apply([won(i, T - i * HOUR, f"D-{i}"), won(i + 1, T - i * HOUR, f"D-{i + 1}")], T, written=T)
    before, offsets = len(driver.changelog), dict(driver.offsets)
    batch = [won(100, T, "D-3"), won(101, T, "D-100"), lost(102, T, "D-3"), won(103, T, "D-100")]
    driver.apply(batch, T, written=T)
    want = driver.engine.kpis_view(ALL)
    assert want["counters"]["duplicates"] == 2
    for cut in range(before, len(driver.changelog) + 1):  # writes complete in order, up to a crash
        engine = replayed(driver.changelog[:cut], format_time(T))
        Driver(engine, offsets=dict(offsets)).apply(batch, T, written=T)  # the same records again
        view = engine.kpis_view(ALL)
        assert (view["windows"], view["counters"]) == (want["windows"], want["counters"]), f"cut at {cut}"


# -- a generated stream with re-sends --------------------------------------------------------------


def with_resends(events: list[dict[str, Any]], now: int, seed: int) -> list[dict[str, Any]]:
    """``events`` with copies of deal outcomes as CRMs send them: an edit later (a new event id,
    a later time up to ``now``, another amount), a win after a loss (of a customer on the
    loss's partition, where the rule has to tell them apart), and a few copies naming another
    customer (a producer that is not deterministic: counted again where they land)."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    customers = sorted({e["data"]["customer_id"] for e in events if e["type"] == "deal.won"})
    on_partition = {
        p: [c for c in customers if partition_of(c.encode(), PARTITIONS) == p] for p in range(PARTITIONS)
    }
    for i, event in enumerate(events):
        out.append(event)
        if event["type"] not in ("deal.won", "deal.lost") or rng.random() >= 0.3:
            continue
        t = epoch_seconds(event["occurred_at"])
        copy = {**event, "event_id": f"{event['event_id']}-edit-{i}", "data": dict(event["data"])}
        copy["occurred_at"] = format_time(min(now - 60, t + rng.randrange(HOUR, 90 * DAY)))
        roll = rng.random()
        if event["type"] == "deal.won":
            copy["data"]["amount"] = round(event["data"]["amount"] * 1.1, 2)
            if roll < 0.05:
                copy["data"]["customer_id"] = rng.choice(customers)
        elif roll < 0.5:  # reopened and won
            copy["type"] = "deal.won"
            copy["data"] = {
                **copy["data"],
                "customer_id": rng.choice(
                    on_partition[partition_of(event["data"]["deal_id"].encode(), PARTITIONS)]
                ),
                "product": "crm-pro",
                "kind": "new",
                "amount": 1000.0,
                "currency": "USD",
            }
        out.insert(rng.randrange(len(out) - 1, len(out) + 1) if rng.random() < 0.1 else len(out), copy)
    return out


def cases(events: list[dict[str, Any]], now: int) -> Counter[str]:
    """The cases of the rule a stream holds, as the reference judges its deliveries."""
    found: Counter[str] = Counter()
    first: dict[tuple[str, int, tuple[str, str]], Any] = {}
    event_ids: set[str] = set()
    for d in deliveries(events, Clock(now), PARTITIONS):
        once = outcome(d.event)
        new_id = d.event["event_id"] not in event_ids
        event_ids.add(d.event["event_id"])
        if once is None or not new_id:
            continue
        where = (d.topic, d.partition, once)
        if where not in first:
            first[where] = d
            won_after_lost = once[0] == "deal.won" and (d.topic, d.partition, ("deal.lost", once[1])) in first
            found["a win after a loss"] += won_after_lost
            continue
        if once[0] != "response":
            found["an outcome sent again with a new event id"] += d.duplicate
            found["a late first outcome sent again within the windows"] += first[where].late and not d.late
        else:
            found["a late first response answered again within the windows"] += (
                first[where].late and not d.late
            )
    return found


def resent_corpus(seed: int, count: int, now: int) -> list[dict[str, Any]]:
    config = GeneratorConfig(
        seed=seed,
        now=datetime.fromtimestamp(now, UTC),
        customers=500,
        late_share=0.1,
        duplicate_share=0.02,
        reanswer_share=0.1,
    )
    return with_resends(list(generate(config, count)), now, seed)


def test_a_generated_stream_with_resent_outcomes_in_random_batches_matches_the_reference() -> None:
    events = resent_corpus(34, 6000, T)
    found = cases(events, T)
    assert min(found.values()) >= 5 and len(found) == 4, found
    rng = random.Random(31)
    driver = Driver.at(T)
    i = 0
    while i < len(events):
        size = rng.choice((1, 10, 100, 1000))
        driver.apply(events[i : i + size], T, written=T)
        i += size
    assert_reference(driver.engine, events, T)
    engines = engines_alike(driver, format_time(T))
    views = {name: e.kpis_view(ALL) for name, e in engines.items()}
    assert all(view == views["original"] for view in views.values())
    assert RETENTION_HOURS * HOUR < OUTCOME_MEMORY
