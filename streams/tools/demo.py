"""``salespulse demo``: broker, worker, generator and a live board, nothing else to install.

Everything it starts is a child it stops again: Ctrl-C, SIGTERM or the end of
``--duration`` leaves no process behind.
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
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from salespulse.streams.endpoints.producer import EventProducer
from salespulse.streams.settings import Settings
from salespulse.streams.tools.board import kpi_table
from salespulse.streams.tools.broker import free_port, port_open, start_broker
from salespulse.streams.tools.generator import GeneratorConfig, generate

REPO = Path(__file__).resolve().parent.parent


class Interrupted(Exception):
    """SIGTERM arrived; unwind like Ctrl-C."""


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=3) as response:
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


def _live_traffic(settings: Settings, rate: float, stop: threading.Event, seed: int) -> None:
    """Send generated 'now' events at ``rate``/s until ``stop`` is set."""
    with EventProducer(settings) as producer:
        started, sent, batch = time.monotonic(), 0, 0
        while not stop.is_set():
            events = generate(GeneratorConfig(seed=seed + batch, recent_share=1.0), max(1, int(rate)))
            for event in events:
                if stop.is_set():
                    break
                producer.send(event)
                sent += 1
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    stop.wait(ahead)
            producer.flush()
            batch += 1


def run_demo(
    *, rate: float, duration: float | None, backfill: int, with_prometheus: bool, seed: int = 1
) -> int:
    console = Console()
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
        }
        targets = REPO / "config" / "targets.example.yml"
        if targets.exists():
            env.setdefault("SALESPULSE_TARGETS", str(targets))
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
            console.print(f"Backfilling {backfill:,} events over the last 45 days...")
            history = GeneratorConfig(seed=seed, recent_share=0.1, spread_days=45)
            with EventProducer(settings) as producer:
                for event in generate(history, backfill):
                    producer.send(event)
            _wait_ready(address, worker)
            if with_prometheus:
                prom = _start_prometheus(workdir, address, console)
                if prom is not None:
                    stack.callback(_stop, prom)
            console.print(
                f"Worker ready. Metrics: http://{address}/metrics   KPIs: http://{address}/kpis   "
                f"Ingest: POST http://{address}/events"
            )
            example = orjson.dumps(next(generate(GeneratorConfig(seed=42, recent_share=1.0), 1)))
            console.print(
                Text(
                    f"curl -X POST -H 'Content-Type: application/json' "
                    f"--data '{example.decode()}' http://{address}/events"
                )
            )
            traffic = threading.Thread(
                target=_live_traffic, args=(settings, rate, stop, seed + 1000), daemon=True
            )
            traffic.start()
            deadline = None if duration is None else time.monotonic() + duration
            previous: dict[str, Any] | None = None
            with Live(console=console, refresh_per_second=1, auto_refresh=False) as live:
                while deadline is None or time.monotonic() < deadline:
                    if worker.poll() is not None:
                        console.print("[red]the worker stopped; see its log[/red]")
                        return 1
                    try:
                        view = _get_json(f"http://{address}/kpis")
                    except OSError:
                        time.sleep(1)
                        continue
                    footer = Text(f"live traffic {rate:.0f} events/s - Ctrl-C to stop", style="dim")
                    live.update(Group(kpi_table(view, previous), footer), refresh=True)
                    previous = view
                    time.sleep(1.5)
        except (KeyboardInterrupt, Interrupted):
            console.print("stopping...")
        finally:
            stop.set()
    console.print("demo stopped; no process left running")
    return 0
