"""Deterministic event ids for facts that come from a vendor.

Vendors retry, reorder and redeliver, and one fact can be notified several times (a webhook
and an outbound message, a retry after a timeout). Deriving the id from what the fact *is*
(which system, which account, which object, which canonical event) makes every copy carry
the same id, so the worker's dedupe counts it once. Every connector, webhook or poller,
derives its ids here, so two connectors can never disagree on the rule.
"""

from __future__ import annotations

import hashlib

#: Separates the parts before hashing, so ("a:b", "c") and ("a", "b:c") differ.
_SEPARATOR = "\x1f"


def derive_event_id(source: str, account: str, object_id: str, event_type: str) -> str:
    """The event id of ``event_type`` about ``object_id`` in ``source``'s ``account``.

    It reads ``<source>-<32 hex digits>``: the source stays visible for tracing a dead letter
    back to its sender, and 128 bits of SHA-256 keep ids of different facts apart.
    """
    digest = hashlib.sha256(_SEPARATOR.join((source, account, object_id, event_type)).encode()).hexdigest()
    return f"{source}-{digest[:32]}"
