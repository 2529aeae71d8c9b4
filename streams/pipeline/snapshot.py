"""The local state snapshot: one file per partition, so a restart replays only the changelog tail.

A partition's file holds an image of its engine state (``state_image.py``: KPI buckets,
customer columns, remembered event ids, applied source offsets), then a trailer naming what
it belongs to and the changelog offset it covers: the offset of the last changelog record
this worker had written for the partition when the image was taken (or the offset its
recovery had read up to, if it had written none since). Restoring the image and then the
changelog after that offset gives the state the whole changelog gives, because a changelog
record sets its key's newest value and the image already is the state after every earlier
record.

An image is taken on the event loop, between two batches, so it is consistent; it goes
straight into a temporary file. Once the broker has acked the partition's writes up to
that moment, a thread checksums the file, appends the trailer, syncs it and renames it
into place, so a worker killed at any point leaves the previous snapshot or the new one,
never a torn file. A snapshot is refused, and the partition replays in full, when it:

- is missing (a new disk) or does not read back (damaged: the checksum or the image);
- names another changelog topic (another broker's epoch), another topic id (a recreated
  changelog), another partition count, hash seed, Python, machine or configuration;
- covers an offset at or beyond the changelog's end (the changelog is not the one it saw).
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from salespulse.streams.pipeline import state_image

log = logging.getLogger(__name__)

#: 2: one customer index per partition, shared by the KPIs (an image of 1 does not fit).
#: 3: the tombstones owed and the seen-id chunks' newest hours (a 2 has neither: it would
#: never tombstone the keys it holds).
#: 4: the outcome memory (a 3 has none, and its response ids are among its event ids: it
#: would count every outcome it applied again).
#: 5: the forecast's state (an image of 4 has none: it would skip the forecast's events).
FORMAT: Final = 5
SUFFIX: Final = ".state"
#: The trailer's length, after the trailer itself.
_LENGTH: Final = struct.Struct(">Q")
_CHUNK: Final = 1 << 20
#: Hashed with this process's seed: two processes that hash it alike hash every id alike.
_PROBE: Final = "salespulse hash probe"


@dataclass(frozen=True)
class Restored:
    """A partition read back from its snapshot."""

    image: Any
    covered: int
    labels: dict[str, list[str]]


def _digest(path: Path, length: int) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as file:
        while length > 0:
            chunk = file.read(min(_CHUNK, length))
            if not chunk:
                break
            digest.update(chunk)
            length -= len(chunk)
    return digest.hexdigest()


class Snapshots:
    """This worker's snapshot files for one changelog topic, under ``directory``."""

    def __init__(self, directory: Path, partitions: int, interval: float) -> None:
        self.directory = directory
        self.partitions = partitions
        self.interval = interval
        self.changelog = ""
        self.topic_id = ""
        self._serial = 0

    @property
    def attached(self) -> bool:
        return bool(self.topic_id)

    def attach(self, changelog: str, topic_id: str) -> None:
        """Use the files of this changelog topic (by id); remove those of any other."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.changelog, self.topic_id = changelog, topic_id
        for path in self.directory.iterdir():
            if not path.name.startswith(f"{changelog}.") or path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)

    def path(self, partition: int) -> Path:
        return self.directory / f"{self.changelog}.{partition}{SUFFIX}"

    def _identity(self, partition: int) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "changelog": self.changelog,
            "topic_id": self.topic_id,
            "partition": partition,
            "partitions": self.partitions,
            "hash_probe": hash(_PROBE),
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "machine": f"{platform.machine()} {sys.byteorder}",
        }

    # -- writing ---------------------------------------------------------------------
    def begin(self, partition: int, state: Any) -> Path:
        """Write the image of ``state`` into a temporary file (on the loop, between batches)."""
        self._serial += 1
        temporary = self.directory / f".{self.changelog}.{partition}.{self._serial}.tmp"
        with temporary.open("wb") as file:
            state_image.dump(state_image.capture(state), file)
        return temporary

    def seal(self, temporary: Path, partition: int, covered: int, labels: dict[str, list[str]]) -> None:
        """Checksum, trail, sync and rename an image into place (blocking: a thread's work)."""
        try:
            length = temporary.stat().st_size
            trailer = orjson.dumps(
                {
                    **self._identity(partition),
                    "covered": covered,
                    "length": length,
                    "digest": _digest(temporary, length),
                    "labels": labels,
                }
            )
            with temporary.open("ab") as file:
                file.write(trailer + _LENGTH.pack(len(trailer)))
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path(partition))
            directory = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError:
            log.exception("snapshot of partition %d not written; the previous one stays", partition)
            temporary.unlink(missing_ok=True)

    def discard(self, temporary: Path) -> None:
        temporary.unlink(missing_ok=True)

    # -- reading ---------------------------------------------------------------------
    def load(self, partition: int, end: int | None) -> Restored | None:
        """Read a partition's snapshot back (blocking), or None with the reason logged.

        ``end`` is the changelog partition's end offset (the next offset to be written).
        """
        path = self.path(partition)
        if not path.exists():
            return None
        started = time.perf_counter()
        try:
            trailer = self._trailer(path)
        except (OSError, ValueError) as exc:
            log.warning(
                "snapshot %s cannot be read (%s): replaying partition %d in full", path, exc, partition
            )
            return None
        expected = self._identity(partition)
        different = {k: trailer.get(k) for k, v in expected.items() if trailer.get(k) != v}
        if different:
            log.warning("snapshot %s is not this changelog's (%s): replaying in full", path, different)
            return None
        covered = int(trailer["covered"])
        if end is None or covered >= end:
            log.warning(
                "snapshot of partition %d covers changelog offset %d, beyond the end %s: replaying in full",
                partition,
                covered,
                end,
            )
            return None
        if _digest(path, int(trailer["length"])) != trailer["digest"]:
            log.warning("snapshot %s cannot be read (checksum differs): replaying in full", path)
            return None
        try:
            with path.open("rb") as file:
                image = state_image.load(file)
        except state_image.ImageMismatch as exc:
            log.warning("snapshot %s cannot be read (%s): replaying in full", path, exc)
            return None
        log.info(
            "read the snapshot of partition %d (up to changelog offset %d) in %.2fs",
            partition,
            covered,
            time.perf_counter() - started,
        )
        return Restored(image, covered, trailer["labels"])

    @staticmethod
    def _trailer(path: Path) -> dict[str, Any]:
        with path.open("rb") as file:
            size = file.seek(0, os.SEEK_END)
            if size < _LENGTH.size:
                raise ValueError("too short")
            file.seek(size - _LENGTH.size)
            (length,) = _LENGTH.unpack(file.read(_LENGTH.size))
            if length > size - _LENGTH.size:
                raise ValueError("no trailer")
            file.seek(size - _LENGTH.size - length)
            trailer = orjson.loads(file.read(length))
        if not isinstance(trailer, dict):
            raise ValueError("no trailer")
        return trailer
