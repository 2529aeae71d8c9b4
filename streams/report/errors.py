"""Errors of the KPI digest.

Kept apart so every part of the package (fetching, mailing, scheduling, the command line)
can raise the same user-facing errors, and the CLI can catch :class:`ReportError` and
print its message without a traceback.
"""

from __future__ import annotations


class ReportError(RuntimeError):
    """A problem the user can fix (workers down, bad option, SMTP unreachable): no traceback."""


class DigestDeliveryError(ReportError):
    """The digest could not be handed to the SMTP server."""

    def __init__(self, message: str, *, attempts: int, permanent: bool = False) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.permanent = permanent
