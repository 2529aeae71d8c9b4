"""A real Prometheus process scraping workers every second, for the live tests."""

from __future__ import annotations

import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from salespulse.streams.tools.broker import free_port
from tests.conftest import http, wait_until


def query(base: str, expr: str) -> list[Any]:
    status, body = http(f"{base}/api/v1/query?query={urllib.parse.quote(expr)}")
    assert status == 200, (expr, body[:500])
    return list(orjson.loads(body)["data"]["result"])


def ready_query(base: str, expr: str) -> list[Any]:
    try:
        return query(base, expr)
    except OSError:
        return []


@contextmanager
def running_prometheus(
    tmp_path: Path,
    targets: Sequence[str],
    rule_files: Sequence[Path],
    connectors: Sequence[str] = (),
    credentials_file: Path | None = None,
) -> Iterator[str]:
    """Start Prometheus on a free port; yield its base URL once it scrapes every target.

    ``targets`` are workers (job ``salespulse``), ``connectors`` connector processes (job
    ``salespulse-connector``), as in the compose stack's scrape config. ``credentials_file``
    holds the workers' ``SALESPULSE_METRICS_TOKEN``, sent as docs/configuration.md says.
    """
    jobs = {"salespulse": list(targets), "salespulse-connector": list(connectors)}
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed: apt-get install -y --no-install-recommends prometheus"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: {[str(p) for p in rule_files]}\n"
        "scrape_configs:\n"
        + "".join(
            f"  - job_name: {job}\n    static_configs: [{{targets: {hosts}}}]\n"
            + (
                f"    authorization: {{type: Bearer, credentials_file: '{credentials_file}'}}\n"
                if credentials_file is not None and job == "salespulse"
                else ""
            )
            for job, hosts in jobs.items()
            if hosts
        )
    )
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for job, hosts in jobs.items():
            wait_until(
                lambda job=job, hosts=hosts: len(ready_query(base, f'up{{job="{job}"}} == 1')) == len(hosts),
                timeout=60,
            )
        yield base
    finally:
        process.terminate()
        process.wait(15)
