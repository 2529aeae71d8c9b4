"""The worker's token when none is configured: generated once, kept in the data dir.

A worker with no ``SALESPULSE_INGEST_TOKEN`` is still closed (``access.py``): at its first
start it writes a strong random token to ``SALESPULSE_DATA_DIR/ingest-token`` (mode 0600,
nothing but the token) and uses that one from then on. The CLI on the same machine reads it
from there, so the demo and a lone worker need no setting; several workers need one
configured token, since each would generate its own.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from salespulse.streams.settings import Secret, Settings, check_secret

log = logging.getLogger("salespulse.access")

TOKEN_FILE = "ingest-token"
TOKEN_SETTING = "SALESPULSE_INGEST_TOKEN"
METRICS_TOKEN_SETTING = "SALESPULSE_METRICS_TOKEN"


def token_path(data_dir: Path) -> Path:
    return data_dir / TOKEN_FILE


def read_token(data_dir: Path) -> str:
    """The token stored in ``data_dir``, or "" if there is none (or it cannot be read)."""
    try:
        return token_path(data_dir).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def stored_token(data_dir: Path) -> str:
    """The token stored in ``data_dir``, written there first if there is none."""
    path = token_path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting at once keep one token, the first one written.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = read_token(data_dir)
        check_secret(str(path), token)
        log.info("no %s set: HTTP clients need the token in %s", TOKEN_SETTING, path)
        return token
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(token + "\n")
    log.warning(
        "no %s set: generated a token into %s (mode 0600); the CLI on this machine reads it"
        " from there, other clients send it as 'Authorization: Bearer <token>'",
        TOKEN_SETTING,
        path,
    )
    return token


def worker_settings(settings: Settings) -> Settings:
    """``settings`` with the token the worker serves with: the configured one, else the stored one."""
    if settings.ingest_token:
        return settings
    return settings.with_overrides(ingest_token=Secret(stored_token(settings.data_dir)))


def client_token(settings: Settings) -> str:
    """The token a local client sends: the configured one, else the one a worker stored."""
    return settings.ingest_token or read_token(settings.data_dir)
