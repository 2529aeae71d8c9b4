"""What ``salespulse report`` does: parse its options and run the digest once or on a schedule.

The CLI only forwards its arguments here, so option checks, progress messages and signal
handling for the schedule can be tested without a subprocess.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from salespulse.streams.report.catalogue import UnknownLocale, catalogue
from salespulse.streams.report.cron import CronSchedule
from salespulse.streams.report.errors import ReportError
from salespulse.streams.report.outbox import OUTBOX, pending_messages
from salespulse.streams.report.schedule import run_once, run_schedule
from salespulse.streams.report.smtp import SmtpSettings
from salespulse.streams.report.windows import DIGEST_WINDOWS, TREND
from salespulse.streams.settings import Settings, SettingsError, parse_duration

log = logging.getLogger("salespulse.report")


def every_seconds(text: str) -> float:
    """``--every``'s period in seconds, in the one duration syntax of the settings."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise ReportError(f"--every: {exc}") from None
    if seconds <= 0:
        raise ReportError(f"--every {text!r} is not a period: it must be above 0")
    return seconds


def _addresses(email: str | Sequence[str] | None) -> list[str]:
    if not email:
        return []
    raw = email.split(",") if isinstance(email, str) else [a for item in email for a in item.split(",")]
    addresses = [a.strip() for a in raw if a.strip()]
    for address in addresses:
        if "@" not in address or any(c.isspace() for c in address):
            raise ReportError(f"{address!r} is not an email address")
    return addresses


def report_command(
    out: Path,
    window: str = "7d",
    workers: str | Sequence[str] | None = None,
    email: str | Sequence[str] | None = None,
    every: str | None = None,
    retries: int = 3,
    smtp: SmtpSettings | None = None,
    echo: Callable[[str], object] | None = None,
    locale: str | None = None,
    cron: str | None = None,
) -> None:
    """What ``salespulse report`` does. Raises :class:`ReportError` with a clear message.

    Progress goes to ``echo`` (default: standard error), failures to the ``salespulse.report``
    logger, so ``--out`` and scheduled runs leave standard output alone. ``locale`` defaults
    to ``SALESPULSE_LOCALE``.
    """
    if echo is None:
        echo = _stderr
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if window not in TREND:
        raise ReportError(f"--window must be one of {', '.join(DIGEST_WINDOWS)}, not {window!r}")
    if retries < 1:
        raise ReportError("--retries must be at least 1")
    if every is not None and cron is not None:
        raise ReportError("give --every or --cron, not both")
    to = _addresses(email)
    when: float | CronSchedule | None = None  # None: once
    if every is not None:
        when = every_seconds(every)
    elif cron is not None:
        when = CronSchedule(cron)
    try:
        settings = Settings.from_env()
        if isinstance(workers, str):
            names = [w.strip() for w in workers.split(",") if w.strip()]
        else:
            names = list(workers) if workers else list(settings.worker_addresses)
        locale = locale or settings.locale
        catalogue(locale)  # an unknown language fails now, not on every scheduled run
        if to and smtp is None:
            smtp = SmtpSettings.from_env()
    except (SettingsError, UnknownLocale) as exc:
        raise ReportError(str(exc)) from None
    if when is None:
        digest, outbox = run_once(names, out, window=window, to=to, smtp=smtp, retries=retries, locale=locale)
        echo(f"wrote {out / 'digest.html'}, {out / 'digest.txt'} and {len(digest.images)} charts")
        if outbox is not None:
            if outbox.error is not None:
                where = (
                    f"the refused message is in {out / OUTBOX / 'failed'}"
                    if outbox.error.permanent
                    else f"the unsent message is kept in {out / OUTBOX} and is sent again on the next run"
                )
                raise ReportError(f"{outbox.error}. The digest is in {out}; {where}.")
            echo(f"sent {len(outbox.delivered)} digest(s) to {', '.join(to)}")
        return
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("stopping the digest schedule (signal %d)", signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT) if _main_thread()}
    if isinstance(when, CronSchedule):
        first = datetime.fromtimestamp(when.next_after(time.time()), UTC).strftime("%Y-%m-%d %H:%M UTC")
        times = f"at the times of {when.expression!r} (UTC; next {first})"
    else:
        times = f"every {every}"
    echo(f"building the {window} digest {times} into {out}" + (f" for {', '.join(to)}" if to else ""))
    try:
        result = run_schedule(
            when,
            names,
            out,
            window=window,
            to=to,
            smtp=smtp,
            retries=retries,
            sleep=stop.wait,
            stop=stop,
            locale=locale,
        )
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    echo(
        f"stopped after {result.runs} run(s); {len(pending_messages(out))} digest(s) unsent in {out / OUTBOX}"
    )


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
