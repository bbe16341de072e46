"""Schema migrations: Alembic, loaded only when the database is behind."""

from __future__ import annotations

import logging
import re
from importlib import resources
from typing import Any

from sqlalchemy import inspect, text

log = logging.getLogger("ghapp.store")


def head_revision() -> str:
    """The newest migration's revision, read from the files (no Alembic import)."""
    versions = resources.files("ghapp.store") / "migrations" / "versions"
    revisions: dict[str, str | None] = {}
    for entry in versions.iterdir():
        if entry.name.endswith(".py") and entry.name[0].isdigit():
            text_ = entry.read_text()
            found = re.search(r'^revision = "([^"]+)"', text_, re.MULTILINE)
            down = re.search(r'^down_revision = (?:"([^"]+)"|None)', text_, re.MULTILINE)
            if found and down:
                revisions[found.group(1)] = down.group(1)
    parents = set(revisions.values())
    heads = [revision for revision in revisions if revision not in parents]
    if len(heads) != 1:
        raise RuntimeError(f"migrations must have one head, found {sorted(heads)}")
    return heads[0]


def _current_revision(connection: Any) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return str(version) if version is not None else None


def upgrade(connection: Any) -> None:
    """Bring the schema to the newest migration (a sync connection, in a transaction)."""
    # Alembic costs 12 MiB of memory for good once imported: only load it for a real upgrade.
    current, head = _current_revision(connection), head_revision()
    if current == head:
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    location = resources.files("ghapp.store") / "migrations"
    config.set_main_option("script_location", str(location))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    # One line of ghapp's own: alembic's (one per migration, and its plugins') are kept quiet.
    log.info(
        "database schema upgraded", extra={"from_revision": current or "none", "to_revision": head}
    )
