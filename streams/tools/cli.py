"""The ``salespulse`` command line.

Flags override the ``SALESPULSE_*`` variables, which override the defaults; with nothing
set, everything talks to the embedded broker on 127.0.0.1:9092.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

import click
import orjson
from rich.console import Console
from rich.progress import Progress

from salespulse.streams.settings import Settings, SettingsError

if TYPE_CHECKING:
    from salespulse.streams.kafka.admin import Topic, TopicsRefused

console = Console(stderr=True)
#: sysexits' EX_CONFIG: the configuration or the cluster needs fixing, and a restart will
#: not do it (systemd's RestartPreventExitStatus=78 stops restarting on it).
EXIT_CONFIG = 78


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings.from_env().with_overrides(**overrides)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


broker_option = click.option(
    "--broker", "brokers", help="Broker host:port, comma-separated (SALESPULSE_BROKER)."
)


def _refuse_to_start(exc: TopicsRefused) -> NoReturn:
    """One log line and one exit: a cluster that cannot hold the topics is not retried."""
    logging.getLogger("salespulse").error("not starting: %s", exc)
    sys.exit(EXIT_CONFIG)


@click.group()
def main() -> None:
    """SalesPulse: live sales KPIs from CRM events in Kafka."""


@main.command()
@click.option("--port", type=int, default=9092, show_default=True, help="Port to listen on.")
def broker(port: int) -> None:
    """Run the embedded Kafka-compatible broker (Tansu) until Ctrl-C."""
    from salespulse.streams.tools.broker import BrokerError, start_broker

    try:
        running = start_broker(port)
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None
    stopping: list[int] = []

    def stop(signum: int, frame: Any) -> None:
        # Only signal here: the main thread is inside wait() and reaps the process.
        stopping.append(signum)
        running.process.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    click.echo(f"broker ready at {running.bootstrap}", err=False)
    sys.stdout.flush()
    code = running.process.wait()
    if not stopping:
        raise click.ClickException(f"broker exited with status {code}")
    click.echo("broker stopped")


@main.command()
@broker_option
@click.option("--web-host", help="Address for the HTTP server (SALESPULSE_WEB_HOST).")
@click.option("--web-port", type=int, help="Port for the HTTP server (SALESPULSE_WEB_PORT).")
@click.option("--data-dir", type=click.Path(path_type=Path), help="State directory.")
@click.option("--partitions", type=int, help="Partitions per input topic.")
@click.option("--clock", help="wall (default), stream, or a fixed RFC 3339 time.")
@click.option("--loglevel", default="info", show_default=True)
def worker(loglevel: str, **overrides: Any) -> None:
    """Run a worker: consume events, keep KPI tables, serve /metrics and /kpis."""
    from salespulse.streams.pipeline.hash_seed import pin

    settings = _settings(**overrides)
    if settings.snapshot_interval > 0:
        pin(settings.data_dir)  # re-executes this command with the data dir's hash seed

    from salespulse.streams.composition import run_worker
    from salespulse.streams.endpoints.connectors.mapping import MappingError, load_mapping
    from salespulse.streams.kafka.admin import TopicsRefused
    from salespulse.streams.pipeline.fx_rates import RatesError, RatesFile
    from salespulse.streams.pipeline.internals import InternalsChanged

    try:
        load_mapping(settings.connectors_file)  # refuse a bad mapping file before joining the group
    except MappingError as exc:
        raise click.UsageError(f"SALESPULSE_CONNECTORS: {exc}") from None
    try:
        RatesFile.open(settings.fx_rates, settings.reporting_currency)  # and a bad rates file
    except RatesError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        run_worker(settings, loglevel)
    except TopicsRefused as exc:
        _refuse_to_start(exc)
    except SettingsError as exc:  # a stored token that is not one
        raise click.UsageError(str(exc)) from None
    except InternalsChanged as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--count", type=int, default=1000, show_default=True, help="Events to generate.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--now", help="Fix 'now' (RFC 3339) for reproducible output.")
@click.option("--out", type=click.File("wb"), help="Write NDJSON here ('-' for stdout).")
@click.option("--rate", type=float, default=0.0, help="Events/s to the broker (0 = as fast).")
@click.option("--customers", type=int, default=2000, show_default=True)
@click.option("--duplicates", type=float, default=0.0, help="Share of re-delivered events.")
@click.option("--late", type=float, default=0.0, help="Share of events older than retention.")
@broker_option
def generate(
    count: int,
    seed: int,
    now: str | None,
    out: IO[bytes] | None,
    rate: float,
    customers: int,
    duplicates: float,
    late: float,
    brokers: str | None,
) -> None:
    """Generate a realistic, seeded CRM event stream (NDJSON or to the broker)."""
    from salespulse.streams.tools.generator import GeneratorConfig
    from salespulse.streams.tools.generator import generate as gen

    fixed = datetime.fromisoformat(now).astimezone(UTC) if now else None
    config = GeneratorConfig(
        seed=seed, now=fixed, customers=customers, duplicate_share=duplicates, late_share=late
    )
    events = gen(config, count)
    if out is not None:
        for event in events:
            out.write(orjson.dumps(event) + b"\n")
        return
    from salespulse.streams.endpoints.producer import BrokerUnavailable, EventProducer

    settings = _settings(brokers=brokers)
    try:
        with EventProducer(settings) as producer:
            started = time.monotonic()
            for i, event in enumerate(events, 1):
                producer.send(event)
                if rate > 0:
                    ahead = i / rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
    except BrokerUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"sent {count} events to {','.join(settings.brokers)}")


@main.command()
@click.argument("source", type=click.File("rb"))
@broker_option
@click.option("--timeout", type=float, help="Seconds to wait for the broker.")
def emit(source: IO[bytes], brokers: str | None, timeout: float | None) -> None:
    """Send NDJSON events from FILE (or - for stdin), validating each one."""
    from salespulse.schemas import exact_json
    from salespulse.schemas.codec import Rejected, check_not_future, checked
    from salespulse.streams.endpoints.producer import BrokerUnavailable, EventProducer

    settings = _settings(brokers=brokers, broker_timeout=timeout)
    lines = source.read().splitlines()
    reasons: Counter[str] = Counter()
    examples: dict[str, str] = {}
    accepted = 0
    try:
        with (
            EventProducer(settings) as producer,
            Progress(console=console, disable=len(lines) < 1000, transient=True) as progress,
        ):
            task = progress.add_task("emitting", total=len(lines))
            for number, line in enumerate(lines, 1):
                progress.advance(task)
                if not line.strip():
                    continue
                try:
                    event, t = checked(exact_json.loads(line))
                    # The record gets this machine's clock: a later occurred_at is refused here,
                    # by the rule the worker would dead-letter it by.
                    check_not_future(t, int(time.time() * 1000), settings.max_clock_skew)
                    producer.send(event)
                    accepted += 1
                except exact_json.DecodeError as exc:
                    reasons["not_json"] += 1
                    examples.setdefault("not_json", f"line {number}: {exc}")
                except Rejected as exc:
                    reasons[exc.reason] += 1
                    examples.setdefault(exc.reason, f"line {number}: {exc.detail}")
    except BrokerUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    rejected = sum(reasons.values())
    console.print(f"accepted {accepted}, rejected {rejected}")
    for reason, n in reasons.most_common():
        console.print(f"  {reason}: {n} (first: {examples[reason]})")
    if rejected:
        sys.exit(1)


def _epoch_seconds(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """``--at`` as epoch seconds, from epoch seconds or an RFC 3339 time with a zone."""
    from salespulse.schemas.event_time import parse_time

    if value is None or value.isdigit():
        return None if value is None else int(value)
    try:
        return parse_time(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither epoch seconds nor an RFC 3339 time with a zone"
        ) from None


@main.command()
@click.option("--docs", is_flag=True, help="Print the variables' table of docs/configuration.md instead.")
def config(docs: bool) -> None:
    """Print the settings this machine's environment gives, secrets masked.

    Each line is a SALESPULSE_* variable and its value here (set, or the default); a wrong
    value stops with the same one-line error a worker would give.
    """
    from salespulse.streams.report.smtp import SmtpSettings
    from salespulse.streams.settings import markdown_table, shown_values

    if docs:
        click.echo(markdown_table(Settings, SmtpSettings), nl=False)
        return
    try:
        smtp = SmtpSettings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    for name, value in (*shown_values(_settings()), *shown_values(smtp)):
        click.echo(f"{name}={value}")


@main.command()
@click.option("--workers", help="Worker host:port list (SALESPULSE_WORKERS).")
@click.option(
    "--at",
    callback=_epoch_seconds,
    help="Look back to this clock (epoch seconds or RFC 3339), within the 62-day retention.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def kpis(workers: str | None, at: int | None, as_json: bool) -> None:
    """Show the cluster-wide KPIs, merged from every worker's share."""
    from salespulse.streams.endpoints.cluster import cluster_view
    from salespulse.streams.tools.board import kpi_table

    _show_merged(workers, lambda names, token: cluster_view(names, at=at, token=token), as_json, kpi_table)


@main.command()
@click.option("--workers", help="Worker host:port list (SALESPULSE_WORKERS).")
@click.option("--period", help="YYYY, YYYY-Qn or YYYY-MM of the fiscal calendar (default: this quarter).")
@click.option(
    "--by",
    type=click.Choice(["rep", "team", "region", "company"]),
    default="rep",
    show_default=True,
    help="One row per rep, team, region, or the whole company (per currency).",
)
@click.option("--as-of", "as_of", callback=_epoch_seconds, help="The numbers at the end of this day.")
@click.option("--from", "from_", callback=_epoch_seconds, help="The waterfall from the end of this day.")
@click.option("--to", callback=_epoch_seconds, help="The waterfall to the end of this day (default --as-of).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def forecast(
    workers: str | None,
    period: str | None,
    by: str,
    as_of: int | None,
    from_: int | None,
    to: int | None,
    as_json: bool,
) -> None:
    """The forecast against quota, merged from every worker: closed won, commit, best case,
    pipeline, weighted, coverage, and how the pipeline moved (times: epoch seconds or RFC 3339)."""
    from salespulse.streams.endpoints.forecast_view import SharesDisagree, cluster_forecast
    from salespulse.streams.tools.board import forecast_table

    given = {"period": period, "by": by, "as_of": as_of, "from": from_, "to": to}
    params = {name: str(value) for name, value in given.items() if value is not None}

    def merged(names: list[str], token: str) -> dict[str, Any]:
        try:
            return cluster_forecast(names, params, token)
        except SharesDisagree as exc:
            raise click.ClickException(str(exc)) from None

    _show_merged(workers, merged, as_json, forecast_table)


def _show_merged(
    workers: str | None,
    fetch: Callable[[list[str], str], dict[str, Any]],
    as_json: bool,
    table: Callable[[dict[str, Any]], Any],
) -> None:
    """Merge every worker's share with ``fetch`` (names, token) and print it as JSON or a table.

    The token is ``SALESPULSE_INGEST_TOKEN``, else the one a worker on this machine stored.
    """
    from salespulse.streams.endpoints.cluster import WorkerUnreachable
    from salespulse.streams.tokens import client_token

    settings = _settings()
    names = workers.split(",") if workers else list(settings.worker_addresses)
    try:
        view = fetch([w.strip() for w in names if w.strip()], client_token(settings))
    except WorkerUnreachable as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        from salespulse.agents.money import json_default

        click.echo(orjson.dumps(view, option=orjson.OPT_INDENT_2, default=json_default).decode())
    else:
        Console().print(table(view))


@main.group()
def connect() -> None:
    """Pull events from a CRM that cannot push them."""


@connect.command("vtiger")
@broker_option
@click.option("--once", is_flag=True, help="Poll once and exit, non-zero on failure (for cron and tests).")
@click.option("--loglevel", default="info", show_default=True)
def connect_vtiger(once: bool, loglevel: str, brokers: str | None) -> None:
    """Poll vtiger CRM (SALESPULSE_VTIGER_*) and produce what changed, exactly once."""
    import threading

    from salespulse.streams.endpoints.connectors.vtiger.service import ConnectorConfigError, run_vtiger
    from salespulse.streams.kafka.admin import TopicsRefused

    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        code = run_vtiger(_settings(brokers=brokers), once=once, stop=stop)
    except ConnectorConfigError as exc:
        raise click.UsageError(str(exc)) from None
    except TopicsRefused as exc:
        _refuse_to_start(exc)
    sys.exit(code)


@main.group()
def topics() -> None:
    """The Kafka topics SalesPulse creates."""


@topics.command("plan")
@broker_option
@click.option("--partitions", type=int, help="Partitions per input topic (SALESPULSE_PARTITIONS).")
@click.option(
    "--replication-factor",
    type=click.IntRange(min=1),
    help="Replicas of every topic (SALESPULSE_REPLICATION_FACTOR; default 1 on a loopback broker, else 3).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def topics_plan(
    brokers: str | None, partitions: int | None, replication_factor: int | None, as_json: bool
) -> None:
    """Print every topic with its partitions, replication, cleanup policy and retention.

    For clusters where operators create the topics: create these before the first start.
    Workers and connectors create what is missing themselves, with the same layout, and
    refuse to start on topics with fewer replicas than the setting, or on a changelog
    that is not compacted. Reads only the settings: no broker is contacted.
    """
    from salespulse.streams.kafka.admin import EPOCH_PLACEHOLDER, plan

    settings = _settings(brokers=brokers, partitions=partitions, replication_factor=replication_factor)
    layout = plan(settings)
    if as_json:
        rows = [
            {
                "topic": t.name,
                "partitions": t.partitions,
                "replication": t.replication,
                "configs": dict(t.configs),
                "holds": t.holds,
            }
            for t in layout
        ]
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(_plan_table(layout))
    click.echo(
        f"\n{EPOCH_PLACEHOLDER}: 12 hex digits from the cluster id and the crm.* topics' ids, which tie"
        "\nthe state to its broker. A worker creates the changelog at its first start, or, without the"
        "\nright to, stops and names it. Compacted topics keep the newest record per key: no retention."
    )


def _plan_table(layout: list[Topic]) -> str:
    def retention(topic: Topic) -> str:
        if topic.compacted:
            return "compacted"
        ms = topic.configs.get("retention.ms")
        return "broker default" if ms is None else f"{ms} ms ({int(ms) // 3_600_000}h)"

    rows = [("topic", "partitions", "replication", "cleanup.policy", "retention", "holds")]
    rows += [
        (t.name, str(t.partitions), str(t.replication), t.configs["cleanup.policy"], retention(t), t.holds)
        for t in layout
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


@main.command()
@click.option("--workers", help="Worker host:port list (SALESPULSE_WORKERS).")
@click.option(
    "--status", default="open", show_default=True, type=click.Choice(["open", "followed_up", "all"])
)
@click.option(
    "--window",
    default="30d",
    show_default=True,
    type=click.Choice(["1h", "24h", "7d", "30d", "all"]),
    help="By answer time; all = every case within the 62-day retention.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def detractors(workers: str | None, status: str, window: str, as_json: bool) -> None:
    """Detractor cases merged from every worker: who to call, who was called, and how fast."""
    from salespulse.streams.endpoints.detractors_view import merged_cases
    from salespulse.streams.tools.board import detractor_table

    _show_merged(
        workers, lambda names, token: merged_cases(names, status, window, token), as_json, detractor_table
    )


@main.command()
@click.option("--rate", type=float, help="Live events/s (default: the history's own pace, about 19 an hour).")
@click.option("--duration", type=float, help="Stop after this many seconds (for scripts and CI).")
@click.option("--backfill", type=int, default=20_000, show_default=True, help="History first.")
@click.option("--with-prometheus", is_flag=True, help="Also run Prometheus with the rules.")
def demo(rate: float | None, duration: float | None, backfill: int, with_prometheus: bool) -> None:
    """Embedded broker, worker, generator and a live KPI board in one command."""
    from salespulse.streams.tokens import worker_settings
    from salespulse.streams.tools.demo import run_demo

    try:
        # The token of SALESPULSE_DATA_DIR (as a worker there would), so `salespulse kpis` finds it.
        token = worker_settings(_settings()).ingest_token
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    sys.exit(
        run_demo(token, rate=rate, duration=duration, backfill=backfill, with_prometheus=with_prometheus)
    )


@main.command()
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for digest.html, digest.txt, the PNG charts and the outbox of unsent mail.",
)
@click.option(
    "--window", default="7d", show_default=True, type=click.Choice(["24h", "7d", "30d"]), help="Period."
)
@click.option("--workers", help="Worker host:port list (SALESPULSE_WORKERS).")
@click.option("--email", help="Mail the digest to ADDR[,ADDR] via SALESPULSE_SMTP_* settings.")
@click.option("--every", help="Repeat every period (30m, 24h, 7d) until Ctrl-C or SIGTERM.")
@click.option("--cron", help='Instead, at fixed times: a cron expression in UTC, e.g. "0 8 * * mon".')
@click.option("--retries", type=click.IntRange(min=1), default=3, show_default=True, help="SMTP attempts.")
@click.option("--locale", help="Language of the digest: en or fa (default SALESPULSE_LOCALE, else en).")
def report(
    out_dir: Path,
    window: str,
    workers: str | None,
    email: str | None,
    every: str | None,
    cron: str | None,
    retries: int,
    locale: str | None,
) -> None:
    """Build the KPI digest (HTML with charts, plain text) and optionally email it on a schedule."""
    from salespulse.streams.report.command import report_command
    from salespulse.streams.report.errors import ReportError

    try:
        report_command(out_dir, window, workers, email, every, retries, locale=locale, cron=cron)
    except ReportError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--events", type=int, default=1_000_000, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--naive-events", type=int, default=100_000, show_default=True)
@click.option("--latency-rate", type=float, default=5000.0, show_default=True)
@click.option("--customers", type=int, default=50_000, show_default=True)
@click.option(
    "--memory-customers",
    type=int,
    help="Instead: peak RSS with this many distinct customers in state, and exact restart.",
)
@click.option(
    "--events-from",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Instead of generating: the first --events lines of this NDJSON file (as `generate "
    "--out` writes them), to measure two versions on the same events.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def bench(
    events: int,
    seed: int,
    naive_events: int,
    latency_rate: float,
    customers: int,
    memory_customers: int | None,
    events_from: Path | None,
    as_json: bool,
) -> None:
    """Measure one worker with all eight KPIs against the reference paths."""
    from salespulse.streams.tools.bench import as_json as result_json
    from salespulse.streams.tools.bench import run_bench, run_memory

    if memory_customers:
        memory = run_memory(memory_customers, seed, log=lambda message: console.print(message))
        if as_json:
            click.echo(result_json(memory).decode())
        else:
            Console().print(
                f"{memory.customers:,} customers ({memory.events:,} events): applied in "
                f"{memory.seconds:.1f}s, peak RSS {memory.peak_rss_mb:,.0f} MB; restart recovered in "
                f"{memory.restart_seconds:.1f}s from the changelog (peak RSS "
                f"{memory.restart_peak_rss_mb:,.0f} MB, exact: {memory.exact_after_restart}) and in "
                f"{memory.restart_snapshot_seconds:.1f}s from the snapshot (peak RSS "
                f"{memory.restart_snapshot_peak_rss_mb:,.0f} MB, exact: "
                f"{memory.exact_after_snapshot_restart}); a worker with nothing to recover is ready in "
                f"{memory.empty_start_seconds:.1f}s ({memory.detail}); hot path: {memory.hot_path}; "
                f"fetches of up to {memory.fetch_records:,} records"
            )
        sys.exit(0 if memory.exact_after_restart and memory.exact_after_snapshot_restart else 1)

    result = run_bench(
        events=events,
        seed=seed,
        naive_events=naive_events,
        latency_rate=latency_rate,
        customers=customers,
        log=lambda message: console.print(message),
        events_from=events_from,
    )
    if as_json:
        click.echo(result_json(result).decode())
    else:
        out = Console()
        out.print(
            f"worker, all eight KPIs: {result.events_per_s:,.0f} events/s "
            f"({result.events:,} events in {result.seconds:.1f}s)"
        )
        out.print(
            f"raw consume + decode:   {result.raw_events_per_s:,.0f} events/s "
            f"(worker = {result.vs_raw:.1%} of it)"
        )
        out.print(
            f"worker, no KPI work:    {result.no_kpis_events_per_s:,.0f} events/s "
            f"({result.no_kpis_vs_raw:.1%} of raw)"
        )
        out.print(f"the eight KPIs' work:   {result.kpi_share:.0%} of the worker's time an event")
        out.print(
            f"naive per-event agent:  {result.naive_events_per_s:,.0f} events/s over "
            f"{result.naive_events:,} (worker = {result.vs_naive:.1f}x)"
        )
        p50 = "n/a" if result.latency_p50_s is None else f"{result.latency_p50_s * 1000:.0f} ms"
        p99 = "n/a" if result.latency_p99_s is None else f"{result.latency_p99_s * 1000:.0f} ms"
        out.print(f"event-to-state latency at {result.latency_offered_per_s:,.0f}/s: p50 {p50}, p99 {p99}")
        out.print(f"peak RSS: {result.peak_rss_mb:,.0f} MB ({result.customers:,} customers)")
        out.print("KPIs exact: " + ("yes" if result.exact else "NO: " + "; ".join(result.mismatches)))
        out.print(
            f"partition check: {result.partition_check_us:.2f} µs an event "
            f"({result.partition_check_share:.1%} of the worker's time an event)"
        )
        out.print(f"hot path: {result.hot_path}; fetches of up to {result.fetch_records:,} records")
    if not result.exact:
        sys.exit(1)
