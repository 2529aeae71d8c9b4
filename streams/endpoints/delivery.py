"""Writing events that came in over HTTP: each to its topic, keyed and placed as the contract says.

``POST /events`` and the vendor webhooks both answer success only after the broker has
acknowledged every record they write, events and dead letters alike, so a sender that gets
an error can resend and the event ids make the resend count once.

Events go out as record batches per topic and partition (as the changelog does), not one
``send`` each: 35,000 sends queued 35,000 futures, and resolving them when the broker
answered held the event loop for some 80 ms at a time. Between every :data:`YIELD_EVERY`
events the loop gets a turn, so ``/healthz`` answers while the largest request is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from salespulse.schemas import exact_json
from salespulse.schemas.partitions import partition_for
from salespulse.schemas.topics import DEADLETTER, route

if TYPE_CHECKING:
    from salespulse.streams.pipeline.runtime import Runtime

#: Dead letters: (value, headers) pairs for ``crm.deadletter``.
DeadLetters = Sequence[tuple[bytes, list[tuple[str, bytes]]]]
#: Events encoded and batched between two turns of the event loop (a few milliseconds, or
#: some tens while the consumer thread decodes fetches).
YIELD_EVERY = 100


async def send_all(
    runtime: Runtime, events: Sequence[dict[str, Any]], dead_letters: DeadLetters = ()
) -> None:
    """Send every event and dead letter, and return once the broker has acknowledged all."""
    producer = runtime.kafka_producer()
    futures = []
    batches: dict[tuple[str, int], Any] = {}
    for i, event in enumerate(events, 1):
        topic, key = route(event)
        where = (topic, partition_for(key, runtime.partition_count(topic)))
        value = exact_json.dumps(event)
        batch = batches.get(where)
        if batch is None or batch.append(key=key, value=value, timestamp=None) is None:
            if batch is not None:  # full: it goes out, and a new one takes the event
                futures.append(await producer.send_batch(batch, where[0], partition=where[1]))
            batch = batches[where] = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)  # an empty batch takes any record
        if i % YIELD_EVERY == 0:
            await asyncio.sleep(0)
    for (topic, partition), batch in batches.items():
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    for value, headers in dead_letters:
        futures.append(await producer.send(DEADLETTER, value, headers=headers))
    await asyncio.gather(*futures)
