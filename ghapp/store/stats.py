"""Deployment statistics per repository and environment, computed in SQL (see DESIGN.md).

Counts and percentiles come from the `ix_deployments_stats` index alone. PostgreSQL computes
the percentiles with `percentile_cont`; SQLite has none, so it selects the two ranked values
around each percentile with window functions and they are interpolated the same way here."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

if TYPE_CHECKING:
    from ghapp.store.sql import SqlStore

Group = tuple[str, str]
# Failure verdicts that count as failures (a superseded or never-dispatched deploy does not).
_COUNTED_FAILURE = (
    "verdict_status = 'failure' "
    "AND COALESCE(verdict_reason, '') NOT IN ('superseded', 'dispatch_rejected')"
)
_DURATIONS = """
SELECT repository, environment, completed_at - created_at AS v
FROM deployments WHERE {window} AND run_id IS NOT NULL AND completed_at IS NOT NULL
"""
# One sample per run of consecutive failures: `s` counts the successes up to each outcome, so
# the failures of one run share `s` and the success that ends it has `s + 1`.
_RESTORES = """
WITH o AS (
  SELECT repository, environment, completed_at,
    CASE WHEN verdict_status = 'success' THEN 1 ELSE 0 END AS ok
  FROM deployments
  WHERE {window} AND completed_at IS NOT NULL
    AND (verdict_status = 'success' OR ({failure}))
), m AS (
  SELECT repository, environment, completed_at, ok,
    SUM(ok) OVER (PARTITION BY repository, environment ORDER BY completed_at
                  ROWS UNBOUNDED PRECEDING) AS s
  FROM o
), f AS (
  SELECT repository, environment, s, MIN(completed_at) AS first_failure
  FROM m WHERE ok = 0 GROUP BY repository, environment, s
)
SELECT f.repository, f.environment, m.completed_at - f.first_failure AS v
FROM f JOIN m ON m.repository = f.repository AND m.environment = f.environment
  AND m.ok = 1 AND m.s = f.s + 1
"""
_COUNTS = """
SELECT repository, environment, COUNT(*) AS deployments,
  SUM(CASE WHEN verdict_status = 'success' THEN 1 ELSE 0 END) AS successes,
  SUM(CASE WHEN {failure} THEN 1 ELSE 0 END) AS failures
FROM deployments WHERE {window}
GROUP BY repository, environment
"""
_PG_PERCENTILES = """
SELECT repository, environment,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY v) AS p50,
  percentile_cont(0.9) WITHIN GROUP (ORDER BY v) AS p90
FROM ({samples}) AS samples GROUP BY repository, environment
"""
# The values ranked floor((n-1)p) and the one after, for p = 0.5 and 0.9.
_RANKED = """
WITH r AS (
  SELECT repository, environment, v,
    ROW_NUMBER() OVER (PARTITION BY repository, environment ORDER BY v) - 1 AS i,
    COUNT(*) OVER (PARTITION BY repository, environment) AS n
  FROM ({samples}) AS samples
)
SELECT repository, environment, i, n, v FROM r
WHERE i IN (CAST((n - 1) * 0.5 AS INTEGER), CAST((n - 1) * 0.5 AS INTEGER) + 1,
            CAST((n - 1) * 0.9 AS INTEGER), CAST((n - 1) * 0.9 AS INTEGER) + 1)
"""


def _window(repository: str | None, environment: str | None) -> str:
    clauses = ["created_at >= :since"]
    if repository is not None:
        clauses.append("repository = :repository")
    if environment is not None:
        clauses.append("environment = :environment")
    return " AND ".join(clauses)


def interpolate(ranked: dict[int, float], n: int, fraction: float) -> float:
    """percentile_cont: linear interpolation between the values ranked around (n-1)p."""
    position = (n - 1) * fraction
    low = math.floor(position)
    value = ranked[low]
    if position > low and low + 1 in ranked:
        value += (position - low) * (ranked[low + 1] - value)
    return value


async def _percentiles(
    store: SqlStore, samples: str, params: dict[str, Any]
) -> dict[Group, tuple[float, float]]:
    async with store.reader.connect() as conn:
        if not store.is_sqlite:
            rows = await conn.execute(text(_PG_PERCENTILES.format(samples=samples)), params)
            return {(r[0], r[1]): (float(r[2]), float(r[3])) for r in rows}
        rows = await conn.execute(text(_RANKED.format(samples=samples)), params)
        ranked: dict[Group, dict[int, float]] = defaultdict(dict)
        sizes: dict[Group, int] = {}
        for repository, environment, i, n, v in rows:
            ranked[(repository, environment)][int(i)] = float(v)
            sizes[(repository, environment)] = int(n)
    return {
        group: (interpolate(values, sizes[group], 0.5), interpolate(values, sizes[group], 0.9))
        for group, values in ranked.items()
    }


async def deployment_stats(
    store: SqlStore,
    *,
    since: float,
    days: int,
    repository: str | None = None,
    environment: str | None = None,
) -> list[dict[str, Any]]:
    """One entry per repository and environment with deployments created since a time."""
    window = _window(repository, environment)
    params: dict[str, Any] = {"since": since, "repository": repository, "environment": environment}
    params = {k: v for k, v in params.items() if v is not None}
    async with store.reader.connect() as conn:
        counts = (
            await conn.execute(
                text(_COUNTS.format(window=window, failure=_COUNTED_FAILURE)), params
            )
        ).all()
    durations = await _percentiles(store, _DURATIONS.format(window=window), params)
    restores = await _percentiles(
        store, _RESTORES.format(window=window, failure=_COUNTED_FAILURE), params
    )
    stats = []
    for repo, env, total, successes, failures in sorted(counts):
        judged = int(successes or 0) + int(failures or 0)
        duration = durations.get((repo, env))
        restore = restores.get((repo, env))
        stats.append(
            {
                "repository": repo,
                "environment": env,
                "deployments": int(total),
                "successes": int(successes or 0),
                "failures": int(failures or 0),
                "change_failure_rate": int(failures or 0) / judged if judged else None,
                "duration_seconds": {
                    "median": duration[0] if duration else None,
                    "p90": duration[1] if duration else None,
                },
                "deployments_per_day": int(total) / days,
                "time_to_restore_seconds": {"median": restore[0] if restore else None},
            }
        )
    return stats
