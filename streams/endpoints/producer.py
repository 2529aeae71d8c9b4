"""The producer SDK for upstream systems, built on kafka-python.

It validates each event against ``schemas/``, routes it to its topic and sets the message
key the contract asks for, so keyed state lands in one partition. It fails with a clear
error, not a hang, when the broker cannot be reached within the timeout.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.partitioner import DefaultPartitioner

from salespulse.schemas import exact_json
from salespulse.schemas.codec import Rejected, check_event
from salespulse.schemas.partitions import partition_for
from salespulse.schemas.topics import route
from salespulse.streams.settings import Settings


class BrokerUnavailable(RuntimeError):
    """The broker did not answer, or did not acknowledge, within the timeout."""


class ContractPartitioner(DefaultPartitioner):  # type: ignore[misc]
    """Keys placed by the contract's own function (schemas/partitions.py), not a copy of it."""

    def partition(
        self,
        topic: str,
        key: Any,
        serialized_key: bytes | None,
        value: Any,
        serialized_value: Any,
        cluster: Any,
    ) -> int:
        if serialized_key is None:  # only raw sends of test or replay bytes have no key
            return int(super().partition(topic, key, serialized_key, value, serialized_value, cluster))
        partitions = sorted(cluster.partitions_for_topic(topic))
        return int(partitions[partition_for(serialized_key, len(partitions))])


class EventProducer:
    """Validated, routed, keyed sends; use as a context manager or call :meth:`close`."""

    def __init__(self, settings: Settings, *, timeout: float | None = None, **extra: Any) -> None:
        self.timeout = settings.broker_timeout if timeout is None else timeout
        self.brokers = ",".join(settings.brokers)
        ms = int(self.timeout * 1000)
        try:
            self._producer = KafkaProducer(
                **settings.kafka_python_config,
                acks="all",
                linger_ms=5,
                max_block_ms=ms,
                request_timeout_ms=ms,
                bootstrap_timeout_ms=ms,
                delivery_timeout_ms=ms + 1000,
                partitioner=ContractPartitioner(),
                **extra,
            )
        except KafkaError as exc:
            raise BrokerUnavailable(
                f"cannot reach the broker at {self.brokers} within {self.timeout:.0f}s: {exc}"
            ) from None
        self._pending: list[Any] = []

    def send(self, event: dict[str, Any]) -> None:
        """Validate and send one event (raises :class:`~salespulse.schemas.codec.Rejected`)."""
        event = check_event(event)
        topic, key = route(event)
        try:
            self._pending.append(self._producer.send(topic, exact_json.dumps(event), key=key))
        except KafkaError as exc:
            raise BrokerUnavailable(f"cannot send to {self.brokers}: {exc}") from None

    def send_raw(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Send bytes as they are (tests of bad input, replays, dead letters, tombstones)."""
        self._pending.append(self._producer.send(topic, value, key=key, headers=headers))

    def send_many(self, events: Iterable[dict[str, Any]]) -> int:
        """Validate every event first; send them only if all are valid."""
        checked = []
        for i, event in enumerate(events):
            try:
                checked.append(check_event(event))
            except Rejected as exc:
                raise Rejected(exc.reason, f"event {i}: {exc.detail}", exc.field) from None
        for event in checked:
            self.send(event)
        return len(checked)

    def flush(self) -> None:
        """Wait until the broker has acknowledged everything sent so far."""
        deadline = time.monotonic() + self.timeout
        try:
            self._producer.flush(self.timeout)
            for future in self._pending:
                future.get(timeout=max(0.1, deadline - time.monotonic()))
        except KafkaError as exc:
            raise BrokerUnavailable(
                f"the broker at {self.brokers} did not acknowledge within {self.timeout:.0f}s: {exc}"
            ) from None
        finally:
            self._pending.clear()

    def close(self) -> None:
        self._producer.close(timeout=self.timeout)

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.flush()
        self.close()
