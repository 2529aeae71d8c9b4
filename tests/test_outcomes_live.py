"""A deal's outcome counts once for life, through real workers on the embedded broker.

The same deal won again 63 days later (a new ``occurred_at``, a new event id, or the first
event id long forgotten) is a duplicate, also after a restart from the local snapshot and
one from the changelog alone; Salesforce's outbound message for an edit of a won
opportunity, sent through the webhook, is one too; and a stream with outcomes sent again,
wins after losses and late first outcomes stays exact against ``tests/reference.py`` while
its worker is killed (SIGKILL) mid-stream and restarted on its own disk and on a new one.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from salespulse.agents.rolling import HOUR
from salespulse.streams.endpoints.producer import EventProducer
from tests import vendor_payloads as v
from tests.conftest import WorkerProcess, wait_until
from tests.engine_driver import lead
from tests.reference import expected, partition_of
from tests.test_faults import (
    NOW,
    applied,
    assert_worker_exact,
    chunked,
    send_all,
    try_kpis,
    wait_applied,
)
from tests.test_outcomes import cases, resent_corpus, won
from tests.test_snapshot import restored_partitions, wait_snapshots
from tests.test_webhooks import SF_SECRET, post

DAY = 24 * HOUR
STREAM = {
    "SALESPULSE_CLOCK": "stream",
    "SALESPULSE_TEST_LOGLEVEL": "info",
    "SALESPULSE_SNAPSHOT_INTERVAL": "0.2",
}


def sales_24h(worker: WorkerProcess) -> tuple[float, dict[str, float]]:
    """Deals won in the last 24 h of the worker's clock, and their amounts by currency."""
    sales = worker.kpis()["windows"]["24h"]["sales"]
    return sales["deals_won"], {c: float(a) for c, a in sales["amount_by_currency"].items()}


def counted(worker: WorkerProcess) -> tuple[int, int]:
    counters = worker.kpis()["counters"]
    return counters["events"]["deal.won"], counters["duplicates"]


@pytest.mark.slow
def test_a_deal_won_again_63_days_later_counts_once_also_after_restarts_from_the_snapshot_and_the_changelog(
    spawn_worker: Any, producer: EventProducer
) -> None:
    now = int(time.time())
    sent: list[dict[str, Any]] = []

    def send(worker: WorkerProcess, *events: dict[str, Any]) -> None:
        """Each call one batch: the stream clock moves between them as in a live deployment."""
        send_all(producer, events)
        sent.extend(events)
        wait_until(lambda: applied(worker.kpis()) == len(sent), timeout=60)

    worker = spawn_worker("won", **STREAM)
    worker.wait_ready()
    # A lead on every partition, so each has state, and a snapshot, to restart from.
    leads = {partition_of(f"L-{i}".encode(), 4): lead(i, now - 65 * DAY) for i in range(40)}
    assert len(leads) == 4
    send(worker, *leads.values())
    send(worker, won(0, now - 64 * DAY, "D-1", amount=1000.0))
    send(worker, won(1, now - 2 * HOUR, "D-2", amount=500.0))  # the same customer, so the same partition
    send(worker, won(2, now - HOUR, "D-1", amount=1200.0))  # edited 63 days later: a new event id
    # And its first event id again (connectors derive it from the deal): forgotten by now.
    send(worker, won(0, now - 50 * 60, "D-1", amount=1300.0))
    assert counted(worker) == (2, 2)
    assert sales_24h(worker) == (1, {"EUR": 500.0})

    wait_snapshots(worker)
    worker.kill()
    worker.log_path.write_text("")
    worker = spawn_worker("won", **STREAM)  # its own disk: from the snapshot
    worker.wait_ready()
    wait_until(lambda: applied(worker.kpis()) == len(sent), timeout=60)
    assert restored_partitions(worker) == 4, worker.log_tail()
    send(worker, won(3, now - 40 * 60, "D-1", amount=1400.0))
    assert counted(worker) == (2, 3)
    worker.stop()

    worker = spawn_worker("won-new-disk", **STREAM)  # a new disk: the whole changelog
    worker.wait_ready()
    wait_until(lambda: applied(worker.kpis()) == len(sent), timeout=60)
    assert restored_partitions(worker) == 0
    send(worker, won(4, now - 30 * 60, "D-1", amount=1500.0), won(5, now - 20 * 60, "D-3", amount=70.0))
    assert counted(worker) == (3, 4), "D-1 once, D-2 and D-3"
    assert sales_24h(worker) == (2, {"EUR": 570.0})


def opportunity(opp_id: str, modified: int, amount: str) -> str:
    """A won Salesforce opportunity of one account, as its outbound message carries it."""
    return v.sf_object(
        "Opportunity",
        Id=opp_id,
        AccountId="0015g00000XyZ12AAB",
        Amount=amount,
        CloseDate=time.strftime("%Y-%m-%d", time.gmtime(modified)),
        CreatedDate="2026-01-20T09:00:00.000Z",
        CurrencyIsoCode="EUR",
        IsClosed="true",
        IsWon="true",
        LastModifiedDate=time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(modified)),
        OwnerId="0055g00000Rep07AAA",
        StageName="Closed Won",
        Type="New Customer",
    )


def test_salesforces_message_for_a_won_opportunity_edited_63_days_later_counts_once(
    spawn_worker: Any,
) -> None:
    env = {"SALESPULSE_SALESFORCE_ORG_ID": v.SF_ORG, "SALESPULSE_SALESFORCE_SECRET": SF_SECRET}
    worker = spawn_worker("salesforce", SALESPULSE_CLOCK="stream", **env)
    worker.wait_ready()
    url = f"http://{worker.address}/webhooks/salesforce/{SF_SECRET}"
    now = int(time.time())
    # Won; two more wins of the account (its partition) 64 days on, and with them the first
    # win's event id leaves the 62 days event ids are remembered; then the first, edited.
    messages = [
        opportunity("0065g00000AbCdEAAV", now - 64 * DAY, "48000.0"),
        opportunity("0065g00000AbCdFAAV", now - 2 * HOUR, "9000.0"),
        opportunity("0065g00000AbCdGAAV", now - 90 * 60, "1000.0"),
        opportunity("0065g00000AbCdEAAV", now - HOUR, "52000.0"),
    ]
    for n, message in enumerate(messages, 1):  # one batch each
        status, body = post(url, v.salesforce_envelope(message), {"Content-Type": "text/xml"})
        assert status == 200 and b"<Ack>true</Ack>" in body, body
        wait_until(lambda n=n: applied(worker.kpis()) == n, timeout=60)
    assert counted(worker) == (3, 1)
    assert sales_24h(worker) == (2, {"EUR": 10000.0})


@pytest.mark.slow
def test_outcomes_sent_again_stay_exact_through_sigkills_and_restarts_on_the_same_and_a_new_disk(
    spawn_worker: Any, producer: EventProducer
) -> None:
    rng = random.Random(20261207)
    events = resent_corpus(46, 12_000, NOW)
    assert min(cases(events, NOW).values()) >= 10
    chunks = chunked(events, 1_500)
    kills = {2: "resent", 5: "resent-new-disk"}  # the chunk a kill falls in, and the next data dir
    worker = spawn_worker("resent")
    worker.wait_ready()
    sent = 0
    for i, chunk in enumerate(chunks):
        if i not in kills:
            send_all(producer, chunk)
            sent += len(chunk)
            continue
        timer = threading.Timer(rng.uniform(0.05, 0.4), worker.kill)
        timer.start()
        send_all(producer, chunk)
        timer.join()
        sent += len(chunk)
        seen = try_kpis(worker)
        assert seen is None, "killed"
        worker = spawn_worker(kills[i])
        worker.wait_ready()
        wait_applied(worker, sent)
        assert_worker_exact(worker, expected(events[:sent], NOW), f"restarted on {kills[i]} after chunk {i}")
    wait_applied(worker, len(events))
    assert_worker_exact(worker, expected(events, NOW), "after both kills")
