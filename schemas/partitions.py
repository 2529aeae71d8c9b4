"""Which partition a message key belongs on: Kafka's default murmur2 partitioner.

Keyed state (a customer, a team, a product) is exact only if every copy of a key lands on
one partition, so the partitioner is part of the contract. The Java client, kafka-python
and aiokafka use this function; librdkafka, Sarama and kafka-go do not by default
(docs/events.md). SalesPulse's own producers use it, and the worker checks every input
record against it and reroutes the ones that arrived elsewhere.

The arithmetic stays below 2**49, so the compiled hot path never leaves machine integers.
"""

from __future__ import annotations

from typing import Final

_SEED: Final = 0x9747B28C
_M: Final = 0x5BD1E995
_M_LOW: Final = _M & 0xFFFF
_M_HIGH: Final = _M >> 16
_MASK: Final = 0xFFFFFFFF


def _times_m(k: int) -> int:
    """``k * 0x5bd1e995`` modulo 2**32, in two halves so no product passes 2**48."""
    return (k * _M_LOW + (((k * _M_HIGH) & 0xFFFF) << 16)) & _MASK


def murmur2(data: bytes) -> int:
    """MurmurHash2 as Kafka's clients compute it (``org.apache.kafka.common.utils.Utils``)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    tail = length & ~3
    for i in range(0, tail, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = _times_m(k)
        k ^= k >> 24
        k = _times_m(k)
        h = _times_m(h) ^ k
    rest = length & 3
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = _times_m(h)
    h ^= h >> 13
    h = _times_m(h)
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition a keyed message belongs on, out of ``partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
