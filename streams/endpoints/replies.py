"""What every worker view needs from HTTP: a JSON answer and a body read within a size limit.

Shared by the event ingest, the customer-level views and the vendor webhooks, so all bound
and answer alike (``access.py`` guards them all in one place).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web as aioweb

from salespulse.agents.money import json_default
from salespulse.streams.endpoints.ingest import IngestError


def json_reply(status: int, body: Any, headers: dict[str, str] | None = None) -> Any:
    """A JSON answer; exact amounts (``Decimal``) are decimal strings."""
    return aioweb.Response(
        body=orjson.dumps(body, default=json_default),
        status=status,
        content_type="application/json",
        headers=headers,
    )


async def read_limited(request: Any, limit: int) -> bytes:
    """The raw body, read before any parsing; :class:`IngestError` 413 past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise IngestError(413, f"body is over the {limit}-byte limit")
        chunks.append(chunk)
