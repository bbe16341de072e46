"""Shared fixtures: a database of each kind, the reference data folder."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from ghapp.cli.demo import demo_workflows
from ghapp.simulator.stack import Stack

# The orchestrator kit's fixture, taken from the module rather than as the plugin, so that this
# suite runs the same whether the plugin is installed, not yet installed, or off (-p no:...).
from ghapp.testing import ghapp_sandbox as ghapp_sandbox

# GHAPP_REFERENCE (as for the benchmarks) points a checkout elsewhere at the shared data.
REFERENCE = Path(
    os.environ.get("GHAPP_REFERENCE")
    or Path(__file__).resolve().parents[2] / "shared" / "github-reference"
)
POSTGRES_ENV = "GHAPP_TEST_POSTGRES_URL"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, give each worker its own ports and its own PostgreSQL database."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ...
    if not worker:
        return
    number = int(worker.removeprefix("gw"))
    os.environ["GHAPP_TEST_PORT_BASE"] = str(20000 + 1000 * (number % 12))
    url = os.environ.get(POSTGRES_ENV)
    if url:
        os.environ[POSTGRES_ENV] = asyncio.run(worker_database(url, worker))


# The longest tests (a minute or more on a loaded machine) start first, so that the parallel
# workers do not wait on one of them at the end of the run.
SLOW_FIRST = (
    "test_tooling.py",
    "test_benchmarks_smoke.py",
    "test_openapi.py",
    "test_webhook_walkthrough.py",
    "test_racing_requests.py",
    "test_examples.py",
    "test_write_ahead.py",
)


# Modules whose tests run on PostgreSQL as well as SQLite by default: those where the database
# engine makes a difference (the store, locks, races and compare-and-set, durability, leases,
# migrations, retention, the statistics' SQL).
# The others go through the same store code over HTTP: their PostgreSQL half runs with
# GHAPP_TEST_POSTGRES_ALL=1 (the suite must stay within CI's ten minutes on two slow cores).
POSTGRES_MODULES = frozenset({
    "test_access.py", "test_database_outage.py", "test_delivery_log_batches.py",
    "test_engine.py", "test_gate.py", "test_migrate.py", "test_poller.py",
    "test_racing_requests.py", "test_releases_migration.py",
    "test_replicas.py", "test_retention.py", "test_startup.py", "test_started_callback.py",
    "test_stats.py", "test_store.py", "test_write_ahead.py",
})  # fmt: skip


def _postgres_half_skipped(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    if callspec is None or callspec.params.get("database_url") != "postgresql":
        return False
    return item.path.name not in POSTGRES_MODULES and not os.environ.get("GHAPP_TEST_POSTGRES_ALL")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put the slowest modules' tests first (the order of the others is kept); leave out the
    PostgreSQL half of modules outside POSTGRES_MODULES unless GHAPP_TEST_POSTGRES_ALL is set."""
    dropped = [item for item in items if _postgres_half_skipped(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not _postgres_half_skipped(item)]
    rank = {name: n for n, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))


async def worker_database(url: str, worker: str) -> str:
    """The URL of `<database>_<worker>` beside the given one, created if it is not there yet."""
    import asyncpg

    base, name = url.rsplit("/", 1)
    own = f"{name}_{worker}"
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", own):
            await conn.execute(f'CREATE DATABASE "{own}"')
    finally:
        await conn.close()
    return f"{base}/{own}"


async def reset_postgres(url: str) -> None:
    """Empty the test database, so each test starts from the migrations."""
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


# Modules whose tests start from an empty database (they migrate it themselves).
EMPTY_DATABASE_MODULES = frozenset({"test_migrate.py", "test_releases_migration.py"})


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A SQLite database at the schema's head, made once per worker: each test's starts as a
    copy (migrating a new file costs ~0.15 s of CPU, a few hundred times a run)."""
    from ghapp.store import SqlStore

    path = tmp_path_factory.mktemp("template") / "ghapp.db"

    async def migrate() -> None:
        store = SqlStore(f"sqlite:///{path}")
        await store.open()
        await store.close()

    asyncio.run(migrate())
    import sqlite3

    # Everything in the main file (no WAL beside it), so that one copy is the whole database.
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.read_bytes()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_sqlite: bytes
) -> AsyncIterator[str]:
    """A DATABASE_URL of each kind; PostgreSQL only where GHAPP_TEST_POSTGRES_URL is set."""
    if request.param == "sqlite":
        path = tmp_path / "ghapp.db"
        if request.node.path.name in EMPTY_DATABASE_MODULES:
            yield f"sqlite:///{path}"
            return
        # Owner-only, as ghapp creates its databases.
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            out.write(migrated_sqlite)
        yield f"sqlite:///{path}"
        return
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set: PostgreSQL tests skipped")
    await reset_postgres(url)
    yield url


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[Stack]:
    """ghapp on loopback with the demo's repositories (acme/shop succeeds, acme/api fails)."""
    stack = await Stack.start(database_url)
    for repository, workflow in demo_workflows().items():
        stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
    yield stack
    await stack.close()


Cli = Callable[..., Awaitable[tuple[int, str, str]]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run the `ghapp` command line in a thread (it runs its own event loop): (code, out, err)."""
    from ghapp.cli.main import main

    async def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(main, list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
async def postgres_url() -> str:
    """An emptied PostgreSQL database, for tests that only make sense there."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set: this test needs PostgreSQL")
    await reset_postgres(url)
    return url


@pytest.fixture
def reference() -> Path:
    """The shared GitHub reference data; tests using it skip where it is absent."""
    if not REFERENCE.is_dir():
        pytest.skip(f"GitHub reference data not found at {REFERENCE}")
    return REFERENCE
