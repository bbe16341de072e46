"""Migrations: the head is read without Alembic, which loads only when the schema is behind."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

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
