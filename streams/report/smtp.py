"""The SMTP settings of the digest, read from the ``SALESPULSE_SMTP_*`` variables.

Delivery is configured only through the environment, like the rest of SalesPulse; the
variables are declared here once, with their types and bounds, and read by the same
loader as every other setting (``streams/settings.py``), which keeps the password out of
``repr``. A server is reached in plain SMTP, upgraded with STARTTLS (submission, port 587)
or over TLS from the first byte (implicit TLS, port 465, which many providers offer as the
only way in), and its certificate is verified against the system's CAs or a given bundle.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Mapping
from typing import Annotated, Final, Literal

import msgspec

from salespulse.streams.settings import Duration, Secret, SettingsError, meaning, read

#: ``SALESPULSE_SMTP_TLS``: none, STARTTLS after connecting, or TLS from the first byte.
TlsMode = Literal["none", "starttls", "implicit"]
#: The port of SMTP over implicit TLS (RFC 8314), which alone implies ``implicit``.
SMTPS_PORT: Final = 465


class SmtpSettings(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    rename=lambda name: "SALESPULSE_SMTP_" + ("FROM" if name == "sender" else name.upper()),
):
    """Where the digest is sent from: the ``SALESPULSE_SMTP_*`` variables."""

    host: Annotated[str, meaning("SMTP server of `salespulse report --email`")] = "localhost"
    port: Annotated[
        int,
        meaning("port: 587 with STARTTLS for a submission server, 465 for implicit TLS", ge=1, le=65535),
    ] = 25
    tls: Annotated[
        TlsMode,
        meaning(
            "`starttls` to upgrade the connection with STARTTLS, `implicit` for TLS from the first"
            " byte (SMTPS, RFC 8314), `none` for plain SMTP. See [SMTP settings](digest.md#smtp-settings)",
            shown="`none`, or `implicit` on port 465",
        ),
    ] = "none"
    starttls: Annotated[
        bool, meaning("`1` is the same as `SALESPULSE_SMTP_TLS=starttls` (the older spelling)")
    ] = False
    user: Annotated[str, meaning("login user; no login when empty")] = ""
    password: Annotated[Secret, meaning("login password")] = Secret("")
    sender: Annotated[
        str,
        meaning("sender address; set it, many servers reject the default", shown="`salespulse@<hostname>`"),
    ] = ""
    timeout: Annotated[Duration, meaning("per SMTP connection and command", gt=0)] = 30.0
    ca_file: Annotated[
        str,
        meaning(
            "a PEM file of CA certificates to verify the server against instead of the system's"
            " (a relay with a private CA)"
        ),
    ] = ""

    def __post_init__(self) -> None:
        if self.ca_file and not os.path.isfile(self.ca_file):
            raise SettingsError(f"SALESPULSE_SMTP_CA_FILE={self.ca_file!r} is not a file")

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
        """Read ``SALESPULSE_SMTP_*``; the TLS mode follows the port or the older STARTTLS flag
        when ``SALESPULSE_SMTP_TLS`` is not set."""
        env = os.environ if env is None else env
        smtp = read(cls, env, {"tls": str.lower})
        if not env.get("SALESPULSE_SMTP_TLS", "").strip():
            implied: TlsMode = (
                "starttls" if smtp.starttls else "implicit" if smtp.port == SMTPS_PORT else "none"
            )
            return msgspec.structs.replace(smtp, tls=implied)
        if smtp.starttls and smtp.tls != "starttls":
            raise SettingsError(f"SALESPULSE_SMTP_STARTTLS=1 contradicts SALESPULSE_SMTP_TLS={smtp.tls}")
        return smtp
