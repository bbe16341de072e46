"""`GET /api/v1/deployments?metadata.K=V` (5 filters) over a million metadata rows, PostgreSQL.

Method: the PostgreSQL database (GHAPP_BENCH_POSTGRES_URL, else GHAPP_TEST_POSTGRES_URL; its
public schema is dropped first) is brought to the head schema by `SqlStore.open()`, then
filled in SQL (generate_series) with 100,000 deployments, each with a stored document, and
10 metadata keys each: 1,000,000 `deployment_metadata` rows. The keys: `thread_id` (unique),
`env` (3 values), `team` (20), `region` (7), `node` (2), `tier` (4), `zone` (5), `owner` (50),
`app` (100), `flag` (2), each value drawn by a hash of the deployment's number, so the keys are
independent. Then `VACUUM ANALYZE`, as autovacuum would after a bulk load.

Measured: the statement `SqlStore.recent(metadata=...)` runs (the listing's query, newest 50,
built by ghapp's own code and compiled for PostgreSQL) under `EXPLAIN (ANALYZE, FORMAT JSON)`:
PostgreSQL's own Planning Time and Execution Time, median of 7 after one warm-up, for three
sets of 5 filters: `selective` (a thread_id and four more of that deployment's pairs: 1 row),
`broad` (env, node, flag, tier, zone of one deployment: some 430 rows, the newest 50 kept)
and `none` (no deployment has them all). Checked: `SqlStore.recent` returns the deployments a
scan in Python finds. Reference, side by side on the same data: the former statement (one
`IN (SELECT ...)` per filter) with the same 5 filters, and with 10 (every key of one
deployment) and 20 (each of those twice), which it accepted. Target: planning under 50 ms
with 5 filters. Not run under `--quick` (which runs beside the other benchmarks and leaves
PostgreSQL alone): `tests/test_stream_and_filter_limits.py` checks the statement's plan on a
smaller table.
"""

from __future__ import annotations

import os
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql

from benchmarks._common import row
from ghapp.core.deploy_dispatch import new_deployment
from ghapp.core.models import DeploymentRequest
from ghapp.store import SqlStore
from ghapp.store.metadata_filter import with_metadata
from ghapp.store.rows import _select_records
from ghapp.store.schema import deployment_metadata, deployments

NAME = "metadata"
PLANNING_TARGET_MS = 50.0
LIMIT = 50
# Key -> how many values it takes (thread_id: one per deployment).
KEYS = {
    "env": 3, "team": 20, "region": 7, "node": 2, "tier": 4, "zone": 5, "owner": 50,
    "app": 100, "flag": 2,
}
PLACEHOLDER = "dep_000000000000000000000000"
# Values by multiplicative hashing (n * factor mod a prime), the same in SQL and in Python:
# one factor per key keeps the keys' values independent of each other.
MODULUS = 1_000_003
FACTORS = [7_919, 104_729, 15_485_863, 32_452_843, 49_979_687, 67_867_967, 86_028_121,
           122_949_829, 141_650_963]


def value_of(key: str, number: int) -> str:
    """The value of `key` on deployment `number`, as the SQL below computes it."""
    if key == "thread_id":
        return f"th-{number}"
    factor = FACTORS[list(KEYS).index(key)]
    return f"{key}-{number * factor % MODULUS % KEYS[key]}"


def _document() -> str:
    request = DeploymentRequest(repository="acme/shop", metadata={"thread_id": "th-0"})
    record = new_deployment(
        PLACEHOLDER, request, ref="main", callback_url="http://orch.test/cb",
        installation_id=1, run_id=None, html_url=None, now=datetime.now(UTC),
    )
    return record.model_dump_json()


async def _fill(store: SqlStore, count: int) -> None:
    """`count` deployments and 10 metadata rows each, written by PostgreSQL itself."""
    doc = _document()
    async with store.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO deployments (id, repository, state, phase, created_at, updated_at,"
                " last_heard_at, version, environment, kind, doc)"
                " SELECT 'dep_' || lpad(to_hex(n), 24, '0'), 'acme/shop', 'dispatched',"
                " 'dispatched', n, n, n, 1, 'production', 'deploy',"
                " replace(:doc, :placeholder, 'dep_' || lpad(to_hex(n), 24, '0'))"
                " FROM generate_series(1, :count) AS n"
            ),
            {"doc": doc, "placeholder": PLACEHOLDER, "count": count},
        )
        await conn.execute(
            text(
                "INSERT INTO deployment_metadata (key, value, deployment_id)"
                " SELECT 'thread_id', 'th-' || n, 'dep_' || lpad(to_hex(n), 24, '0')"
                " FROM generate_series(1, :count) AS n"
            ),
            {"count": count},
        )
        for (key, values), factor in zip(KEYS.items(), FACTORS, strict=True):
            await conn.execute(
                text(
                    "INSERT INTO deployment_metadata (key, value, deployment_id)"
                    " SELECT CAST(:key AS text), CAST(:key AS text) || '-' ||"
                    " (n::bigint * CAST(:factor AS bigint) % CAST(:modulus AS bigint)"
                    " % CAST(:values AS bigint)),"
                    " 'dep_' || lpad(to_hex(n), 24, '0') FROM generate_series(1, :count) AS n"
                ),
                {"key": key, "factor": factor, "modulus": MODULUS, "values": values,
                 "count": count},
            )
    async with store.engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
        await conn.execute(text("VACUUM ANALYZE deployments"))
        await conn.execute(text("VACUUM ANALYZE deployment_metadata"))


def _sql(query: Any) -> str:
    compiled = query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    return str(compiled)


def listing(pairs: dict[str, str]) -> str:
    """The listing's statement as `SqlStore.recent` builds it."""
    query = with_metadata(_select_records(), pairs)
    query = query.order_by(deployments.c.created_at.desc(), deployments.c.id.desc())
    return _sql(query.limit(LIMIT))


def former_listing(pairs: list[tuple[str, str]]) -> str:
    """The statement before: one `IN (SELECT ...)` per filter."""
    query = _select_records()
    for key, value in pairs:
        query = query.where(
            deployments.c.id.in_(
                select(deployment_metadata.c.deployment_id).where(
                    deployment_metadata.c.key == key, deployment_metadata.c.value == value
                )
            )
        )
    query = query.order_by(deployments.c.created_at.desc(), deployments.c.id.desc())
    return _sql(query.limit(LIMIT))


async def _explain(store: SqlStore, sql: str, repeats: int) -> tuple[float, float, int]:
    """Median planning and execution ms under EXPLAIN ANALYZE, and the rows returned."""
    planning, execution, rows = [], [], 0
    for n in range(repeats + 1):
        async with store.engine.connect() as conn:
            result = await conn.execute(text("EXPLAIN (ANALYZE, FORMAT JSON) " + sql))
            plan = result.scalar_one()
        if isinstance(plan, str):
            import json

            plan = json.loads(plan)
        top = plan[0]
        rows = int(top["Plan"].get("Actual Rows", 0))
        if n:  # the first is a warm-up
            planning.append(top["Planning Time"])
            execution.append(top["Execution Time"])
    return round(statistics.median(planning), 2), round(statistics.median(execution), 2), rows


def cases(count: int) -> dict[str, dict[str, str]]:
    """The three sets of 5 filters (see the docstring)."""
    one = count // 2 + 1
    selective = {"thread_id": value_of("thread_id", one)}
    selective.update({key: value_of(key, one) for key in ("env", "team", "region", "node")})
    broad = {key: value_of(key, one) for key in ("env", "node", "flag", "tier", "zone")}
    none = {**broad, "zone": "zone-none"}
    return {"selective": selective, "broad": broad, "none": none}


def expected(count: int, pairs: dict[str, str]) -> list[str]:
    """The newest 50 deployments having every pair, found in Python."""
    found = [
        n for n in range(count, 0, -1)
        if all(value_of(key, n) == value for key, value in pairs.items())
    ]
    return [f"dep_{n:024x}" for n in found[:LIMIT]]


async def _reset(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


async def run(quick: bool, _tmp: Path) -> dict[str, Any]:
    """Fill, check, explain, and report against the planning target."""
    url = os.environ.get("GHAPP_BENCH_POSTGRES_URL") or os.environ.get("GHAPP_TEST_POSTGRES_URL")
    if not url or quick:
        why = "--quick" if quick else "no GHAPP_BENCH_POSTGRES_URL / GHAPP_TEST_POSTGRES_URL"
        return {"skipped": why, "rows": [row(f"skipped: {why}", None)]}
    count, repeats = 100_000, 7
    await _reset(url)
    store = SqlStore(url)
    await store.open()
    results: dict[str, Any] = {"deployments": count, "metadata_rows": count * (len(KEYS) + 1)}
    out = []
    try:
        await _fill(store, count)
        for label, pairs in cases(count).items():
            found = [r.id for r in await store.recent(metadata=pairs, limit=LIMIT)]
            assert found == expected(count, pairs), (label, found[:3])
            planning, execution, rows = await _explain(store, listing(pairs), repeats)
            before = await _explain(store, former_listing(list(pairs.items())), repeats)
            results[label] = {
                "filters": pairs, "rows": rows, "planning_ms": planning,
                "execution_ms": execution, "former_planning_ms": before[0],
                "former_execution_ms": before[1],
            }
            out.append(row(
                f"5 filters, {label} ({rows} rows): planning / execution", f"{planning} / "
                f"{execution}", "ms", f"planning < {PLANNING_TARGET_MS:g}",
                planning < PLANNING_TARGET_MS,
            ))
            out.append(row(
                f"5 filters, {label}, reference: one IN per filter", f"{before[0]} / {before[1]}",
                "ms",
            ))
        every = [(key, value_of(key, count // 2 + 1)) for key in ("thread_id", *KEYS)]
        # 10 and 20 filters (each pair twice), as the former code accepted any number.
        for filters in (every, every * 2):
            before = await _explain(store, former_listing(filters), repeats)
            results[f"former_{len(filters)}_filters"] = {
                "planning_ms": before[0], "execution_ms": before[1],
            }
            out.append(row(
                f"reference: {len(filters)} filters, one IN per filter (no longer accepted)",
                f"{before[0]} / {before[1]}", "ms",
            ))
    finally:
        await store.close()
        await _reset(url)
    results["metadata_rows"] = count * (len(KEYS) + 1)
    results["rows"] = out
    return results
