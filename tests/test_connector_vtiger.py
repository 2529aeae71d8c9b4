"""``salespulse connect vtiger`` against a local vtiger, a real broker and a real worker.

The fake vtiger (tests/vtiger_fake.py) speaks the webservice protocol as vtiger documents
it. The independent check counts what the fake CRM holds (leads, potentials by closing
stage, calls and meetings about an account) and compares it with the worker's ``/kpis``:
every fact must be there exactly once, whatever happens to the connector in between.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import TopicPartition

from salespulse.schemas.topics import DEADLETTER, INPUT_TOPICS
from salespulse.streams.endpoints.connectors.vtiger.records import crm_account
from salespulse.streams.endpoints.connectors.vtiger.state import STATE_TOPIC, ConnectorState, StateStore
from salespulse.streams.endpoints.producer import EventProducer
from salespulse.streams.kafka.offsets import true_end_offsets
from salespulse.streams.settings import Settings
from salespulse.streams.tools.broker import EmbeddedBroker, free_port
from tests.conftest import FIXED_CLOCK, REPO, forecast_numbers, http, records, wait_until
from tests.vtiger_fake import FakeVtiger

SINCE = "2026-10-01"
FACT_TYPES = ("lead.created", "opportunity.created", "deal.won", "deal.lost", "customer.activity")
OPEN_STAGES = (
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Proposal or Price Quote",
    "Negotiation or Review",
)


def _end_of(day: int) -> int:
    """The last second of a day of November 2026, in epoch seconds."""
    return 1793404800 + (day + 1) * 86400 - 1  # 1793404800 is 2026-10-31T00:00:00Z


def _at(day: int, seconds: int) -> str:
    """A vtiger time in November 2026 (all before the workers' fixed clock, 26 Nov 12:00)."""
    hours, rest = divmod(seconds, 3600)
    return f"2026-11-{day:02d} {hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def populate(fake: FakeVtiger, seed: int = 16) -> None:
    """250 leads, 120 potentials (40 won, 25 lost), 300 calls and meetings, and records to skip.

    Records come in groups that share one ``modifiedtime``, so pages end inside a second.
    """
    rng = random.Random(seed)
    accounts = [
        fake.add(
            "Accounts", _at(1, 60 * i), accountname=f"Org {i}", bill_country=rng.choice(["IR", "US", "DE"])
        )
        for i in range(30)
    ]
    contacts = [
        fake.add("Contacts", _at(1, 7200 + 60 * i), lastname=f"Person {i}", account_id=accounts[i % 30])
        for i in range(40)
    ]
    for i in range(250):
        fake.add(
            "Leads",
            _at(2 + i // 20, 3600 * (i % 20 // 3) + 7),  # three leads share each second
            lastname=f"Lead {i}",
            leadsource=rng.choice(["Web Site", "Cold Call", "Trade Show", "", "--None--"]),
            country=rng.choice(["IR", "US", ""]),
            city=rng.choice(["Tehran", "Boston", ""]),
            assigned_user_id=f"19x{rng.randint(1, 5)}",
        )
    stages = ["Closed Won"] * 40 + ["Closed Lost"] * 25 + [rng.choice(OPEN_STAGES) for _ in range(55)]
    rng.shuffle(stages)
    for i, stage in enumerate(stages):
        created = _at(3 + i // 8, 3000 * (i % 8))
        closed = _at(4 + i // 8, 3000 * (i % 8 // 2))  # pairs share their closing second
        fake.add(
            "Potentials",
            created,
            closed if stage.startswith("Closed") else created,
            potentialname=f"Deal {i}",
            amount=f"{rng.randint(1, 90) * 100}.00000000",
            related_to="" if i % 7 == 0 else accounts[i % 30],
            contact_id=contacts[i % 40] if i % 7 == 0 else "",
            sales_stage=stage,
            opportunity_type=rng.choice(["New Business", "Existing Business", ""]),
            assigned_user_id=f"19x{rng.randint(1, 5)}",
        )
    for i in range(340):
        kind = "Call" if i % 2 else "Meeting"
        parent, contact = (accounts[i % 30], "") if i % 3 else ("", contacts[i % 40])
        if i >= 300:  # a custom activity type, and calls about nobody: not customer activities
            kind, parent, contact = ("Site Visit", accounts[0], "") if i < 320 else ("Call", "", "")
        start = _at(5 + i // 20, 1800 * (i % 20))
        fake.add(
            "Events",
            start,
            subject=f"{kind} {i}",
            activitytype=kind,
            date_start=start[:10],
            time_start=start[11:],
            eventstatus="Held",
            parent_id=parent,
            contact_id=contact,
            assigned_user_id="19x1",
        )


def add_more(fake: FakeVtiger, round_: int) -> None:
    """A later day's work: leads, deals closed then, and calls, some in one second."""
    account = fake.rows("Accounts")[round_]["id"]
    day = 21 + round_
    for i in range(120):
        fake.add("Leads", _at(day, 60 * (i // 4)), lastname=f"Late lead {round_}-{i}")
    for i in range(30):
        stage = ("Closed Won", "Closed Lost", "Prospecting")[i % 3]
        fake.add(
            "Potentials",
            _at(day, 60 * i),
            _at(day, 7200 + 60 * (i // 2)),
            related_to=account,
            sales_stage=stage,
        )
    for i in range(60):
        start = _at(day, 10_000 + 60 * i)
        fake.add(
            "Events",
            start,
            activitytype="Call",
            date_start=start[:10],
            time_start=start[11:],
            parent_id=account,
        )


def held_by_crm(fake: FakeVtiger) -> dict[str, int]:
    """What the CRM holds, counted from its records (the independent check): every deal the
    contract can carry (amounts up to 1e15), every call or meeting with an organisation, a
    deal or a contact that has taken place by the tests' clock."""
    potentials = [p for p in fake.rows("Potentials") if Decimal(p["amount"] or 0) <= 10**15]
    events = [e for e in fake.rows("Events") if f"{e['date_start']}T{e['time_start']}Z" <= FIXED_CLOCK]
    return {
        "lead.created": len(fake.rows("Leads")),
        "opportunity.created": len(potentials),
        "deal.won": sum(p["sales_stage"] == "Closed Won" for p in potentials),
        "deal.lost": sum(p["sales_stage"] == "Closed Lost" for p in potentials),
        "customer.activity": sum(
            e["activitytype"] in {"Call", "Meeting"} and bool(e["parent_id"] or e["contact_id"])
            for e in events
        ),
    }


def counted(worker: Any) -> dict[str, int]:
    events = worker.kpis()["counters"]["events"]
    return {t: int(events[t]) for t in FACT_TYPES}


def connector_env(broker: EmbeddedBroker, fake: FakeVtiger, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "SALESPULSE_BROKER": broker.bootstrap,
        "SALESPULSE_PARTITIONS": "4",
        "SALESPULSE_VTIGER_URL": fake.url,
        "SALESPULSE_VTIGER_USER": fake.user,
        "SALESPULSE_VTIGER_ACCESS_KEY": fake.access_key,
        "SALESPULSE_VTIGER_SINCE": SINCE,
        "SALESPULSE_CONNECTOR_PORT": str(free_port()),
        "SALESPULSE_CLOCK": FIXED_CLOCK,  # the connector's clock too: what is planned, what is old
        **extra,
    }


def start_connector(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "salespulse.streams", "connect", "vtiger", *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def connect_once(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "salespulse.streams", "connect", "vtiger", "--once"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )


def wait_counted(worker: Any, expected: dict[str, int]) -> dict[str, int]:
    wait_until(lambda: counted(worker) == expected, timeout=90)
    time.sleep(1.0)  # anything sent twice and counted twice would show up now
    return counted(worker)


def test_every_fact_of_a_paged_crm_reaches_kpis_exactly_once_even_when_sessions_expire_between_pages(
    broker: EmbeddedBroker, spawn_worker: Any, fake: FakeVtiger
) -> None:
    populate(fake)
    fake.session_queries = 3  # the session ends every third query: many times between pages
    expected = held_by_crm(fake)
    assert expected == {
        "lead.created": 250,
        "opportunity.created": 120,
        "deal.won": 40,
        "deal.lost": 25,
        "customer.activity": 300,
    }
    worker = spawn_worker()
    worker.wait_ready()

    run = connect_once(connector_env(broker, fake))

    assert run.returncode == 0, run.stdout + run.stderr
    assert fake.logins >= 5, "the connector must log in again when vtiger ends its session"
    assert wait_counted(worker, expected) == expected
    kpis = worker.kpis()
    assert kpis["counters"]["duplicates"] == 0
    sales = kpis["windows"]["30d"]["sales"]
    won_amount = sum(
        Decimal(p["amount"]) for p in fake.rows("Potentials") if p["sales_stage"] == "Closed Won"
    )
    assert (sales["deals_won"], sales["deals_lost"]) == (40, 25)
    assert Decimal(sales["amount_by_currency"]["USD"]) == won_amount  # exact: /kpis writes a decimal string

    again = connect_once(connector_env(broker, fake))  # nothing changed: nothing new
    assert again.returncode == 0, again.stderr
    time.sleep(1.0)
    assert counted(worker) == expected
    assert worker.kpis()["counters"]["duplicates"] == 0


def test_sigkill_in_the_middle_of_a_page_then_a_restart_neither_loses_nor_doubles_a_fact(
    broker: EmbeddedBroker, spawn_worker: Any, fake: FakeVtiger
) -> None:
    populate(fake)
    expected = held_by_crm(fake)
    worker = spawn_worker()
    worker.wait_ready()
    env = connector_env(broker, fake)

    # Killed while it looks up the contacts of a page of calls: the page is read, not produced.
    fake.hold_when(lambda q: "FROM Contacts" in q and sum("FROM Events" in x for x in fake.queries) >= 2)
    first = start_connector(env, "--once")
    assert fake.held.wait(120), first.communicate()[0] if first.poll() is not None else "never held"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(30)
    fake.release.set()
    # Then, while the CRM keeps changing, killed at random moments: reading, producing, recording.
    rng = random.Random(3)
    killed = 0
    for round_ in range(4):
        add_more(fake, round_)
        before = len(fake.queries)
        run = start_connector(env, "--once")
        reached = rng.randint(1, 5)
        wait_until(
            lambda n=before + reached, r=run: len(fake.queries) >= n or r.poll() is not None, interval=0.002
        )
        time.sleep(rng.uniform(0.0, 0.05))
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            killed += 1
        run.wait(30)
    assert killed >= 2
    expected = held_by_crm(fake)
    final = connect_once(env)

    assert final.returncode == 0, final.stdout + final.stderr
    assert wait_counted(worker, expected) == expected


def test_a_page_produced_but_not_recorded_is_sent_again_with_the_same_ids_and_times(
    broker: EmbeddedBroker, spawn_worker: Any, fake: FakeVtiger
) -> None:
    account = fake.add("Accounts", "2026-11-01 08:00:00", accountname="Org")
    deal = fake.add(
        "Potentials",
        "2026-11-02 09:00:00",
        "2026-11-03 10:00:00",
        related_to=account,
        sales_stage="Closed Won",
    )
    worker = spawn_worker()
    worker.wait_ready()
    env = connector_env(broker, fake)
    settings = Settings.from_env(env)

    class CrashBeforeRecording(StateStore):
        def complete(self, *args: Any, **kwargs: Any) -> None:
            raise KeyboardInterrupt("killed after the broker acknowledged the events")

    from salespulse.streams.endpoints.connectors.vtiger import service

    original = service.StateStore
    service.StateStore = CrashBeforeRecording  # type: ignore[misc]
    try:
        with pytest.raises(KeyboardInterrupt):
            service.Connection(settings, service._translator(settings), _metrics()).poller.poll()
    finally:
        service.StateStore = original  # type: ignore[misc]
    sent = wait_until(lambda: counted(worker)["deal.won"] == 1 and worker.kpis())
    # Edited before the restart: a fresh look would see a later modifiedtime.
    fake.edit(deal, "2026-11-05 12:00:00", amount="999.00000000")

    assert connect_once(env).returncode == 0
    time.sleep(1.0)
    kpis = worker.kpis()
    assert counted(worker)["deal.won"] == 1
    assert kpis["counters"]["duplicates"] >= 1, "the pending page was sent again"
    facts = stored_facts(settings, deal)
    assert facts["deal.won"] == "2026-11-03T10:00:00Z", "the re-sent fact keeps the time first seen"
    assert sent["counters"]["events"]["opportunity.created"] == 1


def _metrics() -> Any:
    from salespulse.streams.endpoints.connectors.vtiger.metrics import ConnectorMetrics

    return ConnectorMetrics("vtiger", reasons=(), event_types=(), skips=(), started=time.time())


def stored_state(settings: Settings) -> ConnectorState:
    with EventProducer(settings) as producer:
        return StateStore(settings, producer, "vtiger", crm_account(settings.vtiger_url)).load()


def stored_facts(settings: Settings, record: str) -> dict[str, str]:
    return stored_state(settings).facts[record]


def test_a_deal_edited_after_it_was_won_does_not_count_again(
    broker: EmbeddedBroker, spawn_worker: Any, fake: FakeVtiger
) -> None:
    account = fake.add("Accounts", "2026-11-01 08:00:00", accountname="Org", bill_country="IR")
    deal = fake.add(
        "Potentials",
        "2026-11-02 09:00:00",
        "2026-11-03 10:00:00",
        related_to=account,
        amount="500.00000000",
        sales_stage="Closed Won",
    )
    worker = spawn_worker()
    worker.wait_ready()
    env = connector_env(broker, fake)
    assert connect_once(env).returncode == 0
    wait_until(lambda: counted(worker)["deal.won"] == 1)

    fake.edit(deal, "2026-11-10 16:30:00", amount="800.00000000", potentialname="renamed")
    assert connect_once(env).returncode == 0
    fake.edit(deal, "2026-11-11 09:00:00", sales_stage="Closed Won")
    assert connect_once(env).returncode == 0
    time.sleep(1.0)

    kpis = worker.kpis()
    assert counted(worker) == {**dict.fromkeys(FACT_TYPES, 0), "opportunity.created": 1, "deal.won": 1}
    assert kpis["counters"]["duplicates"] == 0, "nothing was even sent again"
    assert kpis["windows"]["30d"]["sales"]["amount_by_currency"]["USD"] == "500.00"


def test_a_lead_created_in_the_same_second_as_the_cursor_is_not_skipped(
    broker: EmbeddedBroker, spawn_worker: Any, fake: FakeVtiger
) -> None:
    for i in range(150):  # more than a page in one second: the offset has to move past them
        fake.add("Leads", "2026-11-20 10:00:00", lastname=f"Early {i}")
    worker = spawn_worker()
    worker.wait_ready()
    env = connector_env(broker, fake)
    assert connect_once(env).returncode == 0
    wait_until(lambda: counted(worker)["lead.created"] == 150)
    assert any("LIMIT 100, 100" in q for q in fake.queries)

    fake.add("Leads", "2026-11-20 10:00:00", lastname="Same second")  # the cursor's own second
    assert connect_once(env).returncode == 0

    wait_until(lambda: counted(worker)["lead.created"] == 151)
    time.sleep(1.0)
    assert counted(worker)["lead.created"] == 151
    assert worker.kpis()["counters"]["duplicates"] == 0


def produced(broker: EmbeddedBroker) -> int:
    client = Settings.from_env({"SALESPULSE_BROKER": broker.bootstrap}).kafka_python_config
    partitions = [TopicPartition(t, p) for t in INPUT_TOPICS for p in range(4)] + [
        TopicPartition(STATE_TOPIC, 0)
    ]
    return sum(true_end_offsets(client, partitions).values())


def test_a_wrong_access_key_is_a_clear_error_exits_non_zero_once_and_retries_otherwise_producing_nothing(
    broker: EmbeddedBroker, fake: FakeVtiger
) -> None:
    populate(fake)
    env = connector_env(broker, fake, SALESPULSE_VTIGER_ACCESS_KEY="not-the-key")

    once = connect_once(env)

    assert once.returncode != 0
    assert "INVALID_USER_CREDENTIALS" in once.stderr and "SALESPULSE_VTIGER_ACCESS_KEY" in once.stderr
    assert "not-the-key" not in once.stderr

    running = start_connector(env)
    try:
        port = env["SALESPULSE_CONNECTOR_PORT"]

        def auth_failures() -> float:
            try:
                _, body = http(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                return 0.0
            for line in body.decode().splitlines():
                if line.startswith('salespulse_connector_errors_total{connector="vtiger",reason="auth"}'):
                    return float(line.split()[-1])
            return 0.0

        wait_until(lambda: auth_failures() >= 2, timeout=60)
        assert running.poll() is None, "it keeps retrying instead of exiting"
        status, body = http(f"http://127.0.0.1:{port}/healthz")
        assert status == 200 and orjson.loads(body)["status"] == "alive"
    finally:
        running.send_signal(signal.SIGTERM)
        running.wait(30)
    assert produced(broker) == 0


def connector_metric(env: dict[str, str], name: str, **labels: str) -> float:
    """A sample of the running connector's /metrics (0 while it does not answer yet)."""
    try:
        _, body = http(f"http://127.0.0.1:{env['SALESPULSE_CONNECTOR_PORT']}/metrics")
    except OSError:
        return 0.0
    wanted = {f'{k}="{v}"' for k, v in labels.items()}
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name + "{") and wanted <= set(line[len(name) + 1 : line.index("}")].split(",")):
            total += float(line.split()[-1])
    return total


def polls(env: dict[str, str]) -> float:
    return connector_metric(env, "salespulse_connector_polls_total")


def test_a_b2c_crm_with_an_unreadable_deal_counts_every_fact_once_and_a_later_lead_within_two_polls(
    broker: EmbeddedBroker, spawn_worker: Any, fake: FakeVtiger, tmp_path: Path
) -> None:
    """Won deals linked to an organisation, to a contact with one, to a contact without one and to
    nothing, and a deal in rials over the contract's amount limit, entered before all of them: it
    goes to the dead letters and stops nothing."""
    org = fake.add("Accounts", _at(1, 0), bill_country="IR")
    other_org = fake.add("Accounts", _at(1, 60), bill_country="DE")
    employee = fake.add("Contacts", _at(1, 120), account_id=other_org)
    shopper = fake.add("Contacts", _at(1, 180), account_id="")  # B2C: a contact with no organisation
    rials = fake.add(
        "Potentials",
        _at(2, 0),
        _at(2, 1),
        amount="2500000000000000",  # 2.5e15 rials: over the contract's 1e15
        sales_stage="Closed Won",
        probability="10",
        contact_id=shopper,
    )
    for i in range(12):
        fake.add("Leads", _at(3, 60 * i), leadsource="Web Site", country="IR")
    won = {
        "organisation": dict(related_to=org),
        "contact with one": dict(contact_id=employee),
        "contact without one": dict(contact_id=shopper),
        "nothing": {},
    }
    deals = {
        name: fake.add("Potentials", _at(4, 600 * i), amount="950000000", probability="60", **refs)
        for i, (name, refs) in enumerate(won.items())
    }
    for i, deal in enumerate(deals.values()):  # closed later; vtiger leaves probability as it was
        fake.edit(deal, _at(5, 600 * i), sales_stage="Closed Won")
    lost = fake.add("Potentials", _at(4, 7200), contact_id=shopper, amount="120000000")
    fake.edit(lost, _at(5, 7200), sales_stage="Closed Lost")
    fake.add("Potentials", _at(4, 9000), sales_stage="Bogus Stage", related_to=org)  # accepted on create
    activities = [
        ("Call", org, ""),
        ("Meeting", "", shopper),
        ("Call", "", employee),
        ("Meeting", deals["nothing"], ""),  # about a deal: that deal's customer
        ("Site Visit", org, ""),  # not a customer activity
        ("Call", "", ""),  # about nobody
    ]
    for i, (kind, parent, contact) in enumerate(activities):
        start = _at(6, 3600 * i)
        fake.add(
            "Events",
            start,
            activitytype=kind,
            date_start=start[:10],
            time_start=start[11:],
            parent_id=parent,
            contact_id=contact,
        )
    planned = fake.add(  # next week, after the connector's clock: held, not produced
        "Events",
        _at(20, 0),
        activitytype="Meeting",
        date_start="2026-12-03",
        time_start="10:00:00",
        parent_id=org,
    )
    mapping = tmp_path / "connectors.yaml"
    mapping.write_text("currency: IRR\n")
    expected = held_by_crm(fake)
    assert expected == {
        "lead.created": 12,
        "opportunity.created": 6,
        "deal.won": 4,
        "deal.lost": 1,
        "customer.activity": 4,
    }
    worker = spawn_worker()
    worker.wait_ready()
    env = connector_env(broker, fake, SALESPULSE_VTIGER_POLL="1", SALESPULSE_CONNECTORS=str(mapping))
    running = start_connector(env)
    try:
        assert wait_counted(worker, expected) == expected
        kpis = worker.kpis()
        assert kpis["counters"]["duplicates"] == 0
        customers = {org, other_org, shopper, f"deal:{deals['nothing']}"}
        assert kpis["windows"]["30d"]["engagement"]["customers_known"] == len(customers)
        assert kpis["windows"]["30d"]["sales"]["amount_by_currency"]["IRR"] == str(4 * 950_000_000)
        (letter,) = records(broker.bootstrap, (DEADLETTER,))
        headers = dict(letter.headers)
        assert (headers["salespulse.vendor"], headers["salespulse.module"]) == (b"vtiger", b"Potentials")
        assert (headers["salespulse.record"], headers["salespulse.cause"]) == (rials.encode(), b"contract")
        assert b"amount" in headers["salespulse.detail"] and orjson.loads(letter.value)["id"] == rials
        assert (
            connector_metric(
                env, "salespulse_connector_records_dead_total", module="Potentials", reason="contract"
            )
            == 1
        )
        for reason, n in (
            ("contact_organisation", 2),
            ("contact", 2),
            ("deal", 2),
        ):  # a won deal and a call each
            assert connector_metric(env, "salespulse_connector_fallbacks_total", reason=reason) == n, reason

        before = polls(env)
        fake.add("Leads", _at(25, 0), lastname="After")
        wait_until(lambda: polls(env) >= before + 2, timeout=60)
        assert connector_metric(env, "salespulse_connector_events_total", type="lead.created") == 13
        fake.edit(rials, _at(25, 60), amount="2500000")  # fixed in vtiger: its modifiedtime moves
        fixed = {**expected, "lead.created": 13, "opportunity.created": 7, "deal.won": 5}
        assert wait_counted(worker, fixed) == fixed
        assert len(records(broker.bootstrap, (DEADLETTER,))) == 1
        assert stored_state(Settings.from_env(env)).held[planned] == {
            "module": "Events",
            "at": "2026-12-03T10:00:00Z",
        }, "next week's meeting is held until it has taken place"
    finally:
        running.send_signal(signal.SIGTERM)
        output = running.communicate(timeout=60)[0]
    assert running.returncode == 0, output
    assert fake.logouts >= 1, "the connector logs out when it stops; vtiger's HTTP 500 is no failure"


def test_records_modified_in_the_repeated_fall_back_hour_of_berlin_are_all_counted_once(
    broker: EmbeddedBroker, spawn_worker: Any, fake: FakeVtiger
) -> None:
    """On the last Sunday of October Berlin's clocks go from 03:00 CEST back to 02:00 CET, and
    vtiger writes both passes of 02:xx alike: what was written in the second pass sorts before
    the cursor the first pass left."""
    env = connector_env(broker, fake, SALESPULSE_VTIGER_TIMEZONE="Europe/Berlin")
    org = fake.add("Accounts", "2026-10-24 12:00:00")
    worker = spawn_worker()
    worker.wait_ready()
    first_pass = ["2026-10-25 02:10:00", "2026-10-25 02:40:00"]  # CEST (UTC+2), in real order
    second_pass = ["2026-10-25 02:05:00", "2026-10-25 02:30:00", "2026-10-25 02:58:00"]  # CET (UTC+1)
    runs = [
        lambda: (
            [fake.add("Leads", t) for t in first_pass]
            + [fake.add("Potentials", "2026-10-25 02:20:00", "2026-10-25 02:50:00", related_to=org)]
            + [
                fake.add("Potentials", "2026-10-25 02:35:00", amount="2500000000000000")
            ]  # unmappable: over 1e15
        ),
        lambda: (
            [fake.add("Leads", t) for t in second_pass[:2]]
            + [fake.edit(fake.rows("Potentials")[0]["id"], "2026-10-25 02:15:00", sales_stage="Closed Won")]
            + [
                fake.add(
                    "Events",
                    "2026-10-25 02:25:00",
                    date_start="2026-10-24",
                    time_start="16:00:00",
                    parent_id=org,
                )
            ]
        ),
        lambda: [fake.add("Leads", second_pass[2])],
        lambda: [fake.add("Leads", "2026-10-25 03:10:00")],  # after the hour, in CET
        lambda: [],  # and once more: nothing is sent twice
    ]
    for run in runs:
        run()
        result = connect_once(env)
        assert result.returncode == 0, result.stdout + result.stderr

    expected = {**held_by_crm(fake)}
    assert expected == {
        "lead.created": 6,
        "opportunity.created": 1,
        "deal.won": 1,
        "deal.lost": 0,
        "customer.activity": 1,
    }
    assert wait_counted(worker, expected) == expected
    assert worker.kpis()["counters"]["duplicates"] == 0, "the hour was read again, but nothing sent again"
    assert len(records(broker.bootstrap, (DEADLETTER,))) == 1, "nor the unmappable deal dead-lettered again"


def test_a_module_vtiger_refuses_holds_back_no_other_and_is_read_once_allowed(
    broker: EmbeddedBroker, spawn_worker: Any, fake: FakeVtiger
) -> None:
    populate(fake)
    fake.denied.add("Events")  # the user may not read calls and meetings (ACCESS_DENIED)
    worker = spawn_worker()
    worker.wait_ready()
    env = connector_env(broker, fake)

    refused = connect_once(env)

    assert refused.returncode != 0 and "ACCESS_DENIED" in refused.stderr
    expected = {**held_by_crm(fake), "customer.activity": 0}
    assert wait_counted(worker, expected) == expected
    fake.denied.clear()
    assert connect_once(env).returncode == 0
    expected = held_by_crm(fake)
    assert wait_counted(worker, expected) == expected
    assert worker.kpis()["counters"]["duplicates"] == 0


def test_a_potentials_stage_move_amount_change_and_slip_are_whole_versions_and_its_win_names_it(
    broker: EmbeddedBroker, spawn_worker: Any, fake: FakeVtiger, tmp_path: Path
) -> None:
    """A deal worked over a week in a vtiger that has the ``forecast_category`` field: each edit
    that changes its state is one ``opportunity.updated`` with the whole state, at its
    ``modifiedtime``; an edit that changes nothing of it, a poll that finds nothing new, and
    edits after the win produce nothing."""
    fake.add_field("Potentials", "forecast_category")
    org = fake.add("Accounts", _at(1, 0), bill_country="IR")
    deal = fake.add(
        "Potentials",
        _at(10, 0),
        amount="20000",
        sales_stage="Qualification",
        probability="20",
        closingdate="2026-12-10",
        related_to=org,
        assigned_user_id="19x5",
    )
    mapping = tmp_path / "connectors.yaml"
    mapping.write_text("reps: {19x5: r-05}\nregions: {countries: {IR: iran}}\n")
    worker = spawn_worker()
    worker.wait_ready()
    env = connector_env(broker, fake, SALESPULSE_CONNECTORS=str(mapping))
    edits: list[dict[str, str]] = [
        {},  # the first poll: its opening
        {"sales_stage": "Negotiation/Review", "probability": "80", "forecast_category": "Commit"},
        {"amount": "24000"},
        {"potentialname": "Renamed", "leadsource": "Cold Call"},  # nothing the state holds
        {"closingdate": "2027-01-15"},  # slipped from December to January
        {},  # a poll with nothing new
        {"sales_stage": "Closed Won"},  # vtiger leaves the probability as it was
        {"amount": "99999"},  # after the win: nothing
    ]
    for day, edit in enumerate(edits, 11):
        if edit:
            fake.edit(deal, _at(day, 0), **edit)
        assert connect_once(env).returncode == 0

    state = {
        "opportunity_id": deal,
        "rep_id": "r-05",
        "region": "iran",
        "amount": 20000.0,
        "currency": "USD",
        "stage": "Qualification",
        "probability": 20,
        "expected_close": "2026-12-10",
    }
    moved = {**state, "stage": "Negotiation/Review", "probability": 80, "forecast_category": "commit"}
    raised = {**moved, "amount": 24000.0}
    slipped = {**raised, "expected_close": "2027-01-15"}
    events = [orjson.loads(r.value) for r in records(broker.bootstrap, INPUT_TOPICS)]
    opportunity = [(e["type"], e["occurred_at"], e["data"]) for e in events if e["type"].startswith("opp")]
    assert opportunity == [
        ("opportunity.created", "2026-11-10T00:00:00Z", state),
        ("opportunity.updated", "2026-11-12T00:00:00Z", moved),
        ("opportunity.updated", "2026-11-13T00:00:00Z", raised),
        ("opportunity.updated", "2026-11-15T00:00:00Z", slipped),
    ]
    # The close as sent, on crm.deals: the forecast forwards a copy to the opportunity's partition.
    (won,) = [orjson.loads(r.value) for r in records(broker.bootstrap, ("crm.deals",))]
    assert won["type"] == "deal.won"
    assert (won["occurred_at"], won["data"]["opportunity_id"], won["data"]["amount"]) == (
        "2026-11-17T00:00:00Z",
        deal,
        24000.0,
    )
    expected = {**dict.fromkeys(FACT_TYPES, 0), "opportunity.created": 1, "deal.won": 1}
    assert wait_counted(worker, expected) == expected
    kpis = worker.kpis()
    assert kpis["counters"]["events"]["opportunity.updated"] == 3
    assert kpis["counters"]["duplicates"] == 0
    assert stored_facts(Settings.from_env(env), deal) == {
        "opportunity.created": "2026-11-10T00:00:00Z",
        "deal.won": "2026-11-17T00:00:00Z",
    }, "won for good: the state it had is forgotten"

    # What the forecast makes of it, as of the end of each day of its life.
    def numbers(period: str, day: int) -> tuple[float, ...]:
        return forecast_numbers(worker.forecast(period=period, by="rep", as_of=_end_of(day)), "r-05", "USD")

    def forecast_shows_its_life() -> bool:
        return [
            numbers("2026-12", 10),  # opened in December's pipeline at 20%
            numbers("2026-12", 12),  # the stage move: a commit at 80%
            numbers("2026-12", 13),  # the amount raised
            (numbers("2026-12", 15), numbers("2027-01", 15)),  # the slip into January
            (numbers("2027-01", 17), numbers("2026-11", 17)),  # won on 17 November
        ] == [
            (0, 0, 0, 20000, 4000),
            (0, 20000, 20000, 20000, 16000),
            (0, 24000, 24000, 24000, 19200),
            ((0, 0, 0, 0, 0), (0, 24000, 24000, 24000, 19200)),
            ((0, 0, 0, 0, 0), (24000, 24000, 24000, 0, 0)),
        ]

    wait_until(forecast_shows_its_life, timeout=30)  # the win reaches the forecast forwarded

    def december_moved(first: int, last: int) -> dict[str, float]:
        view = worker.forecast(period="2026-12", by="rep", **{"from": _end_of(first), "to": _end_of(last)})
        return {move: v["USD"] for move, v in view["waterfall"].items() if v.get("USD")}

    assert december_moved(10, 13) == {"start": 20000, "increased": 4000, "end": 24000}
    assert december_moved(13, 15) == {"start": 24000, "pushed_out": 24000}
    january = worker.forecast(period="2027-01", by="rep", as_of=_end_of(15))
    assert [(s["opportunity_id"], s["slips"]) for s in january["slips"]] == [(deal, 1)]
