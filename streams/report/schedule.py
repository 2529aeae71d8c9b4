"""Running the digest once or on a schedule: build, write, queue and flush the outbox.

A long-running schedule must survive unreachable workers, an unreachable SMTP server
and unexpected bugs in a single run; this module holds that loop and the single run it
repeats, with the clocks, sleep and stop event injectable for tests. The loop runs either
every period (``--every``, the first run at once) or at the fixed times of a cron
expression (``--cron``, the first run at the next of them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from salespulse.streams.report.catalogue import DEFAULT_LOCALE, catalogue
from salespulse.streams.report.cron import CronSchedule
from salespulse.streams.report.digest import build_digest
from salespulse.streams.report.errors import ReportError
from salespulse.streams.report.files import write_digest
from salespulse.streams.report.mail import build_message
from salespulse.streams.report.model import Digest
from salespulse.streams.report.outbox import OutboxResult, flush_outbox, queue_message
from salespulse.streams.report.smtp import SmtpSettings

log = logging.getLogger("salespulse.report")
#: The longest a wait for a cron time sleeps at once: a wall clock that jumps (a suspended
#: machine, an NTP step) is noticed within this, and the run is not a period late.
CRON_NAP = 60.0


@dataclass
class ScheduleResult:
    runs: int = 0
    built: int = 0
    delivered: int = 0
    attempts: int = 0
    failures: list[str] = field(default_factory=list)
    pending: list[Path] = field(default_factory=list)


def _build_and_queue(
    workers: Sequence[str],
    out_dir: Path,
    window: str,
    to: Sequence[str],
    smtp: SmtpSettings | None,
    now: int | None = None,
    locale: str = DEFAULT_LOCALE,
) -> Digest:
    digest = build_digest(workers, window, now, locale=locale)
    page = write_digest(digest, out_dir)
    log.info("digest for the %s window to %s written to %s", window, catalogue().stamp(digest.clock), page)
    if to and smtp is not None:
        queue_message(build_message(digest, to, smtp.from_address), out_dir)
    return digest


def run_once(
    workers: Sequence[str],
    out_dir: Path,
    *,
    window: str = "7d",
    to: Sequence[str] = (),
    smtp: SmtpSettings | None = None,
    retries: int = 3,
    backoff: float = 2.0,
    sleep: Callable[[float], object] = time.sleep,
    now: int | None = None,
    locale: str = DEFAULT_LOCALE,
) -> tuple[Digest, OutboxResult | None]:
    """Build and write one digest; with recipients, queue it and flush the outbox."""
    if to and smtp is None:
        smtp = SmtpSettings.from_env()
    digest = _build_and_queue(workers, out_dir, window, to, smtp, now, locale)
    if not to or smtp is None:
        return digest, None
    return digest, flush_outbox(out_dir, smtp, retries, backoff, sleep)


def _wait_until(
    due: float, clock: Callable[[], float], sleep: Callable[[float], object], stop: threading.Event | None
) -> bool:
    """Sleep until the wall clock reaches ``due``; False when ``stop`` is set first."""
    while (left := due - clock()) > 0:
        if stop is not None and stop.is_set():
            return False
        sleep(min(left, CRON_NAP))
    return stop is None or not stop.is_set()


def run_schedule(
    when: float | CronSchedule,
    workers: Sequence[str],
    out_dir: Path,
    *,
    window: str = "7d",
    to: Sequence[str] = (),
    smtp: SmtpSettings | None = None,
    retries: int = 3,
    backoff: float = 2.0,
    max_runs: int | None = None,
    sleep: Callable[[float], object] = time.sleep,
    stop: threading.Event | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    clock: Callable[[], float] = time.time,
    locale: str = DEFAULT_LOCALE,
) -> ScheduleResult:
    """Build (and send) a digest every ``when`` seconds, or at the times of the cron schedule
    ``when``, until ``stop`` is set or ``max_runs``.

    A run that cannot reach the workers or the SMTP server is logged and does not end the
    loop. Unsent digests stay in ``out_dir/outbox`` and go out first on the next run, even
    when that run cannot build its own digest.
    """
    cron, period = (when, 0.0) if isinstance(when, CronSchedule) else (None, float(when))
    if cron is None and period <= 0:
        raise ReportError("the schedule period must be positive")
    if to and smtp is None:
        smtp = SmtpSettings.from_env()
    result = ScheduleResult()
    due = None if cron is None else cron.next_after(clock())
    while max_runs is None or result.runs < max_runs:
        if due is not None and not _wait_until(due, clock, sleep, stop):
            break
        if stop is not None and stop.is_set():
            break
        started = monotonic()
        result.runs += 1
        try:
            _build_and_queue(workers, out_dir, window, to, smtp, locale=locale)
            result.built += 1
        except ReportError as exc:
            log.error("digest run %d failed: %s", result.runs, exc)
            result.failures.append(str(exc))
        except Exception as exc:  # a long-running schedule logs the bug and keeps going
            log.exception("digest run %d failed unexpectedly", result.runs)
            result.failures.append(f"{type(exc).__name__}: {exc}")
        if to and smtp is not None:
            outbox = flush_outbox(out_dir, smtp, retries, backoff, sleep)
            result.delivered += len(outbox.delivered)
            result.attempts += outbox.attempts
            result.pending = outbox.pending
            if outbox.error is not None:
                result.failures.append(str(outbox.error))
        if max_runs is not None and result.runs >= max_runs:
            break
        if stop is not None and stop.is_set():
            break
        if cron is not None and due is not None:
            due = cron.next_after(max(clock(), due))  # a run that overran skips the times it missed
        else:
            sleep(max(0.0, period - (monotonic() - started)))
    return result
