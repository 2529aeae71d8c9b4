"""The naive reference path for ``salespulse bench``: a per-event faust agent.

One agent, one table update per event, faust's normal message path: what a first faust
implementation would look like. It runs as its own process and prints one JSON line
with its timing once it has counted ``--count`` events.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

import click
import faust
import orjson

from salespulse.streams.pipeline.worker import faust_worker


@click.command()
@click.option("--broker", required=True)
@click.option("--topic", required=True)
@click.option("--count", type=int, required=True)
@click.option("--web-port", type=int, required=True)
@click.option("--partitions", type=int, default=4)
def main(broker: str, topic: str, count: int, web_port: int, partitions: int) -> None:
    app = faust.App(
        "salespulse-naive",
        broker=f"kafka://{broker}",
        store="memory://",
        topic_partitions=partitions,
        web_port=web_port,
        web_bind="127.0.0.1",
        consumer_auto_offset_reset="earliest",
        broker_rebalance_timeout=3.0,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
    )
    source = app.topic(topic, value_serializer="raw", partitions=partitions)
    table = app.Table("naive-counts", default=int, partitions=partitions)
    seen: dict[str, Any] = {"n": 0, "first": None}

    @app.agent(source)
    async def count_events(stream: faust.StreamT[bytes]) -> None:
        async for value in stream:
            if seen["first"] is None:
                seen["first"] = time.perf_counter()
            table[orjson.loads(value)["type"]] += 1
            seen["n"] += 1
            if seen["n"] == count:
                elapsed = time.perf_counter() - seen["first"]
                sys.stdout.write(orjson.dumps({"events": count, "seconds": elapsed}).decode() + "\n")
                sys.stdout.flush()
                os.kill(os.getpid(), signal.SIGTERM)

    faust_worker(app, "warning").execute_from_commandline()


if __name__ == "__main__":
    main()
