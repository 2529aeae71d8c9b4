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
from decimal import Decimal
from typing import Any

import orjson
import pytest
from aiohttp import web

from salespulse.schemas.topics import DEADLETTER, INPUT_TOPICS
from salespulse.streams.endpoints.connectors.delighted import signature as delighted_signature
from salespulse.streams.endpoints.connectors.hubspot import signature_v3
from salespulse.streams.endpoints.connectors.typeform import signature as typeform_signature
from salespulse.streams.tools.broker import free_port
from tests import vendor_payloads as v
from tests.conftest import forecast_numbers, http, records, wait_until

PUBLIC = "https://sp.example.com"
HS_SECRET = "hs-client-secret"
PD_USER, PD_PASSWORD = "pipedrive-hook", "pd-pass"
DELIGHTED_KEY = "dl-api-key"
TF_SECRET = "tf-secret"
SF_SECRET = "7c1e5a9f3b2d8e6a4c0f1b3d5e7a9c2f"
#: Where each vendor posts: Salesforce's endpoint URL ends with SalesPulse's secret.
PATHS = {"salesforce": f"salesforce/{SF_SECRET}"}


def _stage(sid: str, label: str, closed: str, probability: str) -> dict[str, Any]:
    return {"id": sid, "label": label, "metadata": {"isClosed": closed, "probability": probability}}


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
        #: (from, to) -> object id -> its associations, as HubSpot lists them (in no set order).
        self.links: dict[tuple[str, str], dict[str, list[tuple[int, int, str | None]]]] = {
            ("deals", "companies"): {"901": [(301, 5, "Primary")]}
        }
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def pipelines(self, request: web.Request) -> web.Response:
        self.calls.append("pipelines")
        pipeline = {
            "id": "7700",
            "label": "Enterprise",
            "stages": [
                _stage("2001", "Qualified", "false", "0.2"),
                _stage("2002", "Proposal", "false", "0.6"),
                _stage("2003", "Won", "true", "1.0"),
                _stage("2004", "Lost", "true", "0.0"),
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
        pair = (request.match_info["from"], request.match_info["to"])
        self.calls.append(
            f"associations {pair[1]}" if pair[0] == "deals" else f"associations {'/'.join(pair)}"
        )
        body = await request.json()
        links = self.links.get(pair, {})
        results = [
            {
                "from": {"id": i["id"]},
                "to": [
                    {"toObjectId": target, "associationTypes": [{"typeId": type_id, "label": label}]}
                    for target, type_id, label in links[i["id"]]
                ],
            }
            for i in body["inputs"]
            if i["id"] in links
        ]
        return web.json_response({"status": "COMPLETE", "results": results})

    def __enter__(self) -> FakeHubSpot:
        app = web.Application()
        app.router.add_get("/crm/v3/pipelines/deals", self.pipelines)
        app.router.add_post("/crm/v3/objects/{kind}/batch/read", self.batch_read)
        app.router.add_post("/crm/v4/associations/{from}/{to}/batch/read", self.associations)
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
        "SALESPULSE_SALESFORCE_SECRET": SF_SECRET,
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
            PATHS["salesforce"],
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
        ("salesforce", "SALESPULSE_SALESFORCE_SECRET and SALESPULSE_SALESFORCE_ORG_ID"),
        (f"salesforce/{SF_SECRET}", "SALESPULSE_SALESFORCE_SECRET"),
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
            status, answer = post(
                f"{base}/{PATHS.get(vendor, vendor)}", body, headers or hubspot_headers(body)
            )
            assert status == 200, (vendor, answer)
            if vendor == "salesforce":
                assert b"<Ack>true</Ack>" in answer and b"notificationsResponse" in answer
    status, answer = post(f"{base}/hubspot", unmappable, hubspot_headers(unmappable))
    assert status == 200 and orjson.loads(answer)["unmappable"] == 1

    expected = {
        # HubSpot: created once, moved to an open stage (a version), won once; one lead.
        # Salesforce: won, lost, opened, lead. Pipedrive: opened, won, lead.
        # Delighted and Typeform: one answer each.
        "opportunity.created": 1 + 1 + 1,
        "opportunity.updated": 1,
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
        Decimal(value)  # money in /kpis is an exact decimal string
        for name, lab, value in kpis["series"]
        if name == "salespulse_sales_amount" and lab.get("window") == "24h" and lab.get("currency") == "EUR"
    ]
    # Salesforce's and Pipedrive's amounts from their payloads, HubSpot's from its API, exactly.
    assert sum(won_eur) == Decimal("48000") + Decimal("9500") + Decimal("25000.50")
    assert "read deals" in hubspot_api.calls and hubspot_api.calls.count("pipelines") == 1

    dead = records(broker.bootstrap, (DEADLETTER,))
    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert headers["salespulse.reason"] == b"unmappable" and headers["salespulse.vendor"] == b"hubspot"
    assert (headers["salespulse.module"], headers["salespulse.record"]) == (b"company", b"301")
    assert headers["salespulse.cause"] == b"unknown_object"
    assert orjson.loads(dead[0].value)["subscriptionType"] == "company.creation"
    metrics = worker.metrics()
    assert 'salespulse_events_rejected_total{reason="unmappable"} 1.0' in metrics
    assert 'salespulse_webhook_requests_total{outcome="accepted",vendor="salesforce"} 3.0' in metrics
    assert 'salespulse_webhook_requests_total{outcome="unmappable",vendor="hubspot"} 1.0' in metrics
    dead_series = 'salespulse_connector_records_dead_total{connector="hubspot",module="other",'
    assert f'{dead_series}reason="unknown_object"}} 1.0' in metrics


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


@pytest.mark.slow
def test_a_salesforce_message_without_the_secret_or_with_a_wrong_one_is_refused_and_with_it_counts(
    broker: Any, spawn_worker: Any, hubspot_api: FakeHubSpot
) -> None:
    upgraded = spawn_worker("org-only", SALESPULSE_SALESFORCE_ORG_ID=v.SF_ORG)  # set up before the secret
    upgraded.wait_ready()
    envelope = v.salesforce_envelope(v.SF_WON, v.SF_LEAD)  # the right organisation id
    xml = {"Content-Type": "text/xml"}
    status, body = post(f"http://{upgraded.address}/webhooks/salesforce", envelope, xml)
    assert status == 404 and b"SALESPULSE_SALESFORCE_SECRET" in body
    upgraded.stop()  # one worker owns every partition below
    worker = spawn_worker("salesforce", SALESPULSE_TEST_LOGLEVEL="info", **vendor_env(hubspot_api))
    worker.wait_ready()
    base = f"http://{worker.address}/webhooks/salesforce"
    wrong = "0" * len(SF_SECRET)
    for url in (base, f"{base}/{wrong}", f"{base}/{SF_SECRET[:-1]}", f"{base}/{SF_SECRET}x"):
        status, body = post(url, envelope, xml)
        assert status == 401 and b"SALESPULSE_SALESFORCE_SECRET" in body, (url, body)
        assert wrong.encode() not in body
    assert records(broker.bootstrap, (*INPUT_TOPICS, DEADLETTER)) == []

    status, body = post(f"{base}/{SF_SECRET}", envelope, xml)
    assert status == 200 and b"<Ack>true</Ack>" in body
    counted = wait_until(lambda: (e := worker.kpis()["counters"]["events"])["deal.won"] and e["lead.created"])
    assert counted == 1
    too_large = v.salesforce_envelope(v.SF_LEAD + " " * (1024 * 1024))
    assert post(f"{base}/{SF_SECRET}", too_large, xml)[0] == 413  # the XML limit is 1 MiB
    metrics = worker.metrics()
    assert 'salespulse_webhook_requests_total{outcome="unauthorized",vendor="salesforce"} 4.0' in metrics
    worker.stop()
    log = worker.log_path.read_text(errors="replace")
    assert "INFO" in log  # the worker logged at info, where an access log would write
    assert SF_SECRET not in log and wrong not in log, "no log line of the worker names the secret"


def test_each_vendors_unmappable_payload_goes_to_the_dead_letters_and_later_good_payloads_still_count(
    broker: Any, spawn_worker: Any, hubspot_api: FakeHubSpot
) -> None:
    worker = spawn_worker("dead", **vendor_env(hubspot_api))
    worker.wait_ready()
    base = f"http://{worker.address}/webhooks"
    no_amount = v.SF_WON.replace("<sf:Amount>48000.0</sf:Amount>", "")
    rials = {**v.PD_WON, "id": 4712, "value": 2_500_000_000_000_000, "currency": "IRR"}  # over the 1e15 limit
    orphan = {**v.PD_WON, "id": 4713, "org_id": None}  # the person is the customer
    no_person = orjson.loads(v.delighted("survey_response.created", 9, None, v.T0_S))
    no_person["event_data"].update(person=None, person_properties={}, id="5436")
    no_score = orjson.loads(v.typeform("tok-7", 8, "C-7"))
    no_score["form_response"]["answers"] = []
    pd = basic(PD_USER, PD_PASSWORD)

    def dl_headers(body: bytes) -> dict[str, str]:
        return {"X-Delighted-Webhook-Signature": delighted_signature(DELIGHTED_KEY, body)}

    def tf_headers(body: bytes) -> dict[str, str]:
        return {"Typeform-Signature": typeform_signature(TF_SECRET, body)}

    bad = {
        "hubspot": orjson.dumps([v.hubspot_event("deal.creation", 902, 21, v.T0_MS)]),  # not in the CRM
        "salesforce": v.salesforce_envelope(no_amount),
        "pipedrive": v.pipedrive("change", "deal", rials, {"status": "open"}),
        "delighted": orjson.dumps(no_person),
        "typeform": orjson.dumps(no_score),
    }
    good = {
        "hubspot": orjson.dumps([v.hubspot_event("contact.creation", 501, 22, v.T0_MS)]),
        "salesforce": v.salesforce_envelope(v.SF_LEAD),
        "pipedrive": v.pipedrive("change", "deal", orphan, {"status": "open"}),
        "delighted": v.delighted("survey_response.created", 10, None, v.T0_S),
        "typeform": v.typeform("tok-8", 10, "C-8"),
    }
    headers = {
        "hubspot": hubspot_headers,
        "salesforce": lambda body: {"Content-Type": "text/xml"},
        "pipedrive": lambda body: pd,
        "delighted": dl_headers,
        "typeform": tf_headers,
    }
    for payloads in (bad, good):
        for vendor, body in payloads.items():
            status, answer = post(f"{base}/{PATHS.get(vendor, vendor)}", body, headers[vendor](body))
            assert status == 200, (vendor, answer)

    def all_applied() -> dict[str, Any] | None:
        kpis = worker.kpis()
        return kpis if sum(kpis["counters"]["events"].values()) == 5 else None

    kpis = wait_until(all_applied)
    counted = {t: n for t, n in kpis["counters"]["events"].items() if n}
    assert counted == {"lead.created": 2, "deal.won": 1, "survey.answered": 2}
    dead = {
        h["salespulse.vendor"].decode(): (
            h["salespulse.module"],
            h["salespulse.record"],
            h["salespulse.cause"],
        )
        for h in (dict(r.headers) for r in records(broker.bootstrap, (DEADLETTER,)))
    }
    assert dead == {
        "hubspot": (b"deal", b"902", b"unreadable"),
        "salesforce": (b"Opportunity", b"0065g00000AbCdEAAV", b"unreadable"),
        "pipedrive": (b"deal", b"4712", b"contract"),
        "delighted": (b"survey_response", b"5436", b"unreadable"),
        "typeform": (b"form_response", b"tok-7", b"unreadable"),
    }
    metrics = worker.metrics()
    for vendor, (module, _, cause) in dead.items():
        line = f'salespulse_connector_records_dead_total{{connector="{vendor}",module="{module.decode()}",'
        assert f'{line}reason="{cause.decode()}"}} 1.0' in metrics, vendor
    assert 'salespulse_connector_fallbacks_total{connector="pipedrive",reason="contact"} 1.0' in metrics
    assert 'salespulse_connector_fallbacks_total{connector="pipedrive",reason="deal"} 0.0' in metrics


def test_hubspot_won_deals_name_their_company_else_their_contacts_else_their_contact_else_themselves(
    broker: Any, spawn_worker: Any, hubspot_api: FakeHubSpot
) -> None:
    won = {"amount": "1000", "deal_currency_code": "EUR", "hubspot_owner_id": "77", "dealtype": "newbusiness"}
    hubspot_api.deals.update({deal: dict(won) for deal in ("902", "903", "904")})
    hubspot_api.companies["302"] = {"country": "DE"}
    hubspot_api.links[("deals", "contacts")] = {
        "902": [(612, 3, None), (502, 3, None)],  # two contacts: the lowest id, whatever the order
        "903": [(503, 3, None)],
    }
    hubspot_api.links[("contacts", "companies")] = {"502": [(399, 1, None), (302, 1, "Primary")]}
    worker = spawn_worker("chain", **vendor_env(hubspot_api))
    worker.wait_ready()
    delivery = orjson.dumps(
        [
            v.hubspot_event(
                "deal.propertyChange",
                int(deal),
                30 + i,
                v.T0_MS,
                propertyName="dealstage",
                propertyValue="2003",
            )
            for i, deal in enumerate(("901", "902", "903", "904"))
        ]
    )
    for _ in range(2):  # a redelivery names the same customers
        status, answer = post(
            f"http://{worker.address}/webhooks/hubspot", delivery, hubspot_headers(delivery)
        )
        assert status == 200, answer

    customers = {}
    for record in records(broker.bootstrap, ("crm.deals",)):
        event = orjson.loads(record.value)
        customers.setdefault(event["data"]["deal_id"], set()).add(event["data"]["customer_id"])
        assert record.key == event["data"]["customer_id"].encode()
    assert customers == {"901": {"301"}, "902": {"302"}, "903": {"503"}, "904": {"deal:904"}}
    metrics = worker.metrics()
    for reason in ("contact_organisation", "contact", "deal"):
        assert f'salespulse_connector_fallbacks_total{{connector="hubspot",reason="{reason}"}} 2.0' in metrics


def test_a_stage_move_an_amount_change_and_a_slip_are_whole_versions_and_the_close_names_the_opportunity(
    broker: Any, spawn_worker: Any, hubspot_api: FakeHubSpot, tmp_path: Any
) -> None:
    """The same deal's life in HubSpot, Salesforce and Pipedrive, one change a day (so the
    forecast as of each day's end shows each): moved to a later stage, its amount raised, its
    close slipped from December to January, then won. Every delivery comes twice; each change
    is one ``opportunity.updated`` carrying the whole state."""
    mapping = tmp_path / "connectors.yaml"
    mapping.write_text(
        "stages:\n"
        "  hubspot: {'2002': Proposal/Price Quote}\n"  # the file's name wins over the pipeline's label
        "  pipedrive: {'1': Qualification, '3': Proposal/Price Quote}\n"
    )
    worker = spawn_worker("versions", SALESPULSE_CONNECTORS=str(mapping), **vendor_env(hubspot_api))
    worker.wait_ready()
    base = f"http://{worker.address}/webhooks"
    hubspot_api.deals["901"].update(
        dealstage="2001",
        amount="20000",
        closedate="2026-12-10T00:00:00Z",
        hs_deal_stage_probability="0.2",
        hs_manual_forecast_category="PIPELINE",
    )
    proposal = {"stage": "Proposal/Price Quote", "expected_close": "2026-12-10", "amount": 20000.0}
    stage_move = {
        "hubspot": {**proposal, "probability": 60, "forecast_category": "best_case"},
        "salesforce": {**proposal, "probability": 80, "forecast_category": "commit"},
        "pipedrive": {**proposal, "probability": 60},
    }
    changes = [{}, {"amount": 24000.0}, {"expected_close": "2027-01-15"}]  # after the stage move
    # The stage move, the amount, the slip, the win: the days before the workers' clock.
    at = [f"2026-11-{22 + step}T10:10:00" for step in range(4)]

    def hubspot(step: int) -> bytes:
        deal = hubspot_api.deals["901"]
        when = v.T0_MS + 10 * 60_000 - (4 - step) * 86_400_000  # T0 is 2026-11-26T10:00

        def changed(name: str, value: str, event_id: int) -> dict[str, Any]:
            deal[name] = value
            return v.hubspot_event(
                "deal.propertyChange", 901, event_id, when, propertyName=name, propertyValue=value
            )

        if step == 0:  # one save, two property changes: one version
            deal.update(hs_deal_stage_probability="0.6")
            events = [
                changed("dealstage", "2002", 40),
                changed("hs_manual_forecast_category", "BEST_CASE", 41),
            ]
        else:
            name, value = [("amount", "24000"), ("closedate", "2027-01-15T00:00:00Z"), ("dealstage", "2003")][
                step - 1
            ]
            events = [changed(name, value, 41 + step)]
        return orjson.dumps(events)

    salesforce_fields: dict[str, str] = {}

    def salesforce(step: int) -> bytes:
        salesforce_fields.update(
            [
                {"StageName": "Proposal/Price Quote", "Probability": "80", "ForecastCategoryName": "Commit"},
                {"Amount": "24000.0"},
                {"CloseDate": "2027-01-15"},
                {"StageName": "Closed Won", "IsClosed": "true", "IsWon": "true", "Probability": "100"},
            ][step]
        )
        modified = f"{at[step]}.000Z"
        return v.salesforce_envelope(v.sf_version(**salesforce_fields, LastModifiedDate=modified))

    pipedrive_deal = {
        **v.PD_PIPELINE,
        "add_time": "2026-11-20T09:00:00Z",
        "update_time": "2026-11-20T09:00:00Z",
    }

    def pipedrive(step: int) -> bytes:
        now, previous = [
            ({"stage_id": 3, "probability": 60}, {"stage_id": 1, "probability": 20}),
            ({"value": 24000}, {"value": 20000}),
            ({"expected_close_date": "2027-01-15"}, {"expected_close_date": "2026-12-10"}),
            ({"status": "won", "won_time": f"{at[3]}Z"}, {"status": "open"}),
        ][step]
        previous["update_time"] = pipedrive_deal["update_time"]
        pipedrive_deal.update(now, update_time=f"{at[step]}Z")
        return v.pipedrive("change", "deal", pipedrive_deal, previous)

    headers = {
        "hubspot": hubspot_headers,
        "salesforce": lambda body: {"Content-Type": "text/xml"},
        "pipedrive": lambda body: basic(PD_USER, PD_PASSWORD),
    }
    builders = {"hubspot": hubspot, "salesforce": salesforce, "pipedrive": pipedrive}
    for step in range(4):
        for vendor, build in builders.items():
            body = build(step)
            for _ in range(2):  # every delivery is redelivered
                status, answer = post(f"{base}/{PATHS.get(vendor, vendor)}", body, headers[vendor](body))
                assert status == 200, (vendor, step, answer)

    # Per post: HubSpot one event a step; Salesforce an opening copy beside each open
    # version, then the win; Pipedrive one event a step.
    sent = 2 * (4 + (3 * 2 + 1) + 4)

    def settled() -> dict[str, Any] | None:
        kpis = worker.kpis()
        c = kpis["counters"]
        return kpis if sum(c["events"].values()) + c["duplicates"] == sent else None

    kpis = wait_until(settled, timeout=60)
    counted = {k: n for k, n in kpis["counters"]["events"].items() if n}
    assert counted == {"opportunity.updated": 3 * 3, "opportunity.created": 1, "deal.won": 3}
    assert kpis["counters"]["duplicates"] == sent - 13

    owners = {"hubspot": "77", "salesforce": "0055g00000Rep07AAA", "pipedrive": "12597982"}
    ids = {"hubspot": "901", "salesforce": "0065g00000PipeXAAV", "pipedrive": "4720"}
    versions: dict[str, dict[str, dict[str, Any]]] = {vendor: {} for vendor in builders}
    for record in records(broker.bootstrap, ("crm.leads",)):
        event = orjson.loads(record.value)
        if event["type"] == "opportunity.updated":
            assert record.key == event["data"]["opportunity_id"].encode()
            versions[event["source"]][event["event_id"]] = event
    for vendor, found in versions.items():
        state = {
            "opportunity_id": ids[vendor],
            "rep_id": owners[vendor],
            "region": "unknown",
            "currency": "EUR",
            **stage_move[vendor],
        }
        expected = []
        for step, change in enumerate(changes):
            state = {**state, **change}
            expected.append((at[step], state))
        got = sorted((e["occurred_at"].replace(".000Z", "Z")[:19], e["data"]) for e in found.values())
        assert got == expected, vendor
    closes = {
        event["source"]: event["data"]
        for event in (orjson.loads(r.value) for r in records(broker.bootstrap, ("crm.deals",)))
    }
    assert {vendor: data["opportunity_id"] for vendor, data in closes.items()} == ids
    assert {vendor: data["amount"] for vendor, data in closes.items()} == dict.fromkeys(ids, 24000.0)

    # What the forecast makes of each deal, as of the end of each day of its life.
    def numbers(period: str, day: int, vendor: str) -> tuple[float, ...]:
        as_of = v.T0_MS // 1000 + (day - 26) * 86_400 + 14 * 3600 - 1  # T0 is 2026-11-26T10:00
        return forecast_numbers(worker.forecast(period=period, by="rep", as_of=as_of), owners[vendor], "EUR")

    def life(vendor: str) -> list[tuple[float, ...]]:
        return [
            numbers("2026-12", 22, vendor),  # the stage move
            numbers("2026-12", 23, vendor),  # the amount raised
            numbers("2026-12", 24, vendor) + numbers("2027-01", 24, vendor),  # the slip into January
            numbers("2027-01", 25, vendor) + numbers("2026-11", 25, vendor),  # won on 25 November
        ]

    def lived(vendor: str) -> list[tuple[float, ...]]:
        moved = stage_move[vendor]
        commit = 1 if moved.get("forecast_category", "commit") == "commit" else 0  # else the stage's
        share = moved["probability"] / 100
        zero = (0,) * 5
        return [
            (0, 20000 * commit, 20000, 20000, 20000 * share),
            (0, 24000 * commit, 24000, 24000, 24000 * share),
            (*zero, 0, 24000 * commit, 24000, 24000, 24000 * share),
            (*zero, 24000, 24000, 24000, 0, 0),
        ]

    wait_until(lambda: all(life(vendor) == lived(vendor) for vendor in builders), timeout=30)
