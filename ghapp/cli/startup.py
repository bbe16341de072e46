"""`ghapp serve`'s first step: open the database (create, migrate) before serving, so that one
that cannot be reached or opened stops start-up with one line naming DATABASE_URL (password
masked) and the cause, never a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
from collections.abc import Iterator

from ghapp.config import SettingsError
from ghapp.core.untrusted import one_line


def masked(database_url: str) -> str:
    """The URL with its password as `***`."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(a URL that does not parse)"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The error, then what caused it (SQLAlchemy's `orig`, `__cause__`, `__context__`)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        current = (
            orig if isinstance(orig, BaseException) else current.__cause__ or current.__context__
        )


def cause(exc: BaseException) -> str:
    """Why the database could not be opened, in a few words from the innermost error."""
    errors = list(_chain(exc))
    for error in errors:
        if isinstance(error, TimeoutError):
            return "no answer in time (is the host reachable?)"
    for error in reversed(errors):
        if isinstance(error, socket.gaierror):
            return f"the host name could not be resolved ({error.strerror})"
        if isinstance(error, ConnectionRefusedError):
            return "connection refused (is the database server running, on that host and port?)"
        if isinstance(error, OSError) and error.strerror:
            return error.strerror
    innermost = errors[-1]
    text = str(innermost).strip() or type(innermost).__name__
    if "unable to open database file" in text:
        return f"{text} (does the folder exist, and may this user write in it?)"
    return text


def sqlite_problem(database_url: str) -> str | None:
    """Why a SQLite file cannot be opened, found here in this thread (the store's driver would
    say it from a thread of its own, and less clearly), or None."""
    from ghapp.store.base import async_url, create_private_file
    from ghapp.store.inline import sqlite_file

    path = sqlite_file(async_url(database_url)) if database_url.startswith("sqlite") else None
    if path is None:
        return None
    if not path.parent.is_dir():
        return f"the folder {path.parent} does not exist"
    try:
        create_private_file(path)  # as the store creates it: mode 0600
        sqlite3.connect(path).close()
    except (OSError, sqlite3.Error) as exc:
        return cause(exc)
    return None


async def _open(database_url: str) -> str | None:
    """None once the database is open and at the newest schema, else why not."""
    from ghapp.store import SqlStore

    problem = sqlite_problem(database_url)
    if problem is not None:
        return problem
    try:
        store = SqlStore(database_url)
    except Exception as exc:  # a URL the driver refuses (bad port, unknown option)
        return cause(exc)
    try:
        await store.open()
    except Exception as exc:
        # Whatever stopped it (refused, unknown host, wrong password, missing database, a
        # read-only file), the user acts on its cause, not on a traceback.
        return cause(exc)
    finally:
        with contextlib.suppress(Exception):
            await store.close()
    return None


def open_database(database_url: str) -> None:
    """Open the database once, or SettingsError: `DATABASE_URL: cannot open URL: cause`."""
    problem = asyncio.run(_open(database_url))
    if problem is not None:
        raise SettingsError(
            f"DATABASE_URL: cannot open {masked(database_url)}: {one_line(problem, 300)}"
        )
