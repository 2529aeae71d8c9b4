"""Deal outcomes and survey responses remembered for years, so each counts once for life.

A won deal edited in the CRM comes again as ``deal.won``: Salesforce sends it at the deal's
LastModifiedDate, Delighted's ids change with updated_at, and an edit months later is long
past the 62 days event ids are remembered (``seen_ids.py``). So each source topic partition
remembers the outcomes it applied by what they are: ``won <deal_id>``, ``lost <deal_id>`` and
a survey answer's ``response_id``, for ``SALESPULSE_OUTCOME_MEMORY`` (3 years) after the
event-time hour of the first copy, with the offset that copy was applied at, so a replay
after a crash is never taken for a duplicate of itself. In memory an outcome is kept exactly
as an event id is (its ``hash()``, hour and first offset in sorted columns: about 25 bytes).

The changelog keeps the ids themselves, so each worker hashes them with its own seed, in a
few keys a partition instead of one a batch:

- a batch's new outcomes go out as one ``new`` record, keyed by the offset of the first;
- every :data:`FOLD_EVERY` such records, or once they and the part being filled hold
  :data:`PART_SIZE` outcomes, they are folded into ``part`` records of :data:`PART_SIZE`
  outcomes numbered from 0. The last part fills up over several folds and is written again
  whole each time, so its newest record holds all it ever held; then the folded ``new``
  records get their tombstones. Writes to a changelog partition complete in order and a
  failed one stops the worker, so those tombstones are never on the broker without the part;
- a part or ``new`` record whose outcomes have all left the memory gets its tombstone.

So a partition's live keys are about its outcomes / :data:`PART_SIZE` + :data:`FOLD_EVERY`,
and an outcome is written about twice, plus half a part every :data:`FOLD_EVERY` batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final, cast

from salespulse.schemas.topics import ROUTES
from salespulse.streams.pipeline.seen_ids import IdMemory

#: Per event type: the data field that names the outcome, and the tag that keeps a deal's win
#: and its loss apart (each counts once).
COUNTED_ONCE: Final[dict[str, tuple[str, str]]] = {
    "deal.won": ("deal_id", "won "),
    "deal.lost": ("deal_id", "lost "),
    "survey.answered": ("response_id", ""),
}
#: The source topics with an outcome memory.
OUTCOME_TOPICS: Final = tuple(sorted({ROUTES[kind][0] for kind in COUNTED_ONCE}))
#: Outcomes in a full part: 1,024 of the longest ids the contract allows (200 characters of up
#: to 4 bytes) stay under Kafka's default limit of 1 MiB a record.
PART_SIZE: Final = 1024
#: ``new`` records that trigger a fold: a part being filled (512 outcomes on average) is
#: written again once in this many batches.
FOLD_EVERY: Final = 16
#: The changelog key's tag of a batch's record, and of a part.
NEW: Final = "new"
PART: Final = "part"


class OutcomeMemory(IdMemory):
    """The outcomes of one source topic partition; :meth:`drain` gives what the changelog is owed.

    Lookups, expiry and ``pending`` (what this batch added) are the event ids' own.
    """

    def __init__(self) -> None:
        super().__init__()
        #: The number of the part being filled, and its outcomes (flat hour, id, offset triples).
        self.filling_part = 0
        self.filling: list[object] = []
        #: Each live part's newest hour, and the parts whose outcomes have all expired since
        #: the last drain (their tombstones).
        self.parts: dict[int, int] = {}
        self.expired_parts: set[int] = set()
        #: The ``new`` records not folded yet, by key, with their triples.
        self.unfolded: dict[int, list[object]] = {}

    def expire(self, oldest_hour: int) -> None:
        """Forget outcomes first seen before ``oldest_hour``; owe tombstones for the records and
        parts that held only those."""
        if oldest_hour == self.oldest_hour:
            return
        super().expire(oldest_hour)
        for key in self.expired_chunks:
            self.unfolded.pop(key, None)
        for number in [n for n, newest in self.parts.items() if newest < oldest_hour]:
            del self.parts[number]
            self.expired_parts.add(number)
            if number == self.filling_part:
                self.filling = []

    def drain(self) -> Iterator[tuple[str, int, list[object] | None]]:
        """``(tag, key, triples)`` records for the changelog; ``None`` triples are tombstones."""
        for key in self.expired_chunks:
            yield NEW, key, None
        self.expired_chunks.clear()
        for number in self.expired_parts:
            yield PART, number, None
        self.expired_parts.clear()
        pending = self.pending
        if not pending:
            return
        held = len(self.filling) + len(pending) + sum(len(chunk) for chunk in self.unfolded.values())
        if len(self.unfolded) + 1 >= FOLD_EVERY or held >= 3 * PART_SIZE:
            yield from self._fold()
        else:
            key = cast(int, pending[2])
            chunk = self.unfolded.get(key, []) + pending  # a replay's batch may reuse a key
            self.unfolded[key] = chunk
            self._track(key, self.pending_newest)
            yield NEW, key, chunk
        pending.clear()
        self.pending_newest = -1

    def _fold(self) -> Iterator[tuple[str, int, list[object] | None]]:
        """The part being filled, the unfolded records and this batch's outcomes, written as
        parts (each outcome once, at its first offset, expired ones left out); then the
        tombstones of the folded records."""
        oldest = -1 if self.oldest_hour is None else self.oldest_hour
        first: dict[str, tuple[int, int]] = {}
        for flat in (self.filling, *(self.unfolded[key] for key in sorted(self.unfolded)), self.pending):
            for i in range(0, len(flat), 3):
                hour, outcome, offset = cast(int, flat[i]), cast(str, flat[i + 1]), cast(int, flat[i + 2])
                known = first.get(outcome)
                if hour >= oldest and (known is None or offset < known[1]):
                    first[outcome] = (hour, offset)
        triples: list[object] = [x for once, (hour, offset) in first.items() for x in (hour, once, offset)]
        size = 3 * PART_SIZE
        number = self.filling_part
        for start in range(0, len(triples), size):
            part = triples[start : start + size]
            self.parts[number] = max(cast(list[int], part[0::3]))
            yield PART, number, part
            if len(part) == size:
                number += 1
            else:
                self.filling = part
                break
        else:
            self.filling = []
        self.filling_part = number
        for key in sorted(self.unfolded):
            self.chunks.pop(key, None)
            yield NEW, key, None
        self.unfolded.clear()

    def restore_record(self, tag: str, key: int, flat: list[Any] | None, oldest_hour: int) -> None:
        """Take back a changelog record of ``tag`` (``new`` or ``part``); ``None`` is a tombstone.

        A record whose outcomes have all expired here is owed a tombstone: its writer stopped
        before it wrote one.
        """
        if tag == NEW:
            self.restore(key, flat, oldest_hour)
            if flat is not None and key in self.chunks:
                self.unfolded[key] = flat
            else:
                self.unfolded.pop(key, None)
            return
        if flat is None:
            self.parts.pop(key, None)
            self.expired_parts.discard(key)
            if key == self.filling_part:
                self.filling = []
            return
        if key >= self.filling_part:  # parts are numbered in the order they fill
            full = len(flat) >= 3 * PART_SIZE
            self.filling_part, self.filling = (key + 1, []) if full else (key, flat)
        newest = max(flat[0::3])
        if newest < oldest_hour:
            self.parts.pop(key, None)
            self.expired_parts.add(key)
            if key == self.filling_part:
                self.filling = []
            return
        self.parts[key] = newest
        self.offer_restored(flat, oldest_hour)
