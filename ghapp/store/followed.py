"""The run ids some deployment may follow, in memory: the webhook path's filter.

Most of an organisation's deliveries are about runs ghapp never dispatched, `workflow_job`
ones above all. Deciding that with an indexed read of `deployments.run_id` costs little on its
own but about 8% of such a delivery's CPU under load (issue 23: the SQLite engine's code and
its shared-memory locks compete with the request path for the caches), so `FollowedRuns`
keeps every run id of that column in a set and answers "may a deployment follow this run?"
without reading the database. It is a filter: a yes is checked by the usual read, a no is
final, so it must never miss a run id that is committed.

Every process that writes the column says so first: the store notes a record's run id before
writing it (`note`). Processes sharing one SQLite file (`ghapp serve --workers N`, the CLI)
tell each other through a small file beside the database (`<file>-runs`): a sequence number
and a ring of the last `RING` run ids noted, written under an exclusive `flock` before the
write that commits the run id. A reader compares the sequence (8 bytes of a shared mapping,
no system call) with the last it took, takes the run ids noted since, and reads the column
again if it fell more than `RING` behind. So a committed run id is known to every process
before its next delivery is answered, and a run id noted but never committed (a crash, a lost
race) costs one read later. PostgreSQL replicas share no file: there is no filter, and every
delivery is looked up as before.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import sqlite3
import struct
import time
from collections import deque
from pathlib import Path

from ghapp.store.inline import InlineReader

# Run ids kept in the ring: a process that took none of the last RING reads the column again.
RING = 256
_SEQ = struct.Struct("<Q")
_SIZE = _SEQ.size * (1 + RING)
_ALL_RUNS = "SELECT run_id FROM deployments WHERE run_id IS NOT NULL"
# Run ids of deployments deleted since (retention) stay in the set until the column is read
# again: at most this often, on a new run id.
REREAD_EVERY = 3600.0
# A run id noted here is kept through a reading of the column for this long: its write may
# not have committed when the column was read.
UNCOMMITTED_FOR = 300.0


def ring_path(database: Path) -> Path:
    """The file beside a SQLite database that its processes share run ids through."""
    return database.with_name(database.name + "-runs")


class FollowedRuns:
    """Every run id a deployment of one SQLite file may follow, kept current across processes."""

    def __init__(self, database: Path, reader: InlineReader) -> None:
        """Map the shared ring (created 0600 beside the database) and read the column."""
        self._reader = reader
        path = ring_path(database)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            with _locked(fd):
                if os.fstat(fd).st_size < _SIZE:
                    os.ftruncate(fd, _SIZE)
            self._map = mmap.mmap(fd, _SIZE)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._runs: set[int] = set()
        # Noted here lately, with when: kept through a reading of the column.
        self._noted: deque[tuple[float, int]] = deque()
        # Unknown until the column was read: every run may be followed then.
        self._loaded = False
        self._taken = 0
        self._read_at = 0.0
        self.reload()

    def may_follow(self, run_id: int) -> bool:
        """False only when no deployment follows the run (none is committed with it)."""
        if _SEQ.unpack_from(self._map, 0)[0] != self._taken or not self._loaded:
            self._catch_up()
        return not self._loaded or run_id in self._runs

    def note(self, run_id: int) -> None:
        """Say that a write is about to commit `run_id`: here, and to the other processes."""
        if run_id in self._runs:
            return
        self._runs.add(run_id)
        self._noted.append((time.monotonic(), run_id))
        with _locked(self._fd):
            sequence = _SEQ.unpack_from(self._map, 0)[0]
            _SEQ.pack_into(self._map, _SEQ.size * (1 + sequence % RING), run_id)
            # The slot first, then the sequence that makes readers look at it.
            _SEQ.pack_into(self._map, 0, sequence + 1)

    def reload(self) -> None:
        """Read the whole column again (the sequence first, so nothing noted meanwhile is lost)."""
        taken = _SEQ.unpack_from(self._map, 0)[0]
        now = time.monotonic()
        try:
            runs = {row[0] for row in self._reader.all(_ALL_RUNS, ())}
        except sqlite3.Error:
            # Unreadable for now (a migration holds it): every run may be followed until the
            # next delivery tries again.
            self._loaded = False
            return
        while self._noted and self._noted[0][0] < now - UNCOMMITTED_FOR:
            self._noted.popleft()
        runs.update(run_id for _, run_id in self._noted)
        # Run ids other processes noted: written before their commits, so either read from
        # the column now or (taken ones) still uncommitted. Keep those within the ring.
        self._runs = runs | self._ring_since(max(0, taken - RING), taken)
        self._loaded = True
        self._taken = taken
        self._read_at = now

    def _catch_up(self) -> None:
        taken = self._taken
        sequence = _SEQ.unpack_from(self._map, 0)[0]
        stale = time.monotonic() - self._read_at > REREAD_EVERY
        if not self._loaded or stale or not 0 < sequence - taken <= RING:
            self.reload()
            return
        noted = self._ring_since(taken, sequence)
        # Writers overwrote slots while they were read: read the column instead.
        if _SEQ.unpack_from(self._map, 0)[0] - taken > RING:
            self.reload()
            return
        self._runs |= noted
        self._taken = sequence

    def _ring_since(self, first: int, end: int) -> set[int]:
        return {
            _SEQ.unpack_from(self._map, _SEQ.size * (1 + i % RING))[0] for i in range(first, end)
        }

    def close(self) -> None:
        """Unmap the ring."""
        self._map.close()
        os.close(self._fd)


class _locked:
    """An exclusive `flock` on a file for the length of a `with` block."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *_: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
