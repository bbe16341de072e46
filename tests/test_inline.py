"""Inline SQLite reads: the webhook path's lookups see every commit, and fall back on error."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ghapp.core import deploys
from ghapp.core.deploys import RunObserved
from ghapp.core.models import DeploymentRequest
from ghapp.store import SqlStore
from ghapp.store.inline import InlineReader, sqlite_file

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def record(n: int, *, run_id: int) -> deploys.DeploymentRecord:
    return deploys.new_deployment(
        f"dep_{n}",
        DeploymentRequest(repository="acme/shop"),
        ref="main",
        callback_url="http://orch.test/cb",
        installation_id=1,
        run_id=run_id,
        html_url=None,
        now=NOW,
    )


def test_sqlite_file_of_urls(tmp_path: Path) -> None:
    assert sqlite_file(f"sqlite+aiosqlite:///{tmp_path}/a.db") == tmp_path / "a.db"
    assert sqlite_file("sqlite+aiosqlite:///relative.db") == Path("relative.db").resolve()
    assert sqlite_file("sqlite+aiosqlite:///:memory:") is None
    assert sqlite_file("sqlite+aiosqlite://") is None


def test_reader_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    reader = InlineReader(path)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.first("INSERT INTO t VALUES (1)", ())
    reader.close()


async def test_inline_lookups_see_each_commit_at_once(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path}/s.db")
    await store.open()
    try:
        assert store._inline is not None
        assert await store.by_run(41) is None
        await store.create(record(1, run_id=41))
        found = await store.by_run(41)
        assert found is not None and found.id == "dep_1" and found.version == 1
        event = RunObserved(
            run_id=41, attempt=1, status="in_progress", conclusion=None,
            html_url=None, head_sha=None, at=NOW,
        )
        moved = deploys.apply(found, event).record
        assert await store.save(moved)
        again = await store.get("dep_1")
        assert again is not None and again.version == 2 and again.phase == "in_progress"
    finally:
        await store.close()


async def test_a_failing_inline_read_falls_back_to_the_usual_path(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path}/f.db")
    await store.open()
    try:
        await store.create(record(2, run_id=42))

        class Broken:
            def first(self, sql: str, params: tuple[Any, ...]) -> None:
                raise sqlite3.OperationalError("database is locked")

            def close(self) -> None:
                pass

        store._inline = Broken()  # type: ignore[assignment]
        found = await store.by_run(42)
        assert found is not None and found.id == "dep_2"
    finally:
        await store.close()


async def test_in_memory_store_reads_without_an_inline_reader() -> None:
    store = SqlStore("sqlite:///:memory:")
    await store.open()
    try:
        assert store._inline is None
        assert await store.get("dep_missing") is None
    finally:
        await store.close()



async def test_a_record_read_again_is_a_copy_and_follows_each_save(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path}/c.db")
    await store.open()
    try:
        await store.create(record(3, run_id=43))
        first = await store.by_run(43)
        assert first is not None
        state = first.state
        first.version = 99  # what `save` does to the record it wrote
        first.state = "failure"
        second = await store.by_run(43)
        assert second is not None and second is not first
        assert second.version == 1 and second.state == state != "failure"
        event = RunObserved(
            run_id=43, attempt=1, status="in_progress", conclusion=None,
            html_url=None, head_sha=None, at=NOW,
        )
        assert await store.save(deploys.apply(second, event).record)
        third = await store.by_run(43)
        assert third is not None and third.version == 2 and third.phase == "in_progress"
    finally:
        await store.close()
