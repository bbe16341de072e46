"""Bytes a deployment costs in the database, kept as release history (docs/retention.md).

Method: N deployments stored through the store's own calls on a fresh database, each with
`inputs` {environment, version}, three metadata keys and an Idempotency-Key, completed with
its callback row: 80% successes (a deployed URL), 20% failures with one failed job, its
annotations and a log excerpt of 60 lines (~4 KiB) plus the Markdown report. Measured:
SQLite, the file size after a WAL checkpoint and VACUUM, divided by N; PostgreSQL,
`pg_total_relation_size` (table, indexes and TOAST) of deployments, deployment_metadata and
outbox after VACUUM, divided by N.

    python -m benchmarks.storage [--deployments 2000] [--database postgresql://... (emptied)]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from ghapp.core import deploys
from ghapp.core.deploys import FailureGathered, RunObserved
from ghapp.core.models import Annotation, DeploymentRequest, FailedJob, FailedStep
from ghapp.store import SqlStore

START = datetime(2026, 1, 1, tzinfo=UTC)


def excerpt() -> str:
    return "\n".join(
        f"2026-01-01T00:00:{n:02d}.0000000Z step {n}: compiling module_{n} with flags -O2 -g"
        for n in range(59)
    ) + "\n##[error]Process completed with exit code 1."


async def fill(store: SqlStore, count: int) -> None:
    for n in range(count):
        at = START + timedelta(minutes=n)
        record = deploys.new_deployment(
            f"dep_{n:024x}",
            DeploymentRequest(
                repository="acme/shop",
                inputs={"environment": "production", "version": f"v1.{n}.0"},
                metadata={"thread_id": f"thread-{n:08d}", "team": "payments", "ticket": f"OPS-{n}"},
            ),
            ref="main", callback_url="https://orchestrator.example/cb", installation_id=1,
            run_id=10_000_000_000 + n, html_url=f"https://github.com/acme/shop/actions/runs/{n}",
            now=at, correlation_id=f"dep_{n:024x}",
        )
        await store.create(record, idempotency_key=f"deploy-{n:08d}-abcdef", request_hash="h" * 64)
        stored = await store.get(record.id)
        assert stored is not None
        failed = n % 5 == 0
        done = at + timedelta(minutes=3)
        run = RunObserved(record.run.id if record.run else 0, 1, "completed",
                          "failure" if failed else "success", None, "a" * 40, done,
                          started_at=at, updated_at=done)
        transition = deploys.apply(stored, run)
        if failed:
            job = FailedJob(
                id=n, name="build", conclusion="failure",
                failed_step=FailedStep(number=3, name="Compile"),
                log_excerpt=excerpt(),
                annotations=[Annotation(path=".github", annotation_level="failure",
                                        message="Process completed with exit code 1.")],
                html_url=f"https://github.com/acme/shop/actions/runs/{n}/job/{n}",
            )
            transition = deploys.apply(
                transition.record,
                FailureGathered(failed_jobs=[job], summary="build failed", at=done),
            )
        else:
            transition = deploys.apply(
                transition.record, deploys.DeployedUrlFound(url="https://shop.example.com", at=done)
            )
        assert await store.save(transition.record, enqueue_callback=True)


def _vacuumed_size(path: Path) -> int:
    import sqlite3

    with sqlite3.connect(path) as raw:
        raw.execute("VACUUM")
    return path.stat().st_size


async def measure(database_url: str, count: int) -> dict[str, Any]:
    store = SqlStore(database_url)
    await store.open()
    try:
        await fill(store, count)
        if store.is_sqlite:
            path = Path(database_url.removeprefix("sqlite:///"))
            async with store.engine.connect() as conn:
                await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
            await store.close()
            size = await asyncio.to_thread(_vacuumed_size, path)
        else:
            async with store.engine.connect() as conn:
                await conn.execute(text("COMMIT"))
                await conn.execute(text("VACUUM ANALYZE deployments"))
                size = int((await conn.execute(text(
                    "SELECT pg_total_relation_size('deployments') + "
                    "pg_total_relation_size('deployment_metadata') + "
                    "pg_total_relation_size('outbox')"
                ))).scalar() or 0)
            await store.close()
    finally:
        await store.close()
    return {"database": database_url.split(":")[0], "deployments": count,
            "bytes": size, "bytes_per_deployment": round(size / count)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=2000)
    parser.add_argument(
        "--database", default=None,
        help="a PostgreSQL URL whose schema may be emptied (without: SQLite only)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        results = [await measure(f"sqlite:///{folder}/ghapp.db", args.deployments)]
    if args.database:
        import asyncpg

        conn = await asyncpg.connect(args.database)
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
        await conn.close()
        results.append(await measure(args.database, args.deployments))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
