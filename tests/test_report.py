"""The KPI digest, end to end with real parts: broker, worker, SMTP server, Chromium.

One worker (fixed clock 2026-11-26T12:00:00Z) gets 5,000 generated events spread over
eight weeks, so the previous period and every trend point hold data. The tests then check:
- (a) the digest that a real SMTP server (aiosmtpd) receives: its MIME structure, real
  PNG charts, and numbers equal to the worker's ``/kpis`` and ``/kpis?at=``;
- (b) that ``digest.html`` renders in headless Chromium without console errors;
- (c) an unreachable SMTP server: the CLI exits non-zero with a clear message, and the
  schedule retries, logs the failure and keeps the digest until a later run delivers it.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import ssl
import struct
import subprocess
import sys
from decimal import Decimal
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import orjson
import pytest
import trustme
from aiosmtpd.controller import Controller
from babel.numbers import get_currency_precision

from salespulse.streams.endpoints.producer import EventProducer
from salespulse.streams.report.command import every_seconds, report_command
from salespulse.streams.report.digest import build_digest
from salespulse.streams.report.errors import DigestDeliveryError, ReportError
from salespulse.streams.report.formatting import COUNT, PERCENT, SCORE, format_change, format_value
from salespulse.streams.report.mail import send_digest
from salespulse.streams.report.outbox import pending_messages
from salespulse.streams.report.schedule import run_schedule
from salespulse.streams.report.smtp import SmtpSettings
from salespulse.streams.report.windows import DIGEST_WINDOWS, RETENTION_SECONDS, oldest_reach
from salespulse.streams.settings import Settings
from salespulse.streams.tools.broker import free_port, start_broker
from salespulse.streams.tools.generator import GeneratorConfig, generate
from tests.chromium import console_errors, screenshot
from tests.conftest import FIXED_NOW, REPO, WorkerProcess, http, wait_until

NOW = int(FIXED_NOW.timestamp())
WEEK = 7 * 86400
EVENTS = 5000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One broker and one worker with every event applied, shared by the module.

    It is built from the same parts as conftest's ``broker``/``spawn_worker``/``producer``
    fixtures, at module scope, so the worker starts once and not once per test.
    """
    broker = start_broker()
    running: WorkerProcess | None = None
    try:
        running = WorkerProcess(broker.bootstrap, tmp_path_factory.mktemp("report") / "w1").start()
        running.wait_ready()
        config = GeneratorConfig(seed=11, now=FIXED_NOW, spread_days=56)
        with EventProducer(Settings.from_env({"SALESPULSE_BROKER": broker.bootstrap})) as producer:
            producer.send_many(generate(config, EVENTS))

        def applied() -> bool:
            progress = running.progress()
            return progress["events"] + progress["duplicates"] == EVENTS

        wait_until(applied, timeout=60)
        yield running
    finally:
        if running is not None:
            running.kill()
        broker.stop()


class Inbox:
    """An aiosmtpd handler that keeps every message it is given and refuses ``unknown@``."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("unknown@"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def messages(self) -> list[EmailMessage]:
        out = []
        for envelope in self.envelopes:
            msg = message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(msg, EmailMessage)
            out.append(msg)
        return out


def smtp_server(port: int, **tls: Any) -> tuple[Controller, Inbox]:
    """A local SMTP server; ``ssl_context=`` for implicit TLS, ``tls_context=`` for STARTTLS."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **tls)
    controller.start()
    return controller, inbox


@pytest.fixture(scope="module")
def certificate_authority(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """A CA of the test's own and a server context with its certificate for 127.0.0.1: a
    client that verifies against the CA's file trusts the server, one that uses the system's
    CAs does not."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    ca_file = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server, ca_file


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13, "PNG without an IHDR chunk first"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def kpis_at(worker: Any, at: int) -> dict[str, Any]:
    status, body = http(f"http://{worker.address}/kpis?at={at}")
    assert status == 200, body
    return dict(orjson.loads(body))


def expected_lines(now: dict[str, Any], before: dict[str, Any]) -> list[str]:
    """Lines the text part must hold, computed from /kpis and /kpis?at= alone."""
    leads, prev_leads = now["leads"]["leads"], before["leads"]["leads"]
    nps, prev_nps = now["nps"]["nps"], before["nps"]["nps"]
    won, prev_won = now["sales"]["deals_won"], before["sales"]["deals_won"]
    # The digest's formats, spelled out once here so a format change is a test failure.
    assert format_value(COUNT, leads) == f"{leads:,.0f}"
    assert format_value(SCORE, nps) == f"{nps:+.1f}"
    assert format_value(PERCENT, now["sales"]["win_rate"]) == f"{now['sales']['win_rate']:.1%}"
    return [
        f"Leads: {leads:,.0f}  ({format_change(COUNT, leads, prev_leads)} vs previous 7d)",
        f"NPS: {nps:+.1f}  ({format_change(SCORE, nps, prev_nps)} vs previous 7d)",
        f"Deals won: {won:,.0f}  ({format_change(COUNT, won, prev_won)} vs previous 7d)",
        f"Win rate: {now['sales']['win_rate']:.1%}",
        f"Customers acquired: {now['acquisition']['customers_acquired']:,.0f}",
        f"Lead conversion: {now['acquisition']['conversion']:.1%}",
        f"Customers engaged: {now['engagement']['customers_engaged']:,.0f}",
        f"eNPS: {now['enps']['enps']:+.1f}",
        f"Expansion rate: {now['expansion']['expansion_rate']:.1%}",
        *(  # /kpis writes amounts as exact decimal strings; the digest shows them in full, in
            # the currency's CLDR digits (IRR: none)
            f"Sales amount ({currency}): {Decimal(amount):,.{get_currency_precision(currency)}f}"
            for currency, amount in now["sales"]["amount_by_currency"].items()
        ),
    ]


def test_emailed_digest_has_charts_and_the_numbers_of_kpis(worker: Any, tmp_path: Path) -> None:
    port = free_port()
    controller, inbox = smtp_server(port)
    try:
        smtp = SmtpSettings(host="127.0.0.1", port=port, sender="salespulse@example.com", timeout=10)
        report_command(
            tmp_path, window="7d", workers=worker.address, email="ops@example.com, cfo@example.com", smtp=smtp
        )
    finally:
        controller.stop()

    assert len(inbox.envelopes) == 1
    envelope = inbox.envelopes[0]
    assert envelope.mail_from == "salespulse@example.com"
    assert sorted(envelope.rcpt_tos) == ["cfo@example.com", "ops@example.com"]
    assert pending_messages(tmp_path) == []  # delivered, so nothing is left in the outbox

    msg = inbox.messages()[0]
    assert msg.get_content_type() == "multipart/alternative"
    assert "7d digest" in str(msg["Subject"])
    parts = list(msg.walk())
    types = [p.get_content_type() for p in parts]
    assert "text/plain" in types and "text/html" in types and "multipart/related" in types
    text = next(p for p in parts if p.get_content_type() == "text/plain").get_content().replace("\r\n", "\n")
    page = next(p for p in parts if p.get_content_type() == "text/html").get_content()

    images = [p for p in parts if p.get_content_type() == "image/png"]
    assert len(images) >= 5
    for image in images:
        data = image.get_content()
        width, height = png_size(data)
        assert width > 100 and height > 100, (image["Content-ID"], width, height)
        content_id = str(image["Content-ID"]).strip("<>")
        assert f'src="cid:{content_id}"' in page, f"{content_id} is not shown in the HTML"
        assert image.get_content_disposition() == "inline"
    names = {str(p["Content-ID"]).strip("<>").split("@")[0] for p in images}
    assert {"nps-trend", "sales-by-region", "leads-by-source", "conversion-by-rep", "price-index"} <= names

    # The numbers are /kpis now and /kpis?at= one window earlier, formatted as the digest does.
    now = worker.kpis()
    assert now["clock"] == NOW
    before = kpis_at(worker, NOW - WEEK)
    assert before["clock"] == NOW - WEEK
    for line in expected_lines(now["windows"]["7d"], before["windows"]["7d"]):
        assert line in text, f"{line!r} not in the text part:\n{text}"
        value = line.split(": ", 1)[1].split("  (")[0]
        assert value in page, f"{value!r} not in the HTML part"
    assert text == (tmp_path / "digest.txt").read_text()


def test_digest_html_renders_in_headless_chromium(worker: Any, tmp_path: Path) -> None:
    report_command(tmp_path, window="7d", workers=[worker.address])
    page = tmp_path / "digest.html"
    source = page.read_text()
    # Self-contained: every image is a data: URI of a PNG written next to it; nothing remote.
    refs = re.findall(r'(?:src|href)="([^"]*)"', source)
    assert len(refs) == 6 and all(r.startswith("data:image/png;base64,") for r in refs), refs
    on_disk = {p.read_bytes() for p in tmp_path.glob("*.png")}
    assert {base64.b64decode(r.split(",", 1)[1]) for r in refs} == on_disk
    assert "cid:" not in source

    shot = tmp_path / "screenshot.png"
    done = screenshot(page, shot, tmp_path / "chromium-profile", (1200, 2000))
    assert done.returncode == 0, done.stderr[-3000:]
    console = console_errors(done.stderr)
    assert not console, "\n".join(console)
    assert shot.exists(), done.stderr[-3000:]
    data = shot.read_bytes()
    assert png_size(data) == (1200, 2000)
    assert len(data) > 20_000, f"screenshot is only {len(data)} bytes: a blank page?"
    assert chart_pixels(shot) > 20_000, "the charts did not render"


def chart_pixels(screenshot: Path) -> int:
    """Pixels in the charts' bar blue: text and rules alone have a few thousand at most."""
    from matplotlib.image import imread

    rgb = (imread(screenshot)[:, :, :3] * 255).astype(int)
    return int((abs(rgb - [0x2B, 0x6C, 0xB0]).max(axis=2) <= 8).sum())


def mail_with_the_cli(out: Path, worker: Any, port: int, retries: int, **smtp: str) -> Any:
    """``salespulse report --email ops@example.com`` in a subprocess, to an SMTP server on ``port``."""
    env = {
        **os.environ,
        "SALESPULSE_SMTP_HOST": "127.0.0.1",
        "SALESPULSE_SMTP_PORT": str(port),
        "SALESPULSE_SMTP_FROM": "salespulse@example.com",
        **smtp,
    }
    command = [sys.executable, "-m", "salespulse.streams", "report", "--out", str(out), "--workers"]
    return subprocess.run(
        [*command, worker.address, "--email", "ops@example.com", "--retries", str(retries)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def test_cli_exits_non_zero_with_a_clear_message_when_smtp_is_unreachable(
    worker: Any, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens here
    done = mail_with_the_cli(tmp_path, worker, port, retries=2)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    want = f"could not deliver the digest to ops@example.com via 127.0.0.1:{port} after 2 attempts"
    assert want in done.stderr, done.stderr
    assert (tmp_path / "digest.html").exists()  # the report itself was still written
    assert len(pending_messages(tmp_path)) == 1  # and the unsent mail is kept for the next run


def test_report_command_raises_a_clear_error_when_smtp_is_unreachable(worker: Any, tmp_path: Path) -> None:
    port = free_port()
    smtp = SmtpSettings(host="127.0.0.1", port=port)
    with pytest.raises(ReportError) as caught:
        report_command(tmp_path, "24h", worker.address, "ops@example.com", retries=1, smtp=smtp)
    message = str(caught.value)
    assert message.startswith(
        f"could not deliver the digest to ops@example.com via 127.0.0.1:{port} after 1 attempt: "
    )
    assert f"kept in {tmp_path / 'outbox'}" in message
    assert len(pending_messages(tmp_path)) == 1 and (tmp_path / "digest.html").exists()


def test_the_cli_mails_the_digest_over_implicit_tls_verifying_the_server_against_the_given_ca(
    worker: Any, tmp_path: Path, certificate_authority: tuple[ssl.SSLContext, Path]
) -> None:
    server_context, ca_file = certificate_authority
    port = free_port()
    controller, inbox = smtp_server(port, ssl_context=server_context)
    try:
        done = mail_with_the_cli(
            tmp_path,
            worker,
            port,
            retries=1,
            SALESPULSE_SMTP_TLS="implicit",
            SALESPULSE_SMTP_CA_FILE=str(ca_file),
        )
    finally:
        controller.stop()
    assert done.returncode == 0, done.stderr
    assert "sent 1 digest(s) to ops@example.com" in done.stderr
    [msg] = inbox.messages()
    assert "7d digest" in str(msg["Subject"]) and msg.get_content_type() == "multipart/alternative"
    assert [e.rcpt_tos for e in inbox.envelopes] == [["ops@example.com"]]
    assert pending_messages(tmp_path) == []


def test_tls_to_the_smtp_server_verifies_its_certificate_with_starttls_and_implicit_alike(
    worker: Any, certificate_authority: tuple[ssl.SSLContext, Path]
) -> None:
    server_context, ca_file = certificate_authority
    digest = build_digest([worker.address], "24h")
    servers = {"implicit": {"ssl_context": server_context}, "starttls": {"tls_context": server_context}}
    for mode, tls in servers.items():
        port = free_port()
        controller, inbox = smtp_server(port, **tls)
        trusted = SmtpSettings(host="127.0.0.1", port=port, tls=mode, ca_file=str(ca_file), timeout=10)
        untrusted = SmtpSettings(host="127.0.0.1", port=port, tls=mode, timeout=10)  # the system's CAs
        try:
            assert send_digest(digest, ["ops@example.com"], trusted, retries=1) == 1
            with pytest.raises(DigestDeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
                send_digest(digest, ["ops@example.com"], untrusted, retries=1)
        finally:
            controller.stop()
        assert len(inbox.envelopes) == 1, mode  # the untrusted client sent nothing


def test_send_digest_raises_a_clear_error(worker: Any) -> None:
    port = free_port()
    digest = build_digest([worker.address], "24h")
    smtp = SmtpSettings(host="127.0.0.1", port=port)
    sleeps: list[float] = []
    with pytest.raises(DigestDeliveryError) as caught:
        send_digest(digest, ["ops@example.com"], smtp, retries=3, backoff=1.5, sleep=sleeps.append)
    assert str(caught.value).startswith(
        f"could not deliver the digest to ops@example.com via 127.0.0.1:{port} after 3 attempts: "
    )
    assert caught.value.attempts == 3 and sleeps == [1.5, 3.0]


def test_schedule_retries_logs_and_keeps_the_digest_until_delivered(
    worker: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    smtp = SmtpSettings(host="127.0.0.1", port=port, sender="salespulse@example.com", timeout=5)
    sleeps: list[float] = []
    caplog.set_level(logging.INFO, logger="salespulse.report")
    result = run_schedule(
        3600,
        [worker.address],
        tmp_path,
        window="24h",
        to=["ops@example.com"],
        smtp=smtp,
        retries=2,
        backoff=0.5,
        max_runs=2,
        sleep=sleeps.append,
    )
    assert result.runs == 2 and result.built == 2
    assert result.attempts > 1 and result.attempts == 4  # two runs x two attempts each
    assert result.delivered == 0 and len(result.failures) == 2
    assert 0.5 in sleeps  # the backoff between attempts
    assert any(3000 < s <= 3600 for s in sleeps)  # the wait for the next period
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("attempt 1/2" in m and f"127.0.0.1:{port}" in m for m in failures), failures
    assert any("kept in" in m for m in failures), failures
    kept = pending_messages(tmp_path)
    assert len(kept) == 2 and (tmp_path / "digest.html").exists()

    # The SMTP server is back: the next run sends the two kept digests and its own.
    controller, inbox = smtp_server(port)
    try:
        again = run_schedule(
            3600,
            [worker.address],
            tmp_path,
            window="24h",
            to=["ops@example.com"],
            smtp=smtp,
            max_runs=1,
            sleep=sleeps.append,
        )
    finally:
        controller.stop()
    assert again.delivered == 3 and not again.failures
    assert pending_messages(tmp_path) == []
    assert len(inbox.envelopes) == 3
    assert all("24h digest" in str(m["Subject"]) for m in inbox.messages())


def test_a_permanent_refusal_is_not_retried_and_does_not_block_the_outbox(
    worker: Any, tmp_path: Path
) -> None:
    port = free_port()
    controller, inbox = smtp_server(port)
    smtp = SmtpSettings(host="127.0.0.1", port=port, sender="salespulse@example.com", timeout=10)
    try:
        with pytest.raises(ReportError) as caught:
            report_command(tmp_path, "24h", worker.address, "unknown@example.com", retries=3, smtp=smtp)
        assert "550 5.1.1 no such mailbox" in str(caught.value)
        assert "not retried" in str(caught.value) and "outbox/failed" in str(caught.value)
        assert pending_messages(tmp_path) == [] and len(list((tmp_path / "outbox" / "failed").iterdir())) == 1
        # A good address still gets the next digest, and a partly refused one reaches the others.
        report_command(tmp_path, "24h", worker.address, "ops@example.com,unknown@example.com", smtp=smtp)
    finally:
        controller.stop()
    assert [e.rcpt_tos for e in inbox.envelopes] == [["ops@example.com"]]


def test_schedule_keeps_running_when_the_workers_are_down(tmp_path: Path, caplog) -> None:
    sleeps: list[float] = []
    down = f"127.0.0.1:{free_port()}"
    result = run_schedule(60, [down], tmp_path, max_runs=3, sleep=sleeps.append)
    assert result.runs == 3 and result.built == 0 and len(sleeps) == 2
    assert all(f"worker {down} did not answer" in f for f in result.failures)
    assert sum("digest run" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR) == 3


def test_settings_and_options() -> None:
    smtp = SmtpSettings.from_env(
        {
            "SALESPULSE_SMTP_HOST": "mail.example.com",
            "SALESPULSE_SMTP_PORT": "587",
            "SALESPULSE_SMTP_STARTTLS": "1",
            "SALESPULSE_SMTP_USER": "digest",
            "SALESPULSE_SMTP_PASSWORD": "s3cret",
            "SALESPULSE_SMTP_FROM": "kpis@example.com",
        }
    )
    assert (smtp.host, smtp.port, smtp.tls, smtp.user, smtp.sender) == (
        "mail.example.com",
        587,
        "starttls",
        "digest",
        "kpis@example.com",
    )
    assert smtp.password == "s3cret" and "s3cret" not in repr(smtp) and "***" in repr(smtp)
    defaults = SmtpSettings.from_env({})
    assert (defaults.host, defaults.port, defaults.tls, defaults.ca_file) == ("localhost", 25, "none", "")
    with pytest.raises(ValueError, match="SALESPULSE_SMTP_PORT"):
        SmtpSettings.from_env({"SALESPULSE_SMTP_PORT": "twenty-five"})
    # Implicit TLS when asked, or on port 465 alone; STARTTLS or plain when asked, on any port.
    tls = {
        "SALESPULSE_SMTP_TLS=implicit": "implicit",
        "SALESPULSE_SMTP_TLS=IMPLICIT SALESPULSE_SMTP_PORT=2465": "implicit",
        "SALESPULSE_SMTP_PORT=465": "implicit",
        "SALESPULSE_SMTP_PORT=465 SALESPULSE_SMTP_TLS=none": "none",
        "SALESPULSE_SMTP_PORT=465 SALESPULSE_SMTP_STARTTLS=1": "starttls",
        "SALESPULSE_SMTP_TLS=starttls SALESPULSE_SMTP_STARTTLS=1": "starttls",
        "SALESPULSE_SMTP_PORT=587": "none",
    }
    for variables, mode in tls.items():
        assert SmtpSettings.from_env(dict(v.split("=") for v in variables.split())).tls == mode, variables
    refused = {
        "SALESPULSE_SMTP_TLS=ssl": (
            "SALESPULSE_SMTP_TLS='ssl': invalid enum value 'ssl' (one of none, starttls, implicit)"
        ),
        "SALESPULSE_SMTP_TLS=implicit SALESPULSE_SMTP_STARTTLS=1": "SALESPULSE_SMTP_STARTTLS=1 contradicts",
        "SALESPULSE_SMTP_CA_FILE=/no/ca.pem": "SALESPULSE_SMTP_CA_FILE='/no/ca.pem' is not a file",
    }
    for variables, error in refused.items():
        with pytest.raises(ValueError, match=re.escape(error)):
            SmtpSettings.from_env(dict(v.split("=") for v in variables.split()))
    # --every reads the settings' one duration syntax: a bare number is seconds.
    assert [every_seconds(d) for d in ("30m", "24h", "7d", "90s", "1.5h", "1w", "7")] == [
        1800,
        86400,
        604800,
        90,
        5400,
        604800,
        7,
    ]
    for bad in ("", "0h", "-1d", "1y", "h"):
        with pytest.raises(ReportError):
            every_seconds(bad)
    with pytest.raises(ReportError, match="window"):
        report_command(Path("unused"), window="1h", workers="127.0.0.1:1")
    # Previous periods and trend points must still be in the workers' 62-day buckets.
    for window in DIGEST_WINDOWS:
        assert oldest_reach(window) <= RETENTION_SECONDS, window
