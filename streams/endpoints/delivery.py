"""Writing events that came in over HTTP: each to its topic, keyed and placed as the contract says.

``POST /events`` and the vendor webhooks both answer success only after the broker has
acknowledged every record they write, events and dead letters alike, so a sender that gets
an error can resend and the event ids make the resend count once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from salespulse.schemas.partitions import partition_for
from salespulse.schemas.topics import DEADLETTER, route

if TYPE_CHECKING:
    from salespulse.streams.pipeline.runtime import Runtime

#: Dead letters: (value, headers) pairs for ``crm.deadletter``.
DeadLetters = Sequence[tuple[bytes, list[tuple[str, bytes]]]]


async def send_all(
    runtime: Runtime, events: Sequence[dict[str, Any]], dead_letters: DeadLetters = ()
) -> None:
    """Send every event and dead letter, and return once the broker has acknowledged all."""
    producer = runtime.kafka_producer()
    futures = []
    for event in events:
        topic, key = route(event)
        partition = partition_for(key, runtime.partition_count(topic))
        futures.append(await producer.send(topic, orjson.dumps(event), key=key, partition=partition))
    for value, headers in dead_letters:
        futures.append(await producer.send(DEADLETTER, value, headers=headers))
    await asyncio.gather(*futures)
