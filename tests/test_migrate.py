"""Migrations: the head is read without Alembic, which loads only when the schema is behind."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from ghapp.store import SqlStore
from ghapp.store.migrate import head_revision


def test_head_revision_is_alembics_head() -> None:
    from importlib import resources

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    location = resources.files("ghapp.store") / "migrations"
    config.set_main_option("script_location", str(location))
    assert head_revision() == ScriptDirectory.from_config(config).get_current_head()


async def test_a_store_at_head_opens_without_loading_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/head.db"
    store = SqlStore(url)
    await store.open()  # creates the schema: Alembic runs here
    await store.close()
    script = (
        "import asyncio, sys\n"
        "from ghapp.store import SqlStore\n"
        "async def main():\n"
        f"    store = SqlStore({url!r})\n"
        "    await store.open()\n"
        "    await store.close()\n"
        "asyncio.run(main())\n"
        "print('alembic' in sys.modules)\n"
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await child.communicate()
    assert child.returncode == 0 and out.decode().strip() == "False"


OPEN_AT = (
    "import asyncio, sys, time\n"
    "from ghapp.store import SqlStore\n"
    "async def main():\n"
    "    store = SqlStore(sys.argv[1])\n"
    "    time.sleep(max(float(sys.argv[2]) - time.time(), 0))  # all at the same moment\n"
    "    await store.open()\n"
    "    await store.close()\n"
    "asyncio.run(main())\n"
)


async def open_together(url: str, count: int) -> list[tuple[int | None, str]]:
    """Open the store from `count` processes at the same moment: (exit code, stderr) each."""
    start_at = str(time.time() + 3.0)  # after every interpreter has imported ghapp
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", OPEN_AT, url, start_at, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(count)
    ]
    results = []
    for child in children:
        _, err = await child.communicate()
        results.append((child.returncode, err.decode()[-2000:]))
    return results


async def migrate_to(url: str, revision: str) -> None:
    """Bring a database to an older revision, as an earlier release left it."""
    from importlib import resources

    from alembic import command
    from alembic.config import Config

    def upgrade(connection: object) -> None:
        config = Config()
        config.set_main_option(
            "script_location", str(resources.files("ghapp.store") / "migrations")
        )
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    store = SqlStore(url)
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(upgrade)
    finally:
        await store.close()


@pytest.mark.parametrize("outdated", [False, True], ids=["empty", "outdated"])
async def test_replicas_opening_together_all_come_up(
    database_url: str, outdated: bool
) -> None:
    if outdated:
        await migrate_to(database_url, "0001")
    results = await open_together(database_url, 4)
    assert all(code == 0 for code, _ in results), results
    store = SqlStore(database_url)
    try:
        async with store.engine.connect() as conn:
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        assert [row[0] for row in version] == [head_revision()]
    finally:
        await store.close()


async def test_the_outbox_upgrades_to_one_row_per_event(database_url: str) -> None:
    """A 0003 database with a delivered verdict upgrades in place (0004: rows per event)."""
    from importlib import resources
    from typing import Any

    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    def to_0003(conn: Any) -> None:
        config = Config()
        location = resources.files("ghapp.store") / "migrations"
        config.set_main_option("script_location", str(location))
        config.attributes["connection"] = conn
        command.upgrade(config, "0003")
        doc = (
            '{"id": "dep_old", "repository": "acme/shop", "workflow": "deploy.yml", '
            '"ref": "main", "state": "completed", "callback": {"url": "http://o/cb"}, '
            '"created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", '
            '"dispatched_at": "2026-01-01T00:00:00Z", "last_heard_at": "2026-01-01T00:00:00Z", '
            '"phase": "completed"}'
        )
        conn.execute(
            sa.text(
                "INSERT INTO deployments (id, repository, state, phase, created_at, updated_at,"
                " last_heard_at, version, doc) VALUES ('dep_old', 'acme/shop', 'completed',"
                " 'completed', 0, 0, 0, 3, :doc)"
            ),
            {"doc": doc},
        )
        conn.execute(
            sa.text(
                "INSERT INTO outbox (delivery_id, deployment_id, url, state, attempts,"
                " created_at, next_attempt_at) VALUES ('cb_old', 'dep_old', 'http://o/cb',"
                " 'delivered', 2, 0, 0)"
            )
        )

    old = SqlStore(database_url)
    async with old.begin() as conn:
        await conn.run_sync(to_0003)
    await old.close()
    store = SqlStore(database_url)
    await store.open()  # upgrades to the head
    try:
        record = await store.get("dep_old")
        assert record is not None and record.progress is None
        assert record.callback.state == "delivered" and record.callback.attempts == 2
        assert await store.resend_callback("dep_old")
    finally:
        await store.close()
