"""Indexed reads of a SQLite store on the event loop's own thread, for the webhook path.

aiosqlite runs each statement on a worker thread: one SELECT through SQLAlchemy costs five
hand-offs between threads and about 0.85 ms of CPU, and under load each hand-off waits its turn
on the busy event loop. The same indexed lookup through `sqlite3` directly takes tens of
microseconds, and in WAL mode a reader never waits for a writer, so running it inline blocks
the loop no longer than the read itself. Any error (a locked database during a migration, say)
sends the caller back to the usual path.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy.dialects import sqlite
from sqlalchemy.sql import ClauseElement

# A reader never waits for a writer in WAL mode; this bounds the rare wait for a checkpoint.
BUSY_TIMEOUT = 1.0


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLAlchemy SQLite URL; None for an in-memory database."""
    _, _, path = url.partition(":///")
    if not path or path.startswith(":memory:") or path.startswith("file:"):
        return None
    return Path(path.split("?", 1)[0]).resolve()


def compiled(statement: ClauseElement) -> str:
    """A statement as SQLite text with `?` parameters, compiled once at import."""
    return str(statement.compile(dialect=sqlite.dialect()))


class InlineReader:
    """A read-only `sqlite3` connection for short indexed SELECTs on the calling thread."""

    def __init__(self, path: Path) -> None:
        # Read-only: this connection can never hold a write lock another writer waits for.
        self._conn = sqlite3.connect(
            f"{path.as_uri()}?mode=ro",
            uri=True,
            timeout=BUSY_TIMEOUT,
            isolation_level=None,  # autocommit: each SELECT sees the latest commit
            check_same_thread=False,
        )

    def first(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The first row of a SELECT, or None; raises sqlite3.Error for the caller to fall back."""
        row: tuple[Any, ...] | None = self._conn.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Every row of a SELECT; raises sqlite3.Error for the caller to fall back."""
        rows: list[tuple[Any, ...]] = self._conn.execute(sql, params).fetchall()
        return rows

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()
