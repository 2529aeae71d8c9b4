"""The outbox: digests kept on disk until the SMTP server has accepted them.

A message that cannot be sent stays in ``<out>/outbox`` and is sent again on the next
run, oldest first, so nothing is lost silently; a permanently refused message is moved
to ``outbox/failed`` so it cannot block the queue.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from salespulse.streams.report.errors import DigestDeliveryError
from salespulse.streams.report.files import _write_atomic
from salespulse.streams.report.mail import deliver
from salespulse.streams.report.smtp import SmtpSettings

log = logging.getLogger("salespulse.report")


OUTBOX = "outbox"


def queue_message(msg: EmailMessage, out_dir: Path) -> Path:
    """Keep a message in ``out_dir/outbox`` until it has been delivered."""
    box = out_dir / OUTBOX
    box.mkdir(parents=True, exist_ok=True)
    path = box / f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{msg['X-SalesPulse-Window']}.eml"
    _write_atomic(path, msg.as_bytes(policy=policy.SMTP))
    return path


def pending_messages(out_dir: Path) -> list[Path]:
    """Unsent digests, oldest first."""
    box = out_dir / OUTBOX
    return sorted(box.glob("*.eml")) if box.is_dir() else []


@dataclass
class OutboxResult:
    delivered: list[Path] = field(default_factory=list)
    pending: list[Path] = field(default_factory=list)
    attempts: int = 0
    error: DigestDeliveryError | None = None


def flush_outbox(
    out_dir: Path,
    smtp: SmtpSettings,
    retries: int = 3,
    backoff: float = 2.0,
    sleep: Callable[[float], object] = time.sleep,
) -> OutboxResult:
    """Send every queued digest, oldest first, stopping at the first transient failure.

    A message refused permanently (5xx) is moved to ``outbox/failed`` and logged as an
    error, so one bad address cannot block the queue.
    """
    result = OutboxResult()
    queue = pending_messages(out_dir)
    for i, path in enumerate(queue):
        msg = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        assert isinstance(msg, EmailMessage)
        try:
            result.attempts += deliver(msg, smtp, retries, backoff, sleep)
        except DigestDeliveryError as exc:
            result.attempts += exc.attempts
            if exc.permanent:
                failed = path.parent / "failed"
                failed.mkdir(exist_ok=True)
                os.replace(path, failed / path.name)
                log.error("%s; moved the message to %s", exc, failed / path.name)
                result.error = exc
                continue
            result.error = exc
            result.pending = queue[i:]
            log.error("%s; %d digest(s) kept in %s for the next run", exc, len(result.pending), path.parent)
            return result
        path.unlink()
        result.delivered.append(path)
    return result
