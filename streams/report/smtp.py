"""The SMTP settings of the digest, read from the ``SALESPULSE_SMTP_*`` variables.

Delivery is configured only through the environment, like the rest of SalesPulse; this
module validates those variables once and keeps the password out of ``repr``. A server is
reached in plain SMTP, upgraded with STARTTLS (submission, port 587) or over TLS from the
first byte (implicit TLS, port 465, which many providers offer as the only way in), and
its certificate is verified against the system's CAs or a given bundle.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

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


#: ``SALESPULSE_SMTP_TLS``: none, STARTTLS after connecting, or TLS from the first byte.
TlsMode = Literal["none", "starttls", "implicit"]
TLS_MODES: tuple[TlsMode, ...] = ("none", "starttls", "implicit")
#: The port of SMTP over implicit TLS (RFC 8314), which alone implies ``implicit``.
SMTPS_PORT = 465


def _tls(env: Mapping[str, str], port: int) -> TlsMode:
    raw = env.get("SALESPULSE_SMTP_TLS", "").strip().lower()
    starttls = _flag(env, "SALESPULSE_SMTP_STARTTLS", False)
    if not raw:
        return "starttls" if starttls else "implicit" if port == SMTPS_PORT else "none"
    mode = next((m for m in TLS_MODES if m == raw), None)
    if mode is None:
        raise SettingsError(f"SALESPULSE_SMTP_TLS={raw!r} is not one of {', '.join(TLS_MODES)}")
    if starttls and mode != "starttls":
        raise SettingsError(f"SALESPULSE_SMTP_STARTTLS=1 contradicts SALESPULSE_SMTP_TLS={mode}")
    return mode


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


def _file(env: Mapping[str, str], name: str) -> str:
    path = env.get(name, "").strip()
    if path and not os.path.isfile(path):
        raise SettingsError(f"{name}={path!r} is not a file")
    return path


@dataclass(frozen=True)
class SmtpSettings:
    """Where the digest is sent from: the ``SALESPULSE_SMTP_*`` variables."""

    host: str = "localhost"
    port: int = 25
    tls: TlsMode = "none"
    user: str = ""
    password: str = field(default="", repr=False)
    sender: str = ""
    timeout: float = 30.0
    ca_file: str = ""  # a PEM bundle to verify the server against instead of the system's CAs

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

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies the server's certificate and name, against ``ca_file`` when one is given."""
        return ssl.create_default_context(cafile=self.ca_file or None)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SmtpSettings:
        """Read ``SALESPULSE_SMTP_{HOST,PORT,TLS,STARTTLS,USER,PASSWORD,FROM,TIMEOUT,CA_FILE}``."""
        env = os.environ if env is None else env
        port = _number(env, "SALESPULSE_SMTP_PORT", 25, int)
        if port > 65535:
            raise SettingsError(f"SALESPULSE_SMTP_PORT={port} is not a port")
        return cls(
            host=env.get("SALESPULSE_SMTP_HOST", "").strip() or "localhost",
            port=port,
            tls=_tls(env, port),
            user=env.get("SALESPULSE_SMTP_USER", ""),
            password=env.get("SALESPULSE_SMTP_PASSWORD", ""),
            sender=env.get("SALESPULSE_SMTP_FROM", "").strip(),
            timeout=float(_number(env, "SALESPULSE_SMTP_TIMEOUT", 30.0, float)),
            ca_file=_file(env, "SALESPULSE_SMTP_CA_FILE"),
        )
