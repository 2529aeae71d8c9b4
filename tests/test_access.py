"""Writes and customer-level reads need the token beyond loopback; probes stay open."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from typing import Any

import orjson

from salespulse.streams.endpoints.access import beyond_loopback, check
from salespulse.streams.tools.generator import GeneratorConfig, generate
from tests.conftest import FIXED_NOW

TOKEN = "t0ken-e"


def basic(password: str, user: str = "anyone") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_loopback_addresses_are_told_apart_from_the_rest() -> None:
    assert not any(beyond_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost"))
    assert all(beyond_loopback(h) for h in ("0.0.0.0", "::", "", "10.1.2.3", "worker.example"))


def test_with_no_token_loopback_is_open_and_anything_else_is_refused_naming_the_setting() -> None:
    assert check("", "127.0.0.1", "", "writing events") is None
    denied = check("", "0.0.0.0", "Bearer whatever", "writing events")
    assert denied is not None and denied.status == 403
    assert "SALESPULSE_INGEST_TOKEN" in denied.error and "writing events" in denied.error


def test_the_token_is_accepted_as_bearer_or_as_a_basic_password_and_nothing_else() -> None:
    assert check("tökén", "0.0.0.0", basic("tökén"), "x") is None
    for host in ("127.0.0.1", "0.0.0.0"):
        assert check(TOKEN, host, f"Bearer {TOKEN}", "x") is None
        assert check(TOKEN, host, basic(TOKEN), "x") is None
        assert check(TOKEN, host, basic(TOKEN, user=""), "x") is None
        for wrong in ("", "Bearer", f"Bearer {TOKEN}x", basic("nope"), "Basic !!!", f"Token {TOKEN}", TOKEN):
            denied = check(TOKEN, host, wrong, "x")
            assert denied is not None and denied.status == 401, wrong
            assert denied.headers["WWW-Authenticate"].startswith("Basic realm=")


def request(url: str, *, data: bytes | None = None, auth: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if auth:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_worker_beyond_loopback_without_a_token_refuses_writes_and_customer_reads(
    spawn_worker: Any,
) -> None:
    worker = spawn_worker("open", SALESPULSE_WEB_HOST="0.0.0.0")
    worker.wait_ready()
    base = f"http://{worker.address}"
    event = next(iter(generate(GeneratorConfig(seed=1, now=FIXED_NOW), 1)))
    status, body = request(f"{base}/events", data=orjson.dumps(event))
    assert status == 403 and b"SALESPULSE_INGEST_TOKEN" in body
    status, body = request(f"{base}/customers/C-000001")
    assert status == 403 and b"SALESPULSE_INGEST_TOKEN" in body
    for path in ("/metrics", "/healthz", "/readyz", "/kpis"):
        assert request(base + path)[0] == 200, path
    assert "beyond loopback" in worker.log_tail(200)


def test_with_a_token_a_browser_reads_a_customer_with_basic_auth(spawn_worker: Any) -> None:
    worker = spawn_worker("basic", SALESPULSE_WEB_HOST="0.0.0.0", SALESPULSE_INGEST_TOKEN=TOKEN)
    worker.wait_ready()
    url = f"http://{worker.address}/customers/C-unknown"
    assert request(url)[0] == 401
    assert request(url, auth=basic("wrong"))[0] == 401
    assert request(url, auth=basic(TOKEN))[0] == 404  # allowed; this worker holds no such customer
    assert request(url, auth=f"Bearer {TOKEN}")[0] == 404
