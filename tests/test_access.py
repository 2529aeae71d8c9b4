"""Every endpoint but the probes needs the token, on loopback too; with none set the worker
generates one that the local CLI finds; weak tokens stop the worker at start."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from salespulse.streams.endpoints.access import check
from salespulse.streams.pipeline.worker import check_state_dir
from salespulse.streams.settings import Settings, SettingsError
from salespulse.streams.tokens import client_token, stored_token
from salespulse.streams.tools.generator import GeneratorConfig, generate
from tests.conftest import FIXED_NOW, REPO
from tests.prometheus_process import query, running_prometheus

TOKEN = "t0ken-e-of-the-access-tests"
GUARDED = ("/kpis", "/progress", "/customers/C-000001", "/detractors", "/report", "/table/state")


def basic(password: str, user: str = "anyone") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_the_token_is_accepted_as_bearer_or_as_a_basic_password_and_nothing_else() -> None:
    assert check("tökén", basic("tökén"), "x") is None
    assert check(TOKEN, f"Bearer {TOKEN}", "x") is None
    assert check(TOKEN, basic(TOKEN), "x") is None
    assert check(TOKEN, basic(TOKEN, user=""), "x") is None
    for wrong in ("", "Bearer", f"Bearer {TOKEN}x", basic("nope"), "Basic !!!", f"Token {TOKEN}", TOKEN):
        denied = check(TOKEN, wrong, "GET /kpis")
        assert denied is not None and denied.status == 401, wrong
        assert "SALESPULSE_INGEST_TOKEN" in denied.error and "GET /kpis" in denied.error
        assert denied.headers["WWW-Authenticate"].startswith("Basic realm=")


def test_an_empty_token_admits_nobody() -> None:
    for given in ("", "Bearer ", basic("")):
        assert check("", given, "x") is not None


@pytest.mark.parametrize("setting", ["SALESPULSE_INGEST_TOKEN", "SALESPULSE_METRICS_TOKEN"])
@pytest.mark.parametrize("weak", ["9-chars!!", "change-me", "CHANGEME", "x" * 23])
def test_a_short_or_placeholder_token_is_refused_with_one_line_naming_the_setting(
    setting: str, weak: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({setting: weak})
    message = str(refused.value)
    assert setting in message and "\n" not in message and "token_urlsafe" in message
    assert Settings.from_env({setting: "y" * 24}) is not None


def test_the_generated_token_is_strong_private_kept_across_starts_and_across_a_wipe(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token = stored_token(data)
    path = data / "ingest-token"
    assert len(token) >= 40 and path.read_text() == token + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stored_token(data) == token, "a restart keeps the token clients hold"
    assert client_token(Settings(data_dir=data)) == token
    assert client_token(Settings(data_dir=data, ingest_token="z" * 30)) == "z" * 30
    settings = Settings(data_dir=data)
    check_state_dir(settings, {"cluster_id": "a", "topics": {}})
    (data / "snapshots").mkdir()
    (data / "snapshots" / "x.state").write_bytes(b"state")
    check_state_dir(settings, {"cluster_id": "b", "topics": {}})  # another broker: wiped
    assert not (data / "snapshots").exists()
    assert stored_token(data) == token


def test_a_stored_token_edited_into_a_placeholder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ingest-token").write_text("change-me\n")
    with pytest.raises(SettingsError, match="ingest-token is a placeholder"):
        stored_token(tmp_path)


def request(
    url: str, *, data: bytes | None = None, auth: str | None = None, method: str | None = None
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    if auth:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SALESPULSE_")}
    return subprocess.run(
        [sys.executable, "-m", "salespulse.streams", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**environ, **env},
        timeout=120,
    )


def test_with_no_token_set_everything_but_the_probes_answers_401_from_loopback_and_the_cli_finds_the_token(
    spawn_worker: Any,
) -> None:
    worker = spawn_worker("generated", SALESPULSE_INGEST_TOKEN="")
    worker.wait_ready()
    base = f"http://{worker.address}"
    token_file = worker.data_dir / "ingest-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = worker.token
    assert token_file.read_text() == token + "\n", "the file holds the token and nothing else"
    log = worker.log_tail(200)
    assert str(token_file) in log and token not in log, "the log says where the token is, not what"

    event = orjson.dumps(next(iter(generate(GeneratorConfig(seed=1, now=FIXED_NOW), 1))))
    for auth in (None, f"Bearer {TOKEN}", basic("wrong")):
        status, body = request(f"{base}/events", data=event, auth=auth)
        assert status == 401 and b"SALESPULSE_INGEST_TOKEN" in body, auth
        for path in GUARDED:
            status, _ = request(base + path, auth=auth)
            assert status == 401, (path, auth)
    for path in ("/metrics", "/healthz", "/readyz"):
        assert request(base + path)[0] == 200, path

    assert request(f"{base}/events", data=event, auth=f"Bearer {token}")[0] == 202
    assert request(f"{base}/kpis", auth=basic(token))[0] == 200, "a browser: any user, the token as password"
    assert request(f"{base}/customers/C-unknown", auth=f"Bearer {token}")[0] == 404  # allowed; not held
    assert request(f"{base}/detractors", auth=f"Bearer {token}")[0] == 200

    # The CLI on the same machine, with no setting but the data dir, finds the token there.
    env = {"SALESPULSE_DATA_DIR": str(worker.data_dir)}
    shown = cli("kpis", "--workers", worker.address, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert orjson.loads(shown.stdout)["partitions"] == [0, 1, 2, 3]
    elsewhere = cli(
        "kpis", "--workers", worker.address, env={"SALESPULSE_DATA_DIR": str(worker.data_dir / "x")}
    )
    assert elsewhere.returncode != 0
    assert "refused /kpis (401)" in elsewhere.stderr and "SALESPULSE_INGEST_TOKEN" in elsewhere.stderr
    wrong = cli("detractors", "--workers", worker.address, env={"SALESPULSE_INGEST_TOKEN": "w" * 30})
    assert wrong.returncode != 0 and "SALESPULSE_INGEST_TOKEN" in wrong.stderr

    worker.stop()
    again = spawn_worker("generated", SALESPULSE_INGEST_TOKEN="")
    again.wait_ready()
    assert again.token == token, "a restart keeps the token"


def test_a_configured_token_works_whatever_the_bind_address(spawn_worker: Any) -> None:
    worker = spawn_worker("basic", SALESPULSE_WEB_HOST="0.0.0.0", SALESPULSE_INGEST_TOKEN=TOKEN)
    worker.wait_ready()
    url = f"http://{worker.address}/customers/C-unknown"
    assert request(url)[0] == 401
    assert request(url, auth=basic("wrong"))[0] == 401
    assert request(url, auth=basic(TOKEN))[0] == 404  # allowed; this worker holds no such customer
    assert request(url, auth=f"Bearer {TOKEN}")[0] == 404
    assert not (worker.data_dir / "ingest-token").exists(), "a configured token is not stored"


def test_a_metrics_token_protects_metrics_and_only_metrics(spawn_worker: Any) -> None:
    metrics_token = "m" * 32
    worker = spawn_worker("metrics", SALESPULSE_METRICS_TOKEN=metrics_token)
    worker.wait_ready()
    base = f"http://{worker.address}"
    assert request(f"{base}/metrics")[0] == 401
    assert request(f"{base}/metrics", auth=f"Bearer {worker.token}")[0] == 401, "the ingest token is not it"
    status, body = request(f"{base}/metrics", auth=f"Bearer {metrics_token}")
    assert status == 200 and b"salespulse_" in body
    assert worker.metrics().startswith("#")
    assert request(f"{base}/kpis", auth=f"Bearer {metrics_token}")[0] == 401
    assert request(f"{base}/healthz")[0] == 200


def test_prometheus_scrapes_a_metrics_token_from_its_credentials_file(
    spawn_worker: Any, tmp_path: Path
) -> None:
    metrics_token = "p" * 40
    worker = spawn_worker("scraped", SALESPULSE_METRICS_TOKEN=metrics_token)
    worker.wait_ready()
    credentials = tmp_path / "metrics-token"
    credentials.write_text(metrics_token + "\n")
    with running_prometheus(tmp_path, [worker.address], [], credentials_file=credentials) as base:
        (up,) = query(base, 'up{job="salespulse"}')
        assert up["value"][1] == "1", "the scrape with the token was accepted"
        assert query(base, "salespulse_partitions_owned"), "and its samples are in"


@pytest.mark.parametrize("weak", ["nine-char", "change-me"])
def test_a_worker_with_a_weak_token_stops_at_start_with_a_clear_error(spawn_worker: Any, weak: str) -> None:
    worker = spawn_worker(f"weak-{weak}", SALESPULSE_INGEST_TOKEN=weak)
    assert worker.process is not None
    code = worker.process.wait(60)
    assert code != 0
    assert "SALESPULSE_INGEST_TOKEN" in worker.log_tail(), worker.log_tail()
    assert "Traceback" not in worker.log_tail()
