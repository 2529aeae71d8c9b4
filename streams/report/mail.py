"""The digest as an email, and sending it with retries.

Delivery uses only the standard library (``email`` and ``smtplib``). The message nests
the plain text, the HTML and its inline PNGs the way every major client renders. A
failed send is retried with backoff and logged; a permanent (5xx) refusal is not retried.
"""

from __future__ import annotations

import logging
import smtplib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from salespulse.streams.report.errors import DigestDeliveryError, ReportError
from salespulse.streams.report.files import image_filename
from salespulse.streams.report.model import CID_DOMAIN, Digest
from salespulse.streams.report.smtp import SmtpSettings

log = logging.getLogger("salespulse.report")


def build_message(digest: Digest, to: Sequence[str], sender: str) -> EmailMessage:
    """multipart/alternative: text/plain, then multipart/related (text/html + inline PNGs).

    This nesting is the one the ``email`` docs show and every major client renders: a
    text-only reader picks the plain part, an HTML reader resolves ``cid:`` inside the
    related part.
    """
    msg = EmailMessage()
    msg["Subject"] = digest.subject
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or CID_DOMAIN)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-SalesPulse-Window"] = digest.window
    msg.set_content(digest.text)
    msg.add_alternative(digest.html, subtype="html")
    html_part = next(p for p in msg.iter_parts() if p.get_content_type() == "text/html")
    for content_id, png in digest.images.items():
        html_part.add_related(
            png,
            maintype="image",
            subtype="png",
            cid=f"<{content_id}>",
            disposition="inline",
            filename=image_filename(content_id),
        )
    return msg


def _permanent(exc: BaseException) -> bool:
    """A 5xx answer (bad recipient, bad credentials) will not get better by retrying."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(500 <= code < 600 for code, _ in exc.recipients.values())
    return isinstance(exc, smtplib.SMTPResponseException) and 500 <= exc.smtp_code < 600


def _reason(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "recipients refused: " + "; ".join(
            f"{addr} ({code} {msg.decode(errors='replace')})" for addr, (code, msg) in exc.recipients.items()
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        error = exc.smtp_error
        text = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
        return f"{exc.smtp_code} {text}"
    return str(exc) or type(exc).__name__


def _connect(smtp: SmtpSettings) -> smtplib.SMTP:
    if smtp.tls == "implicit":
        return smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout, context=smtp.ssl_context())
    return smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)


def _send_once(msg: EmailMessage, smtp: SmtpSettings) -> None:
    with _connect(smtp) as client:
        client.ehlo()
        if smtp.tls == "starttls":
            client.starttls(context=smtp.ssl_context())
            client.ehlo()
        if smtp.user:
            client.login(smtp.user, smtp.password)
        refused = client.send_message(msg)
    for address, (code, answer) in refused.items():
        # The others got it; retrying would send them a second copy.
        log.error("the SMTP server refused %s: %d %s", address, code, answer.decode(errors="replace"))


def deliver(
    msg: EmailMessage,
    smtp: SmtpSettings,
    retries: int = 3,
    backoff: float = 2.0,
    sleep: Callable[[float], object] = time.sleep,
) -> int:
    """Send ``msg``, trying up to ``retries`` times (waits ``backoff``, 2x``backoff``, ...).

    Returns the number of attempts used. Raises :class:`DigestDeliveryError` when every
    attempt failed, or at once on a permanent (5xx) refusal.
    """
    if smtp.user and smtp.tls == "none" and smtp.host not in {"localhost", "127.0.0.1", "::1"}:
        log.warning("sending SMTP credentials to %s without TLS", smtp.address)
    to = str(msg["To"])
    attempts = max(1, retries)
    for attempt in range(1, attempts + 1):
        try:
            _send_once(msg, smtp)
            if attempt > 1:
                log.info("digest delivered to %s on attempt %d", to, attempt)
            return attempt
        except (OSError, smtplib.SMTPException) as exc:
            reason = _reason(exc)
            permanent = _permanent(exc)
            log.warning(
                "digest delivery attempt %d/%d to %s via %s failed: %s",
                attempt,
                attempts,
                to,
                smtp.address,
                reason,
            )
            if permanent or attempt == attempts:
                tries = f"{attempt} attempt{'s' if attempt > 1 else ''}"
                raise DigestDeliveryError(
                    f"could not deliver the digest to {to} via {smtp.address} after {tries}: {reason}"
                    + (" (permanent refusal, not retried)" if permanent and attempt < attempts else ""),
                    attempts=attempt,
                    permanent=permanent,
                ) from None
            sleep(backoff * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def send_digest(
    digest: Digest,
    to: Sequence[str],
    smtp: SmtpSettings,
    retries: int = 3,
    backoff: float = 2.0,
    sleep: Callable[[float], object] = time.sleep,
) -> int:
    """Email the digest (HTML with inline charts, plain-text alternative); return attempts used."""
    if not to:
        raise ReportError("no recipients for the digest")
    return deliver(build_message(digest, to, smtp.from_address), smtp, retries, backoff, sleep)
