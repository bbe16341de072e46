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
