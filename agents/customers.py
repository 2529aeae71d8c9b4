"""Customer ids to dense row numbers, so per-customer state can live in packed columns.

A partition holds a million customers. As dict entries keyed by ``hash(customer id)`` with
int values, each map costs about 120 bytes a customer (two int objects and the entry);
a column of ``array('q')`` costs 8. ``CustomerIndex`` is the one dict-like structure left:
an open-addressing table of row numbers (``array('i')``, at most two thirds full) over a
column of the rows' 64-bit hashes, about 16 bytes a customer in all. Rows are never
reused, so every column indexed by row grows by one value a new customer.

Customers are told apart by ``hash()`` of their id (stable within a process; the changelog
keeps the id itself and restore hashes it again), as before: two colliding in one
partition, the one way two could be counted as one, has a chance of about n²/2⁶⁵.
"""

from __future__ import annotations

from array import array
from typing import Final

#: Table slots start at this many and double whenever the table would pass 2/3 full.
_FIRST_SLOTS: Final = 16


class CustomerIndex:
    """``hash(customer id)`` to a row number ``0, 1, 2, ...`` in order of first sight."""

    __slots__ = ("hashes", "mask", "table")

    def __init__(self) -> None:
        self.hashes: array[int] = array("q")
        # row + 1 per slot; 0 is an empty slot.
        self.table: array[int] = array("i", bytes(4 * _FIRST_SLOTS))
        self.mask = _FIRST_SLOTS - 1

    def __len__(self) -> int:
        return len(self.hashes)

    def find(self, key: int) -> int:
        """The row of ``key`` (a customer id's hash), or -1 if it has none."""
        table, hashes, mask = self.table, self.hashes, self.mask
        i = key & mask
        while True:
            row = table[i] - 1
            if row < 0 or hashes[row] == key:
                return row
            i = (i + 1) & mask

    def row(self, key: int) -> int:
        """The row of ``key``, given a new one if it has none (see ``__len__`` before and after)."""
        table, hashes, mask = self.table, self.hashes, self.mask
        i = key & mask
        while True:
            row = table[i] - 1
            if row < 0:
                break
            if hashes[row] == key:
                return row
            i = (i + 1) & mask
        row = len(hashes)
        hashes.append(key)
        table[i] = row + 1
        if 3 * len(hashes) > 2 * (mask + 1):
            self._grow()
        return row

    def _grow(self) -> None:
        mask = 2 * (self.mask + 1) - 1
        table: array[int] = array("i", bytes(4 * (mask + 1)))
        for row, key in enumerate(self.hashes):
            i = key & mask
            while table[i]:
                i = (i + 1) & mask
            table[i] = row + 1
        self.table, self.mask = table, mask
