"""The followed-runs filter: no run a deployment follows is ever missed, across processes."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

# The same deployment record as the inline reads' tests (pytest puts tests/ on the path).
from test_inline import record

from ghapp.core import deploys
from ghapp.core.deploys import RunObserved
from ghapp.store import SqlStore
from ghapp.store.followed import RING, FollowedRuns, ring_path
from ghapp.store.inline import InlineReader

NOW = datetime(2026, 12, 8, 10, 0, tzinfo=UTC)


async def opened(path: Path) -> SqlStore:
    store = SqlStore(f"sqlite:///{path}")
    await store.open()
    return store


async def test_a_run_linked_by_another_store_is_found_at_once(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    writer, reader = await opened(path), await opened(path)
    try:
        assert await reader.by_run(7001) is None
        # Linked after the reader read the column: only the shared ring tells it.
        created = await writer.create(record(1, run_id=None))
        moved = deploys.apply(created, RunObserved(
            run_id=7001, attempt=1, status="queued", conclusion=None,
            html_url=None, head_sha=None, at=NOW,
        )).record
        assert await writer.save(moved)
        found = await reader.by_run(7001)
        assert found is not None and found.id == "dep_1"
        assert await reader.by_run(7002) is None
    finally:
        await writer.close()
        await reader.close()


async def test_runs_linked_in_another_process_past_the_ring_are_all_found(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.db"
    reader = await opened(path)
    try:
        assert await reader.by_run(900_000) is None
        count = RING + 40  # more than the ring holds: the reader must read the column again
        script = textwrap.dedent(f"""
            import asyncio, sys
            sys.path.insert(0, {str(Path(__file__).parent)!r})
            from test_followed import opened, record
            async def main():
                store = await opened(__import__("pathlib").Path({str(path)!r}))
                for n in range({count}):
                    await store.create(record(n, run_id=900_000 + n))
                await store.close()
            asyncio.run(main())
        """)
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", script], capture_output=True, timeout=120
        )
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        for n in (0, count // 2, count - 1):
            found = await reader.by_run(900_000 + n)
            assert found is not None and found.id == f"dep_{n}"
        assert await reader.by_run(900_000 + count) is None
    finally:
        await reader.close()


def test_a_run_noted_but_never_committed_is_only_a_false_alarm(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    import sqlite3

    sqlite3.connect(path).executescript(
        "PRAGMA journal_mode=WAL; CREATE TABLE deployments (run_id INTEGER);"
        "INSERT INTO deployments VALUES (11);"
    )
    one, two = InlineReader(path), InlineReader(path)
    first, second = FollowedRuns(path, one), FollowedRuns(path, two)
    try:
        assert first.may_follow(11) and second.may_follow(11)
        assert not second.may_follow(12)
        first.note(12)  # a process that then crashed before its write committed
        assert second.may_follow(12)
        assert not second.may_follow(13)
        # A full reading keeps what was noted within the ring (its write may be on its way).
        second.reload()
        assert second.may_follow(12) and second.may_follow(11) and not second.may_follow(13)
    finally:
        first.close()
        second.close()
        one.close()
        two.close()


async def test_the_ring_file_is_private(tmp_path: Path) -> None:
    store = await opened(tmp_path / "m.db")
    await store.close()
    mode = stat.S_IMODE(os.stat(ring_path(tmp_path / "m.db")).st_mode)
    assert mode == 0o600
