"""Event ids with the offset each was first seen at, expiring by event time, in little memory.

Dedupe has to remember every id within retention (62 days): two million ids in a
partition is ordinary. A Python dict spends about 150 bytes on each; here new ids go to
a small dict and are merged, in bulk, into three sorted numpy columns (key, hour, first
offset) of 20 bytes an id. The small dict is held to a sixteenth of the columns: a merge
moves every id in the columns, so that costs 16 moves of 20 bytes an id, and the dict
stays at a few bytes an id on average. A lookup misses the small dict and binary-searches
the columns, unless a Bloom filter over the columns (2 to 4 bytes an id) says the id cannot
be there, which is the common case: most ids are new.

An id is kept as the 64-bit ``hash(event_id)`` (stable within a process; the changelog
keeps the id itself and restore hashes it again), with the event-time hour of its first
copy, which decides when it expires. A later copy is a duplicate whatever its own time:
connectors and CRMs re-stamp facts. Two distinct ids colliding in one partition is the one
way an event could be taken for a duplicate: about n²/2⁶⁵, 1e-7 for 2,000,000 ids in a
partition.

The changelog gets the new ids in chunks of :data:`SEEN_CHUNK`, each keyed by its first id's
offset. Each chunk key remembers the newest hour of its batch's ids (one compare an id, where
a chunk's own maximum cost a pass over it), so a chunk whose ids have all expired gets a
tombstone and compaction reclaims it: the seen-id records on the changelog stay those of
the retention, not of every id ever seen.

:class:`IdMemory` is the memory with the book of its changelog records; :class:`SeenIds`
writes event ids in the chunks above, and ``outcomes.py`` keeps deal outcomes and survey
responses the same way for years, in records of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import numpy as np
import numpy.typing as npt

#: Ids per changelog record.
SEEN_CHUNK = 4096
#: Merge the small dict into the columns once they hold this many ids, or the columns'
#: size >> MERGE_SHIFT if that is more, so merging stays linear overall.
MERGE_AT = 1 << 14
MERGE_SHIFT = 4
#: Bloom filter bits per id in the columns, and the shift that gives the second probe.
BLOOM_BITS_PER_ID = 16
_SECOND_PROBE = 29
#: A recent id's value is ``first offset << _HOUR_BITS | hour``: event-time hours since 1970
#: stay below 2**32 until past the year 9999 the contract allows, offsets below 2**63.
_HOUR_BITS = 32
_HOUR_MASK = (1 << _HOUR_BITS) - 1


class IdMemory:
    """Ids of one source topic partition with their first offsets; ``pending`` is what the
    changelog must still get, and ``chunks`` the changelog records that hold them."""

    def __init__(self) -> None:
        # Ids not yet merged into the columns: first offset << 32 | the hour they expire with.
        # One dict of one int an id: two dicts of an int each cost about 70 bytes an id more.
        self.recent: dict[int, int] = {}
        self.keys: npt.NDArray[np.int64] = np.empty(0, np.int64)
        self.hours: npt.NDArray[np.int32] = np.empty(0, np.int32)
        self.offsets: npt.NDArray[np.int64] = np.empty(0, np.int64)
        self.bloom = bytearray(1)
        self.bloom_mask = 7
        self.pending: list[object] = []
        #: The newest hour among the pending ids: each chunk they go out in is at most as new.
        self.pending_newest = -1
        self.oldest_hour: int | None = None
        self.changed = False
        #: The changelog's chunk keys with the newest hour of their ids, and the keys of
        #: chunks whose ids have all expired since the last drain (their tombstones).
        self.chunks: dict[int, int] = {}
        self.expired_chunks: set[int] = set()

    def __len__(self) -> int:
        return len(self.recent) + len(self.keys)

    def first_offset(self, hour: int, event_id: str, offset: int) -> int:
        """The offset ``event_id`` was first seen at; records ``offset`` (in ``hour``) if earliest."""
        first = self._offer(hour, hash(event_id), offset)
        if self.changed:
            self.pending += (hour, event_id, offset)
            if hour > self.pending_newest:
                self.pending_newest = hour
        return first

    def offered(self, hour: int, event_id: str, offset: int, late: bool) -> int:
        """:meth:`first_offset`, but a late copy (its hour already out of retention) is only
        looked up with :meth:`known_offset`: it can be a duplicate, never remembered."""
        return self.known_offset(event_id, offset) if late else self.first_offset(hour, event_id, offset)

    def known_offset(self, event_id: str, offset: int) -> int:
        """The offset ``event_id`` was first seen at, or ``offset`` if unknown; records nothing."""
        key = hash(event_id)
        packed = self.recent.get(key)
        if packed is not None:
            return min(packed >> _HOUR_BITS, offset)
        i = self._column(key)
        return offset if i < 0 else min(int(self.offsets[i]), offset)

    def _offer(self, hour: int, key: int, offset: int) -> int:
        """Record ``offset`` if it is the first seen; ``changed`` says whether it was."""
        self.changed = True
        recent = self.recent
        packed = recent.get(key)
        if packed is not None:
            first = packed >> _HOUR_BITS
            if first > offset:
                recent[key] = offset << _HOUR_BITS | packed & _HOUR_MASK
                return offset
            self.changed = False
            return first
        i = self._column(key)
        if i >= 0:
            first = int(self.offsets[i])
            if first > offset:
                self.offsets[i] = first = offset
            else:
                self.changed = False
            return first
        recent[key] = offset << _HOUR_BITS | hour
        if len(recent) >= max(MERGE_AT, len(self.keys) >> MERGE_SHIFT):
            self._merge()
        return offset

    def _column(self, key: int) -> int:
        """The id's position in the merged columns, or -1 if it is not there."""
        if not self._maybe_in_columns(key):
            return -1
        keys = self.keys
        i = int(keys.searchsorted(key))
        return i if i < len(keys) and keys[i] == key else -1

    def _maybe_in_columns(self, key: int) -> bool:
        bloom, mask = self.bloom, self.bloom_mask
        p, q = key & mask, (key >> _SECOND_PROBE) & mask
        return bool(bloom[p >> 3] >> (p & 7) & 1 and bloom[q >> 3] >> (q & 7) & 1)

    def _build_bloom(self) -> None:
        """Size the filter for the columns, and set the bits of every id in them."""
        bits = 8
        while bits < BLOOM_BITS_PER_ID * len(self.keys):
            bits *= 2
        self.bloom, self.bloom_mask = bytearray(bits // 8), bits - 1
        self._add_to_bloom(self.keys)

    def _add_to_bloom(self, keys: npt.NDArray[np.int64]) -> None:
        mask = self.bloom_mask
        bloom = np.frombuffer(self.bloom, np.uint8)  # a view: the bits are set in place
        for probe in (keys & mask, (keys >> _SECOND_PROBE) & mask):
            np.bitwise_or.at(bloom, probe >> 3, (1 << (probe & 7)).astype(np.uint8))

    def _merge(self) -> None:
        n = len(self.recent)
        keys = np.fromiter(self.recent.keys(), np.int64, n)
        # Unpacked one by one: a packed value passes 64 bits once an offset passes 2**32.
        offsets = np.fromiter((v >> _HOUR_BITS for v in self.recent.values()), np.int64, n)
        hours = np.fromiter((v & _HOUR_MASK for v in self.recent.values()), np.int32, n)
        order = keys.argsort()
        keys, hours, offsets = keys[order], hours[order], offsets[order]
        where = self.keys.searchsorted(keys)
        self.keys = np.insert(self.keys, where, keys)
        self.hours = np.insert(self.hours, where, hours)
        self.offsets = np.insert(self.offsets, where, offsets)
        self.recent.clear()
        # Merges come often: only a filter that has to grow is built again from all ids.
        if BLOOM_BITS_PER_ID * len(self.keys) > self.bloom_mask + 1:
            self._build_bloom()
        else:
            self._add_to_bloom(keys)

    def expire(self, oldest_hour: int) -> None:
        """Drop hours that left retention, and the chunks that held only those; a no-op until
        the clock enters a new hour."""
        if oldest_hour == self.oldest_hour:
            return
        self.oldest_hour = oldest_hour
        for key in [k for k, newest in self.chunks.items() if newest < oldest_hour]:
            del self.chunks[key]
            self.expired_chunks.add(key)
        for key in [k for k, packed in self.recent.items() if packed & _HOUR_MASK < oldest_hour]:
            del self.recent[key]
        if len(self.hours) and int(self.hours.min()) < oldest_hour:
            keep = self.hours >= oldest_hour
            self.keys, self.hours, self.offsets = self.keys[keep], self.hours[keep], self.offsets[keep]
            self._build_bloom()

    def _track(self, key: int, newest: int) -> None:
        """Remember a chunk's newest hour (a chunk written again under its key keeps the later)."""
        self.chunks[key] = max(newest, self.chunks.get(key, newest))

    def restore(self, key: int, flat: list[Any] | None, oldest_hour: int) -> None:
        """Take back a changelog chunk of ``hour, event_id, offset`` triples; a tombstone
        (``None``) only forgets the chunk. A chunk whose ids have all expired here is owed
        a tombstone: its writer stopped before it wrote one."""
        if flat is None:
            self.chunks.pop(key, None)
            self.expired_chunks.discard(key)
            return
        self._track(key, max(flat[0::3]))
        if self.chunks[key] < oldest_hour:
            del self.chunks[key]
            self.expired_chunks.add(key)
            return
        self.offer_restored(flat, oldest_hour)

    def offer_restored(self, flat: list[Any], oldest_hour: int) -> None:
        """Take back the ``hour, id, offset`` triples of a changelog record, expired ones left out."""
        for i in range(0, len(flat), 3):
            hour, event_id, offset = flat[i], flat[i + 1], flat[i + 2]
            if hour >= oldest_hour:
                self._offer(hour, hash(event_id), offset)


class SeenIds(IdMemory):
    """The event ids of one source topic partition, in changelog chunks of :data:`SEEN_CHUNK`."""

    def drain(self) -> Iterator[tuple[int, list[object] | None]]:
        """What the changelog is owed: ``(key, None)``, a tombstone, for each chunk whose ids
        all expired, then ``(key, chunk)`` for the pending ids, keyed by the first's offset."""
        for key in self.expired_chunks:
            yield key, None
        self.expired_chunks.clear()
        pending = self.pending
        for i in range(0, len(pending), SEEN_CHUNK * 3):
            chunk = pending[i : i + SEEN_CHUNK * 3]
            key = cast(int, chunk[2])
            self._track(key, self.pending_newest)
            yield key, chunk
        pending.clear()
        self.pending_newest = -1
