"""Customer ids to dense row numbers, so per-customer state can live in packed columns.

A partition holds a million customers. As dict entries keyed by ``hash(customer id)`` with
int values, each map costs about 120 bytes a customer (two int objects and the entry);
a column of ``array('q')`` costs 8. ``CustomerIndex`` is the one dict-like structure left:
an open-addressing table of row numbers (``array('i')``, at most two thirds full) over a
column of the rows' 64-bit hashes, about 16 bytes a customer in all, plus the ids
themselves (the detractor list shows them). A partition has one, shared by every KPI that
keeps per-customer columns: each further index of the same customers would cost 16 MB at a
million.
Rows are never reused, so a column indexed by row only ever grows, and only as far as the
last row that has a value in it (``fill_to``).

Customers are told apart by ``hash()`` of their id (stable within a process; the changelog
keeps the id itself and restore hashes it again), as before: two colliding in one
partition, the one way two could be counted as one, has a chance of about n²/2⁶⁵.
"""

from __future__ import annotations

from array import array
from typing import Final

#: Table slots start at this many and double whenever the table would pass 2/3 full.
_FIRST_SLOTS: Final = 16
#: Customer ids go to UTF-8 and back whatever they hold, even a lone surrogate.
_ANY_STR: Final = "surrogatepass"
#: A text column's slot is ``start << _LEN_BITS | length`` in its arena.
_LEN_BITS: Final = 24
_LEN_MASK: Final = (1 << _LEN_BITS) - 1


class CustomerIndex:
    """Customer ids to row numbers ``0, 1, 2, ...`` in order of first sight, and back."""

    __slots__ = ("_last_id", "_last_row", "hashes", "id_ends", "ids", "mask", "table")

    def __init__(self) -> None:
        self.hashes: array[int] = array("q")
        # row + 1 per slot; 0 is an empty slot.
        self.table: array[int] = array("i", bytes(4 * _FIRST_SLOTS))
        self.mask = _FIRST_SLOTS - 1
        #: The ids end to end, UTF-8: row ``r``'s is ``ids[id_ends[r - 1]:id_ends[r]]``.
        self.ids = bytearray()
        self.id_ends: array[int] = array("q")
        # The last id found and its row: every KPI an event feeds looks its customer up, with
        # the same string object, so one identity check spares the table probes after the first.
        self._last_id: str | None = None
        self._last_row = -1

    def __len__(self) -> int:
        return len(self.hashes)

    def find(self, customer: str) -> int:
        """The customer's row, or -1 if it has none (remembered for the next lookup)."""
        if customer is self._last_id:
            return self._last_row
        row = self.peek(customer)
        if row >= 0:
            self._last_id, self._last_row = customer, row
        return row

    def peek(self, customer: str) -> int:
        """:meth:`find` for reads: changes nothing, not even which lookup it remembers."""
        key = hash(customer)
        table, hashes, mask = self.table, self.hashes, self.mask
        i = key & mask
        while True:
            row = table[i] - 1
            if row < 0 or hashes[row] == key:
                return row
            i = (i + 1) & mask

    def row(self, customer: str) -> int:
        """The customer's row, given a new one (after every other) if it has none."""
        if customer is self._last_id:
            return self._last_row
        key = hash(customer)
        table, hashes, mask = self.table, self.hashes, self.mask
        i = key & mask
        while True:
            row = table[i] - 1
            if row < 0:
                break
            if hashes[row] == key:
                self._last_id, self._last_row = customer, row
                return row
            i = (i + 1) & mask
        row = len(hashes)
        hashes.append(key)
        table[i] = row + 1
        self.ids += customer.encode("utf-8", _ANY_STR)
        self.id_ends.append(len(self.ids))
        if 3 * len(hashes) > 2 * (mask + 1):
            self._grow()
        self._last_id, self._last_row = customer, row
        return row

    def customer(self, row: int) -> str:
        """The id of the customer at ``row``."""
        start = self.id_ends[row - 1] if row else 0
        return self.ids[start : self.id_ends[row]].decode("utf-8", _ANY_STR)

    def _grow(self) -> None:
        mask = 2 * (self.mask + 1) - 1
        table: array[int] = array("i", bytes(4 * (mask + 1)))
        for row, key in enumerate(self.hashes):
            i = key & mask
            while table[i]:
                i = (i + 1) & mask
            table[i] = row + 1
        self.table, self.mask = table, mask


def value_at(column: array[int], row: int) -> int:
    """The row's value in a column that may stop short of it (``fill_to``): -1 where it does,
    and for row -1, a customer the index does not have."""
    return column[row] if 0 <= row < len(column) else -1


def fill_to(column: array[int], row: int, value: int) -> None:
    """Grow ``column`` with ``value`` until it reaches ``row``: a column of one KPI stops at
    the last row that has a value there, while other KPIs may have added rows since."""
    missing = row + 1 - len(column)
    if missing == 1:
        column.append(value)  # the common case: a customer seen for the first time
    elif missing > 0:
        column.extend(array(column.typecode, [value]) * missing)


class TextColumn:
    """Optional bytes by row, end to end in one arena: 8 bytes a row plus the text.

    A dict of tuples of strings by row costs about 200 bytes a row: a million customers whose
    NPS answers carry a response id, as every survey tool's do, held 200 MB that way. A text
    replaced stays in the arena until such garbage outweighs the live texts; then the arena is
    written again, in row order.
    """

    __slots__ = ("arena", "garbage", "slots")

    def __init__(self) -> None:
        #: Per row: where its text starts in ``arena`` and its length; -1 (or past the end): none.
        self.slots: array[int] = array("q")
        self.arena = bytearray()
        self.garbage = 0

    def get(self, row: int) -> bytes | None:
        """The row's text, or None."""
        slot = value_at(self.slots, row)
        if slot < 0:
            return None
        start = slot >> _LEN_BITS
        return bytes(self.arena[start : start + (slot & _LEN_MASK)])

    def set(self, row: int, text: bytes | None) -> None:
        """Give the row ``text`` (None: no text). Texts are at most 16 MiB (events are far smaller)."""
        old = value_at(self.slots, row)
        if old >= 0:
            self.garbage += old & _LEN_MASK
            self.slots[row] = -1
        if text is None:
            return
        fill_to(self.slots, row, -1)
        self.slots[row] = len(self.arena) << _LEN_BITS | len(text)
        self.arena += text
        if self.garbage > max(1 << 20, len(self.arena) // 2):
            self._compact()

    def _compact(self) -> None:
        arena = bytearray()
        slots = self.slots
        for row in range(len(slots)):
            slot = slots[row]
            if slot >= 0:
                start, length = slot >> _LEN_BITS, slot & _LEN_MASK
                slots[row] = len(arena) << _LEN_BITS | length
                arena += self.arena[start : start + length]
        self.arena, self.garbage = arena, 0
