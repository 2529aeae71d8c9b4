"""``salespulse demo``: broker, worker, generator and a live board, nothing else to install.

Everything it starts is a child it stops again: Ctrl-C, SIGTERM or the end of
``--duration`` leaves no process behind.

Its worker is closed like any other: it serves with ``SALESPULSE_INGEST_TOKEN``, else the
token stored in ``SALESPULSE_DATA_DIR/ingest-token`` (generated there at the first demo),
so ``salespulse kpis`` run from the same place finds it, and the printed ``curl`` line
carries it.

The numbers read like a real team's month: the history is a steady 45 days of one sales
team (20,000 events: about 2,400 leads, 1,100 opportunities and 1,000 deals won a month
over 24 reps), the live traffic goes on with the same CRM (its open opportunities keep
moving, slipping and closing) at that team's pace unless ``--rate`` says otherwise, and
the lead targets are set from the history's run rate, as a sales manager sets them, so
attainment reads near 100% in every window; so are the quotas of this quarter and the next
(a tenth higher), which the forecast measures that pipeline against.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from salespulse.streams.endpoints.producer import EventProducer
from salespulse.streams.settings import Settings
from salespulse.streams.tools.board import forecast_table, kpi_table
from salespulse.streams.tools.broker import free_port, port_open, start_broker
from salespulse.streams.tools.generator import Generator, GeneratorConfig, generate

REPO = Path(__file__).resolve().parent.parent
HISTORY_DAYS = 45
#: Quotas ask a tenth more than the history's run rate.
QUOTA_STRETCH = 1.1


class Interrupted(Exception):
    """SIGTERM arrived; unwind like Ctrl-C."""


def _get_json(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=3) as response:
        return orjson.loads(response.read())


def _wait_ready(address: str, process: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the worker exited during start-up; see its log")
        try:
            with urllib.request.urlopen(f"http://{address}/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the worker was not ready within {timeout:.0f}s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def _start_prometheus(workdir: Path, worker: str, console: Console) -> subprocess.Popen[bytes] | None:
    binary = shutil.which("prometheus")
    if binary is None:
        console.print("[yellow]prometheus is not installed; skipping --with-prometheus[/yellow]")
        return None
    rules = REPO / "prometheus" / "rules"
    config = workdir / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 5s, evaluation_interval: 5s}\n"
        f"rule_files: ['{rules}/*.yml']\n"
        "scrape_configs:\n"
        f"  - job_name: salespulse\n    static_configs: [{{targets: ['{worker}']}}]\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    console.print(f"Prometheus: http://127.0.0.1:{port}  (rules from {rules})")
    return process


def _quarters(today: date) -> list[tuple[str, int]]:
    """This quarter and the next, each as its name (``2026-Q4``) and its number of days."""
    index = today.year * 4 + (today.month - 1) // 3  # quarters since the year 0
    starts = [date(i // 4, i % 4 * 3 + 1, 1) for i in range(index, index + 3)]
    return [(f"{a.year}-Q{(a.month - 1) // 3 + 1}", (b - a).days) for a, b in pairwise(starts)]


def _demo_targets(history: Sequence[dict[str, Any]], path: Path, today: date) -> Path:
    """The demo's targets file, set from the history's run rate as a sales manager sets them,
    with a tenth on top for the quotas:

    - monthly lead targets per (region, rep), rounded to 5;
    - amount quotas for this quarter and the next per rep and currency it won deals in,
      rounded to 1,000;
    - two teams, ``inside`` and ``field``, each with a count quota (deals won) from its
      members of today; one rep moved from the first to the second a fortnight ago, so the
      teams' numbers roll up by membership as it was on each day.
    """
    leads = Counter(
        (e["data"]["region"], e["data"]["rep_id"]) for e in history if e["type"] == "lead.created"
    )
    rows = [
        {"region": region, "rep": rep, "monthly": max(5, 5 * round(n * 30 / HISTORY_DAYS / 5))}
        for (region, rep), n in sorted(leads.items())
    ]
    won = [e["data"] for e in history if e["type"] == "deal.won"]
    amounts: defaultdict[tuple[str, str], float] = defaultdict(float)
    deals: Counter[str] = Counter()
    for deal in won:
        amounts[deal["rep_id"], deal["currency"]] += deal["amount"]
        deals[deal["rep_id"]] += 1
    reps = sorted(deals)
    moved, since = reps[len(reps) // 2 - 1], today - timedelta(days=14)
    teams: dict[str, list[dict[str, Any]]] = {
        "inside": [
            {"rep": rep, "to": since - timedelta(days=1)} if rep == moved else {"rep": rep}
            for rep in reps[: len(reps) // 2]
        ],
        "field": [{"rep": moved, "from": since}] + [{"rep": rep} for rep in reps[len(reps) // 2 :]],
    }
    quotas: list[dict[str, Any]] = []
    for period, days in _quarters(today):
        pace = QUOTA_STRETCH * days / HISTORY_DAYS
        quotas += [
            {
                "rep": rep,
                "period": period,
                "amount": max(1000, 1000 * round(total * pace / 1000)),
                "currency": currency,
            }
            for (rep, currency), total in sorted(amounts.items())
        ]
        quotas += [
            {
                "team": team,
                "period": period,
                "deals": max(1, round(sum(deals[m["rep"]] for m in members if "to" not in m) * pace)),
            }
            for team, members in teams.items()
        ]
    doc = {"targets": rows, "quotas": quotas, "teams": teams}
    path.write_text(yaml.safe_dump(doc, default_flow_style=None, sort_keys=False))
    return path


def _live_traffic(settings: Settings, rate: float, stop: threading.Event, crm: Generator) -> None:
    """Send the CRM's next events, dated within the hour before they are made, at ``rate``/s
    until ``stop`` is set."""
    live = GeneratorConfig(recent_share=1.0)
    with EventProducer(settings) as producer:
        started, sent = time.monotonic(), 0
        while not stop.is_set():
            for event in crm.events(max(1, int(rate)), live):
                if stop.is_set():
                    break
                producer.send(event)
                sent += 1
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    stop.wait(ahead)
            producer.flush()


def run_demo(
    token: str,
    *,
    rate: float | None,
    duration: float | None,
    backfill: int,
    with_prometheus: bool,
    seed: int = 1,
) -> int:
    """Run the demo with ``token``; ``rate`` None is the history's own pace (``backfill`` over 45 days)."""
    console = Console()
    rate = rate or backfill / (HISTORY_DAYS * 86400)
    port = 9092 if not port_open("127.0.0.1", 9092) else free_port()

    def on_term(signum: int, frame: Any) -> None:
        raise Interrupted

    signal.signal(signal.SIGTERM, on_term)
    stop = threading.Event()
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="salespulse-demo-")))
        broker = start_broker(port)
        stack.callback(broker.stop)
        settings = Settings.from_env({"SALESPULSE_BROKER": broker.bootstrap})
        web_port = 6066 if not port_open("127.0.0.1", 6066) else free_port()
        address = f"127.0.0.1:{web_port}"
        log = (workdir / "worker.log").open("wb")
        env = {
            **os.environ,
            "SALESPULSE_BROKER": broker.bootstrap,
            "SALESPULSE_WEB_PORT": str(web_port),
            "SALESPULSE_DATA_DIR": str(workdir / "data"),
            "SALESPULSE_INGEST_TOKEN": token,
        }
        crm = Generator(GeneratorConfig(seed=seed, recent_share=0.0, spread_days=HISTORY_DAYS, steady=True))
        history = list(crm.events(backfill))
        if "SALESPULSE_TARGETS" not in env:
            env["SALESPULSE_TARGETS"] = str(
                _demo_targets(history, workdir / "targets.yml", datetime.now(UTC).date())
            )
        worker = subprocess.Popen(
            [sys.executable, "-m", "salespulse.streams", "worker", "--loglevel", "warning"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        stack.callback(_stop, worker)
        console.print(f"Embedded broker: {broker.bootstrap}")
        try:
            console.print(f"Backfilling {backfill:,} events over the last {HISTORY_DAYS} days...")
            with EventProducer(settings) as producer:
                producer.send_many(history)
            _wait_ready(address, worker)
            if with_prometheus:
                prom = _start_prometheus(workdir, address, console)
                if prom is not None:
                    stack.callback(_stop, prom)
            console.print(
                f"Worker ready. Metrics: http://{address}/metrics   KPIs: http://{address}/kpis   "
                f"Ingest: POST http://{address}/events"
            )
            console.print(
                f"Report: http://{address}/report?window=7d   "
                f"in Persian: http://{address}/report?window=7d&locale=fa"
            )
            console.print(
                "/kpis and /report open in a browser with any user name and the token as password;"
                f" the token is {token}"
            )
            example = orjson.dumps(next(generate(GeneratorConfig(seed=42, recent_share=1.0), 1)))
            console.print(
                Text(
                    f"curl -X POST -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' "
                    f"--data '{example.decode()}' http://{address}/events"
                ),
                soft_wrap=True,  # one line, to copy whole
            )
            traffic = threading.Thread(target=_live_traffic, args=(settings, rate, stop, crm), daemon=True)
            traffic.start()
            deadline = None if duration is None else time.monotonic() + duration
            previous: dict[str, Any] | None = None
            with Live(console=console, refresh_per_second=1, auto_refresh=False) as live:
                while deadline is None or time.monotonic() < deadline:
                    if worker.poll() is not None:
                        console.print("[red]the worker stopped; see its log[/red]")
                        return 1
                    try:
                        view = _get_json(f"http://{address}/kpis", token)
                    except OSError:
                        time.sleep(1)
                        continue
                    forecast = _get_json(f"http://{address}/forecast?by=team", token)  # this quarter
                    footer = Text(f"live traffic {rate * 3600:,.0f} events/h - Ctrl-C to stop", style="dim")
                    live.update(
                        Group(kpi_table(view, previous), forecast_table(forecast), footer), refresh=True
                    )
                    previous = view
                    time.sleep(1.5)
        except (KeyboardInterrupt, Interrupted):
            console.print("stopping...")
        finally:
            stop.set()
    console.print("demo stopped; no process left running")
    return 0
