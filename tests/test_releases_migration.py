"""Migration 0006_i15 upgrades a database of the previous schema with its rows in place: the
new columns are filled from each stored document and old successes become releases."""

from __future__ import annotations

import json
import time
from importlib import resources
from typing import Any

from sqlalchemy import text

from ghapp.core import releases
from ghapp.store import SqlStore


def _to_revision(connection: Any, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("ghapp.store") / "migrations")
    )
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _old_row(number: int, status: str | None, completed: str | None) -> dict[str, Any]:
    now = time.time() - 3600 + number
    stamp = f"2026-11-30T10:00:{number:02d}Z"
    verdict = (
        {"status": status, "reason": None if status == "success" else "failure",
         "summary": "-", "deployed_url": f"https://v{number}.example", "failed_jobs": []}
        if status else None
    )
    doc = {
        "id": f"dep_old{number}", "repository": "acme/shop", "workflow": "deploy.yml",
        "ref": "main", "inputs": {"version": f"v{number}"}, "environment": "production",
        "metadata": {}, "state": "completed" if status else "in_progress",
        "run": {"id": 500 + number, "attempt": 1}, "verdict": verdict,
        "callback": {"url": None, "state": "pending", "attempts": 0},
        "created_at": stamp, "updated_at": stamp, "completed_at": completed,
        "phase": "completed" if status else "in_progress", "dispatched_at": stamp,
        "last_heard_at": stamp, "head_sha": f"sha{number}",
    }
    return {
        "id": doc["id"], "repository": "acme/shop", "state": doc["state"],
        "phase": doc["phase"], "run_id": 500 + number, "created_at": now, "updated_at": now,
        "last_heard_at": now, "version": 1, "environment": "production",
        "doc": json.dumps(doc),
    }


async def test_previous_schema_with_rows_upgrades_in_place(database_url: str) -> None:
    store = SqlStore(database_url)
    async with store.begin() as conn:
        await conn.run_sync(_to_revision, "0005_i12")
    rows = [
        _old_row(1, "success", "2026-11-30T10:05:00Z"),
        _old_row(2, "failure", "2026-11-30T10:06:00Z"),
        _old_row(3, "success", "2026-11-30T10:07:00Z"),
        _old_row(4, None, None),
    ]
    async with store.begin() as conn:
        for row in rows:
            names = ", ".join(row)
            values = ", ".join(f":{name}" for name in row)
            await conn.execute(text(f"INSERT INTO deployments ({names}) VALUES ({values})"), row)
    await store.close()

    store = SqlStore(database_url)
    await store.open()
    try:
        async with store.reader.connect() as conn:
            found = (
                await conn.execute(
                    text("SELECT id, kind, verdict_status, completed_at FROM deployments "
                         "ORDER BY id")
                )
            ).all()
        assert [(r[0], r[1], r[2]) for r in found] == [
            ("dep_old1", "deploy", "success"), ("dep_old2", "deploy", "failure"),
            ("dep_old3", "deploy", "success"), ("dep_old4", "deploy", None),
        ]
        assert found[3][3] is None and found[0][3] < found[2][3]
        async with store.reader.connect() as conn:
            restores = dict(
                (await conn.execute(text("SELECT id, restore_seconds FROM deployments"))).all()
            )
        # The failure at 10:06 was restored by the success at 10:07.
        assert restores == {"dep_old1": None, "dep_old2": None, "dep_old3": 60.0,
                            "dep_old4": None}
        history = await store.releases("acme/shop", "production")
        assert [r.id for r in history] == ["dep_old3", "dep_old1"]
        view = releases.environment_view("production", history)
        assert view.current is not None and view.current.version == "v3"
        assert view.previous is not None and view.previous.deployed_url == "https://v1.example"
        old = await store.get("dep_old2")
        assert old is not None and old.kind == "deploy" and old.rollback_of is None
        assert await store.unfinished_in("acme/shop", "production") == ["dep_old4"]
    finally:
        await store.close()
