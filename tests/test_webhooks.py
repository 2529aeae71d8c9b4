"""Vendor webhooks end to end: a real worker, a real broker, and a local server that speaks
HubSpot's CRM API (objects batch read, v4 associations, deal pipelines)."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from kafka import KafkaConsumer, TopicPartition

from salespulse.schemas.topics import DEADLETTER, INPUT_TOPICS
from salespulse.streams.endpoints.connectors.delighted import signature as delighted_signature
from salespulse.streams.endpoints.connectors.hubspot import signature_v3
from salespulse.streams.endpoints.connectors.typeform import signature as typeform_signature
from salespulse.streams.tools.broker import free_port
from tests import vendor_payloads as v
from tests.conftest import http, wait_until

PUBLIC = "https://sp.example.com"
HS_SECRET = "hs-client-secret"
PD_USER, PD_PASSWORD = "pipedrive-hook", "pd-pass"
DELIGHTED_KEY = "dl-api-key"
TF_SECRET = "tf-secret"


def _stage(sid: str, closed: str, probability: str) -> dict[str, Any]:
    return {"id": sid, "label": sid, "metadata": {"isClosed": closed, "probability": probability}}


class FakeHubSpot:
    """A local HubSpot CRM API with one custom pipeline, one deal, one contact and one company."""

    def __init__(self) -> None:
        self.port = free_port()
        self.calls: list[str] = []
        self.deals = {
            "901": {
                "amount": "25000.50",
                "deal_currency_code": "EUR",
                "hubspot_owner_id": "77",
                "dealtype": "newbusiness",
            }
        }
        self.contacts = {
            "501": {
                "hubspot_owner_id": "77",
                "country": "IR",
                "city": "Tehran",
                "hs_analytics_source": "PAID_SEARCH",
            }
        }
        self.companies = {"301": {"country": "IR", "city": "Tehran"}}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def pipelines(self, request: web.Request) -> web.Response:
        self.calls.append("pipelines")
        pipeline = {
            "id": "7700",
            "label": "Enterprise",
            "stages": [
                _stage("2001", "false", "0.2"),
                _stage("2002", "false", "0.6"),
                _stage("2003", "true", "1.0"),
                _stage("2004", "true", "0.0"),
            ],
        }
        return web.json_response({"results": [pipeline]})

    async def batch_read(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        self.calls.append(f"read {kind}")
        store = {"deals": self.deals, "contacts": self.contacts, "companies": self.companies}[kind]
        body = await request.json()
        results = [
            {
                "id": i["id"],
                "properties": {p: store[i["id"]].get(p) for p in body["properties"]},
                "archived": False,
            }
            for i in body["inputs"]
            if i["id"] in store
        ]
        return web.json_response({"status": "COMPLETE", "results": results})

    async def associations(self, request: web.Request) -> web.Response:
        to = request.match_info["to"]
        self.calls.append(f"associations {to}")
        body = await request.json()
        links = {"companies": {"901": 301}}.get(to, {})
        results = [
            {
                "from": {"id": i["id"]},
                "to": [{"toObjectId": links[i["id"]], "associationTypes": [{"typeId": 5}]}],
            }
            for i in body["inputs"]
            if i["id"] in links
        ]
        return web.json_response({"status": "COMPLETE", "results": results})

    def __enter__(self) -> FakeHubSpot:
        app = web.Application()
        app.router.add_get("/crm/v3/pipelines/deals", self.pipelines)
        app.router.add_post("/crm/v3/objects/{kind}/batch/read", self.batch_read)
        app.router.add_post("/crm/v4/associations/deals/{to}/batch/read", self.associations)
        self.runner = web.AppRunner(app)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def hubspot_api() -> Iterator[FakeHubSpot]:
    with FakeHubSpot() as server:
        yield server


def vendor_env(api: FakeHubSpot) -> dict[str, str]:
    return {
        "SALESPULSE_PUBLIC_URL": PUBLIC,
        "SALESPULSE_HUBSPOT_CLIENT_SECRET": HS_SECRET,
        "SALESPULSE_HUBSPOT_TOKEN": "pat-na1-test",
        "SALESPULSE_HUBSPOT_API": f"http://127.0.0.1:{api.port}",
        "SALESPULSE_SALESFORCE_ORG_ID": v.SF_ORG[:15],
        "SALESPULSE_PIPEDRIVE_USER": PD_USER,
        "SALESPULSE_PIPEDRIVE_PASSWORD": PD_PASSWORD,
        "SALESPULSE_DELIGHTED_API_KEY": DELIGHTED_KEY,
        "SALESPULSE_TYPEFORM_SECRET": TF_SECRET,
        "SALESPULSE_TYPEFORM_SCORE_FIELD": "nps",
        "SALESPULSE_TYPEFORM_COMMENT_FIELD": "why",
    }


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def hubspot_headers(body: bytes, at_ms: int | None = None, secret: str = HS_SECRET) -> dict[str, str]:
    timestamp = str(at_ms if at_ms is not None else int(time.time() * 1000))
    signature = signature_v3(secret, "POST", f"{PUBLIC}/webhooks/hubspot", body, timestamp)
    return {
        "X-HubSpot-Signature-v3": signature,
        "X-HubSpot-Request-Timestamp": timestamp,
        "Content-Type": "application/json",
    }


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def records(bootstrap: str, topics: tuple[str, ...]) -> list[Any]:
    """Every record on ``topics``, read from the start until a poll comes back empty."""
    consumer = KafkaConsumer(
        bootstrap_servers=[bootstrap], enable_auto_commit=False, consumer_timeout_ms=3000
    )
    try:
        parts = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        return list(consumer)
    finally:
        consumer.close()


def test_bad_signatures_stale_timestamps_wrong_credentials_and_foreign_orgs_get_401_and_write_nothing(
    broker: Any, spawn_worker: Any, hubspot_api: FakeHubSpot
) -> None:
    worker = spawn_worker("refuse", **vendor_env(hubspot_api))
    worker.wait_ready()
    base = f"http://{worker.address}/webhooks"
    hs = orjson.dumps([v.hubspot_event("deal.creation", 901, 1, v.T0_MS)])
    delighted = v.delighted("survey_response.created", 9, None, v.T0_S)
    typeform = v.typeform("tok-1", 9, "C-1")
    attempts = {
        "hubspot bad signature": ("hubspot", hs, hubspot_headers(hs, secret="not-the-secret")),
        "hubspot stale timestamp": (
            "hubspot",
            hs,
            hubspot_headers(hs, at_ms=int(time.time() * 1000) - 6 * 60 * 1000),
        ),
        "hubspot body changed": ("hubspot", hs + b" ", hubspot_headers(hs)),
        "pipedrive wrong password": (
            "pipedrive",
            v.pipedrive("create", "deal", v.PD_DEAL, None),
            basic(PD_USER, "nope"),
        ),
        "pipedrive no credentials": ("pipedrive", v.pipedrive("create", "deal", v.PD_DEAL, None), {}),
        "salesforce foreign org": (
            "salesforce",
            v.salesforce_envelope(v.SF_WON, org="00D000000000062EAA"),
            {},
        ),
        "delighted bad signature": (
            "delighted",
            delighted,
            {"X-Delighted-Webhook-Signature": delighted_signature("x", delighted)},
        ),
        "typeform bad signature": (
            "typeform",
            typeform,
            {"Typeform-Signature": typeform_signature("x", typeform)},
        ),
    }
    for name, (vendor, body, headers) in attempts.items():
        status, answer = post(f"{base}/{vendor}", body, headers)
        assert status == 401, (name, answer)
        assert orjson.loads(answer)["error"], name
    assert records(broker.bootstrap, (*INPUT_TOPICS, DEADLETTER)) == []
    assert hubspot_api.calls == []
    metrics = worker.metrics()
    assert 'salespulse_webhook_requests_total{outcome="unauthorized",vendor="hubspot"} 3.0' in metrics
    assert 'salespulse_webhook_requests_total{outcome="unauthorized",vendor="salesforce"} 1.0' in metrics


def test_a_webhook_without_its_settings_answers_404_naming_them(spawn_worker: Any) -> None:
    worker = spawn_worker("off")
    worker.wait_ready()
    for vendor, setting in (
        ("hubspot", "SALESPULSE_HUBSPOT_CLIENT_SECRET"),
        ("salesforce", "SALESPULSE_SALESFORCE_ORG_ID"),
        ("pipedrive", "SALESPULSE_PIPEDRIVE_USER"),
        ("delighted", "SALESPULSE_DELIGHTED_API_KEY"),
        ("typeform", "SALESPULSE_TYPEFORM_SECRET"),
    ):
        status, body = post(f"http://{worker.address}/webhooks/{vendor}", b"{}", {})
        assert status == 404 and setting.encode() in body, (vendor, body)


def test_each_vendors_payloads_posted_three_times_count_once_and_a_won_hubspot_deal_carries_the_api_amount(
    broker: Any, spawn_worker: Any, hubspot_api: FakeHubSpot
) -> None:
    worker = spawn_worker("vendors", **vendor_env(hubspot_api))
    worker.wait_ready()
    base = f"http://{worker.address}/webhooks"
    stage = lambda value, eid, at: v.hubspot_event(  # noqa: E731
        "deal.propertyChange", 901, eid, at, propertyName="dealstage", propertyValue=value
    )
    hubspot = [
        [
            v.hubspot_event("deal.creation", 901, 11, v.T0_MS),
            v.hubspot_event("contact.creation", 501, 12, v.T0_MS),
        ],
        [stage("2002", 13, v.T0_MS + 60_000)],  # through the custom pipeline: an open stage
        [stage("2003", 14, v.T0_MS + 120_000)],  # closed won
    ]
    unmappable = orjson.dumps([v.hubspot_event("company.creation", 301, 15, v.T0_MS)])
    deliveries: list[tuple[str, bytes, Any]] = [("hubspot", orjson.dumps(d), None) for d in hubspot]
    deliveries += [
        (
            "salesforce",
            v.salesforce_envelope(v.SF_WON, v.SF_LOST, v.SF_OPEN, v.SF_LEAD),
            {"Content-Type": "text/xml"},
        ),
        ("pipedrive", v.pipedrive("create", "deal", v.PD_DEAL, None), basic(PD_USER, PD_PASSWORD)),
        (
            "pipedrive",
            v.pipedrive("change", "deal", v.PD_WON, {"status": "open"}),
            basic(PD_USER, PD_PASSWORD),
        ),
        ("pipedrive", v.pipedrive("create", "lead", v.PD_LEAD, None), basic(PD_USER, PD_PASSWORD)),
    ]
    dl = v.delighted("survey_response.created", 4, None, v.T0_S)
    deliveries.append(
        ("delighted", dl, {"X-Delighted-Webhook-Signature": delighted_signature(DELIGHTED_KEY, dl)})
    )
    tf = v.typeform("tok-42", 10, "C-42")
    deliveries.append(("typeform", tf, {"Typeform-Signature": typeform_signature(TF_SECRET, tf)}))
    for _ in range(3):
        for vendor, body, headers in deliveries:
            status, answer = post(f"{base}/{vendor}", body, headers or hubspot_headers(body))
            assert status == 200, (vendor, answer)
            if vendor == "salesforce":
                assert b"<Ack>true</Ack>" in answer and b"notificationsResponse" in answer
    status, answer = post(f"{base}/hubspot", unmappable, hubspot_headers(unmappable))
    assert status == 200 and orjson.loads(answer)["unmappable"] == 1

    expected = {
        # HubSpot: created once, won once (the open stage counts nothing); one lead.
        # Salesforce: won, lost, opened, lead. Pipedrive: opened, won, lead.
        # Delighted and Typeform: one answer each.
        "opportunity.created": 1 + 1 + 1,
        "deal.won": 1 + 1 + 1,
        "deal.lost": 1,
        "lead.created": 1 + 1 + 1,
        "survey.answered": 2,
    }
    applied = sum(expected.values())

    def settled() -> dict[str, Any] | None:
        kpis = worker.kpis()
        c = kpis["counters"]
        return kpis if sum(c["events"].values()) + c["duplicates"] == 3 * applied else None

    kpis = wait_until(settled, timeout=60)
    counted = {k: n for k, n in kpis["counters"]["events"].items() if n}
    assert counted == expected
    assert kpis["counters"]["duplicates"] == 2 * applied
    won_eur = [
        value
        for name, lab, value in kpis["series"]
        if name == "salespulse_sales_amount" and lab.get("window") == "24h" and lab.get("currency") == "EUR"
    ]
    # Salesforce's and Pipedrive's amounts from their payloads, HubSpot's from its API.
    assert sum(won_eur) == pytest.approx(48000.0 + 9500.0 + 25000.50)
    assert "read deals" in hubspot_api.calls and hubspot_api.calls.count("pipelines") == 1

    dead = records(broker.bootstrap, (DEADLETTER,))
    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert headers["salespulse.reason"] == b"unmappable" and headers["salespulse.vendor"] == b"hubspot"
    assert orjson.loads(dead[0].value)["subscriptionType"] == "company.creation"
    metrics = worker.metrics()
    assert 'salespulse_events_rejected_total{reason="unmappable"} 1.0' in metrics
    assert 'salespulse_webhook_requests_total{outcome="accepted",vendor="salesforce"} 3.0' in metrics
    assert 'salespulse_webhook_requests_total{outcome="unmappable",vendor="hubspot"} 1.0' in metrics


def test_a_delighted_update_replaces_the_answer_and_its_comment_but_the_response_counts_once(
    spawn_worker: Any, hubspot_api: FakeHubSpot
) -> None:
    worker = spawn_worker("surveys", **vendor_env(hubspot_api))
    worker.wait_ready()
    # Delighted sends the score first, then the comment in an update of the same response.
    comment = "پشتیبانی کند بود. " * 150  # 2,700 characters: cut at 2,000, never refused
    created = v.delighted("survey_response.created", 3, None, v.T0_S)
    updated = v.delighted("survey_response.updated", 5, comment, v.T0_S + 120)
    url = f"http://{worker.address}/webhooks/delighted"
    for body in (created, updated) * 3:
        status, answer = post(
            url, body, {"X-Delighted-Webhook-Signature": delighted_signature(DELIGHTED_KEY, body)}
        )
        assert status == 200, answer

    def settled() -> dict[str, Any] | None:
        kpis = worker.kpis()
        c = kpis["counters"]
        return kpis if sum(c["events"].values()) + c["duplicates"] == 6 else None

    kpis = wait_until(settled, timeout=60)
    assert kpis["counters"]["events"]["survey.answered"] == 2  # the answer and its update
    assert kpis["counters"]["duplicates"] == 4  # the redeliveries
    assert kpis["counters"]["comments_truncated"] == 1
    assert sum(kpis["counters"]["rejected"].values()) == 0
    nps = kpis["windows"]["24h"]["nps"]
    assert (nps["responses"], nps["detractors"]) == (1, 1), "one response, counted once"
    status, body = http(f"http://{worker.address}/customers/C-77")
    assert status == 200
    profile = orjson.loads(body)["nps"]
    assert profile["score"] == 5, "the update is the latest answer"
    assert profile["comment"] == comment[:2000]
    assert profile["response_id"] == "5435"
