"""Deterministic event ids for facts that come from a vendor.

Vendors retry, reorder and redeliver, and one fact can be notified several times (a webhook
and an outbound message, a retry after a timeout). Deriving the id from what the fact *is*
(which system, which account, which object, which canonical event) makes every copy carry
the same id, so the worker's dedupe counts it once. Every connector, webhook or poller,
derives its ids here, so two connectors can never disagree on the rule.

An opportunity changes many times, so its ``opportunity.updated`` facts are versions: the
object of each is the opportunity at its modification time (:func:`version_of`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

#: Separates the parts before hashing, so ("a:b", "c") and ("a", "b:c") differ.
_SEPARATOR = "\x1f"


def derive_event_id(source: str, account: str, object_id: str, event_type: str) -> str:
    """The event id of ``event_type`` about ``object_id`` in ``source``'s ``account``.

    It reads ``<source>-<32 hex digits>``: the source stays visible for tracing a dead letter
    back to its sender, and 128 bits of SHA-256 keep ids of different facts apart.
    """
    digest = hashlib.sha256(_SEPARATOR.join((source, account, object_id, event_type)).encode()).hexdigest()
    return f"{source}-{digest[:32]}"


def state_digest(state: Mapping[str, Any]) -> str:
    """A short fingerprint of an opportunity's state (64 bits of SHA-256 over its sorted JSON):
    equal states give equal digests, so a connector can tell a change from a re-read. Amounts
    are the exact decimals the vendor spelled, written as their text."""
    text = orjson.dumps(state, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(text).hexdigest()[:16]


def version_of(opportunity_id: str, modified_at: str, state: Mapping[str, Any] | None = None) -> str:
    """The object id of one version of an opportunity, for :func:`derive_event_id`.

    A vendor's modification times have seconds, so two changes in one second would share a
    time: the state's digest keeps them two facts, while a redelivery (the same time, the
    same state) stays one. ``state`` is None for a connector that reads the state when the
    notification arrives (HubSpot): a retry may read a newer state and must still count once.
    """
    version = modified_at if state is None else f"{modified_at}#{state_digest(state)}"
    return f"{opportunity_id}@{version}"
