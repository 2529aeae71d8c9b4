"""The SMTP settings of the digest, read from the ``SALESPULSE_SMTP_*`` variables.

Delivery is configured only through the environment, like the rest of SalesPulse; this
module validates those variables once and keeps the password out of ``repr``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from salespulse.streams.settings import SettingsError


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}={raw!r} is not 0 or 1")


def _number(env: Mapping[str, str], name: str, default: float, kind: type[int] | type[float]) -> Any:
    raw = env.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be positive")
    return value


@dataclass(frozen=True)
class SmtpSettings:
    """Where the digest is sent from: the ``SALESPULSE_SMTP_*`` variables."""

    host: str = "localhost"
    port: int = 25
    starttls: bool = False
    user: str = ""
    password: str = field(default="", repr=False)
    sender: str = ""
    timeout: float = 30.0

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "password" and value:
                value = "***"
            shown.append(f"{f.name}={value!r}")
        return f"SmtpSettings({', '.join(shown)})"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def from_address(self) -> str:
        return self.sender or f"salespulse@{socket.gethostname()}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SmtpSettings:
        """Read ``SALESPULSE_SMTP_{HOST,PORT,STARTTLS,USER,PASSWORD,FROM,TIMEOUT}``."""
        env = os.environ if env is None else env
        port = _number(env, "SALESPULSE_SMTP_PORT", 25, int)
        if port > 65535:
            raise SettingsError(f"SALESPULSE_SMTP_PORT={port} is not a port")
        return cls(
            host=env.get("SALESPULSE_SMTP_HOST", "").strip() or "localhost",
            port=port,
            starttls=_flag(env, "SALESPULSE_SMTP_STARTTLS", False),
            user=env.get("SALESPULSE_SMTP_USER", ""),
            password=env.get("SALESPULSE_SMTP_PASSWORD", ""),
            sender=env.get("SALESPULSE_SMTP_FROM", "").strip(),
            timeout=float(_number(env, "SALESPULSE_SMTP_TIMEOUT", 30.0, float)),
        )
