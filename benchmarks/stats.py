"""GET /api/v1/stats over 100,000 deployments, on SQLite and PostgreSQL.

Method: a database at the head schema is filled with synthetic deployments (20 repositories x
3 environments, created over the last 30 days, 85% successes, the rest failures of every
kind, durations of 1-15 minutes, each with a realistic stored document; the successes' restore
times are then filled as writing them through the store would), and `SqlStore.stats` (the
endpoint's whole work but the JSON encoding) is timed: the median of 7 calls after one warm-up,
for every repository and environment, and for one repository. The reference, measured side by
side on the same data: the same calls with the covering index `ix_deployments_stats` dropped.
PostgreSQL is vacuumed after the load, as autovacuum would (index-only scans need its
visibility map). PostgreSQL runs (not under --quick) when GHAPP_BENCH_POSTGRES_URL (or
GHAPP_TEST_POSTGRES_URL) is set; its database's public schema is dropped first."""

from __future__ import annotations

import os
import random
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

from benchmarks._common import row
from ghapp.core import deploys
from ghapp.core.models import DeploymentRequest, Verdict
from ghapp.store import SqlStore
from ghapp.store.history import FILL_RESTORES
from ghapp.store.rows import _columns
from ghapp.store.schema import deployments

NAME = "stats"
TARGET_MS = 200.0
REPOSITORIES = [f"acme/app{i:02d}" for i in range(20)]
ENVIRONMENTS = ["production", "staging", "preview"]
REASONS = ["failure", "failure", "failure", "timed_out", "cancelled", "superseded",
           "dispatch_rejected"]


def synthetic_rows(count: int, seed: int = 15) -> list[dict[str, Any]]:
    """Rows of the deployments table for `count` finished deployments of the last 30 days."""
    rng = random.Random(seed)
    now = time.time()
    rows = []
    for i in range(count):
        created = now - rng.uniform(0, 30 * 86400)
        repository = rng.choice(REPOSITORIES)
        environment = rng.choice(ENVIRONMENTS)
        request = DeploymentRequest(
            repository=repository,
            inputs={"environment": environment, "version": f"v{i}"},
            metadata={"thread_id": f"th_{i}"},
        )
        success = rng.random() < 0.85
        reason = None if success else rng.choice(REASONS)
        has_run = reason != "dispatch_rejected"
        record = deploys.new_deployment(
            f"dep_{i:024x}", request, ref="main", callback_url="http://orch.test/cb",
            installation_id=1, run_id=10_000_000 + i if has_run else None,
            html_url=f"https://github.com/{repository}/actions/runs/{10_000_000 + i}",
            now=datetime.fromtimestamp(created, UTC),
        )
        record.head_sha = f"{i:040x}"
        record.verdict = Verdict(
            status="success" if success else "failure",
            reason=reason,  # type: ignore[arg-type]
            summary=f"Deployed {repository}@main (run {10_000_000 + i}).",
            deployed_url=f"https://{environment}.example.com" if success else None,
        )
        record.state = record.phase = "completed"
        record.completed_at = datetime.fromtimestamp(
            created + (rng.uniform(60, 900) if has_run else 0.5), UTC
        )
        rows.append({**_columns(record), "version": 1})
    return rows


async def _analyze(store: SqlStore) -> None:
    if store.is_sqlite:
        async with store.begin() as conn:
            await conn.execute(text("ANALYZE"))
        return
    # As autovacuum leaves a table a while after a bulk load: statistics and the visibility
    # map (without it PostgreSQL reads the table's rows to check an index-only scan).
    async with store.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE deployments"))


async def _fill(store: SqlStore, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), 2000):
        async with store.begin() as conn:
            await conn.execute(insert(deployments), rows[start : start + 2000])
    await _analyze(store)
    # What writing each success through the store records on it (bulk inserts skip that).
    async with store.begin() as conn:
        await conn.execute(text(FILL_RESTORES))
    await _analyze(store)


async def _time(store: SqlStore, repository: str | None, repeats: int) -> tuple[float, int]:
    since = time.time() - 30 * 86400
    found = await store.stats(since=since, days=30, repository=repository)  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        await store.stats(since=since, days=30, repository=repository)
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1), len(found)


async def _measure(url: str, rows: list[dict[str, Any]], repeats: int) -> dict[str, Any]:
    store = SqlStore(url)
    await store.open()
    try:
        await _fill(store, rows)
        result: dict[str, Any] = {}
        for label, repository in (("all", None), ("one_repository", REPOSITORIES[0])):
            result[label] = await _time(store, repository, repeats)
        async with store.begin() as conn:
            await conn.execute(text("DROP INDEX ix_deployments_stats"))
        for label, repository in (("all", None), ("one_repository", REPOSITORIES[0])):
            result[label + "_without_index"] = await _time(store, repository, repeats)
        return result
    finally:
        await store.close()


async def _reset_postgres(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


async def run(quick: bool, tmp: Path) -> dict[str, Any]:
    """Fill, time, and report against the 200 ms target."""
    count = 2_000 if quick else 100_000
    repeats = 3 if quick else 7
    rows = synthetic_rows(count)
    databases = {"sqlite": f"sqlite:///{tmp / 'stats.db'}"}
    postgres = os.environ.get("GHAPP_BENCH_POSTGRES_URL") or os.environ.get(
        "GHAPP_TEST_POSTGRES_URL"
    )
    # --quick runs beside the other benchmarks: it leaves PostgreSQL (and its schema) alone.
    if postgres and not quick:
        await _reset_postgres(postgres)
        databases["postgresql"] = postgres
    results: dict[str, Any] = {"deployments": count}
    out_rows = []
    for name, url in databases.items():
        measured = await _measure(url, rows, repeats)
        results[name] = measured
        for label in ("all", "one_repository"):
            ms, groups = measured[label]
            reference, _ = measured[label + "_without_index"]
            out_rows.append(row(
                f"{name}, {count:,} deployments, {label} ({groups} entries)", ms, "ms",
                f"< {TARGET_MS:g}" if not quick else "", ms < TARGET_MS if not quick else None,
            ))
            out_rows.append(row(
                f"{name}, {label}, reference: without ix_deployments_stats", reference, "ms"
            ))
    results["rows"] = out_rows
    return results
