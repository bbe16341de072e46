"""Deployment statistics per repository and environment, computed in SQL (see DESIGN.md).

Every query reads indexes only. Counts come from one GROUP BY over `ix_deployments_stats`.
Time to restore: each counted failure looks up the first success after it (an index seek in
`ix_deployments_releases`); the failures sharing that success are one run of consecutive
failures, whose sample is that success's verdict minus the run's first failure's. Percentiles
interpolate linearly as PostgreSQL's `percentile_cont`, which computes them there; SQLite has
none, so it reads the two durations ranked around each percentile with LIMIT 2 OFFSET from
`ix_deployments_durations`, and the restore samples (one per run of failures: few) sorted."""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

if TYPE_CHECKING:
    from ghapp.store.sql import SqlStore

Group = tuple[str, str]
PERCENTILES = (0.5, 0.9)
COMPOUND_LIMIT = 400
# Failure verdicts that count as failures (a superseded or never-dispatched deploy does not).
_COUNTED_FAILURE = (
    "{t}verdict_status = 'failure' "
    "AND COALESCE({t}verdict_reason, '') NOT IN ('superseded', 'dispatch_rejected')"
)
_COUNTS = """
SELECT repository, environment, COUNT(*) AS deployments,
  SUM(CASE WHEN verdict_status = 'success' THEN 1 ELSE 0 END) AS successes,
  SUM(CASE WHEN {failure} THEN 1 ELSE 0 END) AS failures,
  COUNT(duration_seconds) AS timed
FROM deployments WHERE {window}
GROUP BY repository, environment
"""
# `+created_at`: a window bound must not steer the planner to the created_at index, away
# from the covering one (the unary plus is a no-op on PostgreSQL).
_RESTORES = """
WITH failures AS MATERIALIZED (
  SELECT f.repository, f.environment, f.completed_at,
    (SELECT MIN(s.completed_at) FROM deployments s
     WHERE s.repository = f.repository AND s.environment = f.environment
       AND s.verdict_status = 'success' AND s.completed_at > f.completed_at) AS restored_at
  FROM deployments f
  WHERE +f.created_at >= :since {filters} AND f.completed_at IS NOT NULL AND {failure}
), samples AS (
  SELECT repository, environment, restored_at - MIN(completed_at) AS v FROM failures
  WHERE restored_at IS NOT NULL GROUP BY repository, environment, restored_at
)
"""
_PG_RESTORE_MEDIAN = """
SELECT repository, environment, percentile_cont(0.5) WITHIN GROUP (ORDER BY v)
FROM samples GROUP BY repository, environment
"""
_SORTED_SAMPLES = (
    "SELECT repository, environment, v FROM samples ORDER BY repository, environment, v"
)
_PG_DURATIONS = """
SELECT repository, environment,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_seconds),
  percentile_cont(0.9) WITHIN GROUP (ORDER BY duration_seconds)
FROM deployments WHERE {window} AND duration_seconds IS NOT NULL
GROUP BY repository, environment
"""
_RANKED_DURATIONS = """
SELECT {group}, {which}, duration_seconds FROM (
  SELECT duration_seconds FROM deployments
  WHERE repository = :r{group} AND environment = :e{group} AND duration_seconds IS NOT NULL
    AND created_at >= :since
  ORDER BY duration_seconds LIMIT 2 OFFSET :k{group}_{which}) AS ranked{group}_{which}
"""


def _filters(repository: str | None, environment: str | None, prefix: str = "") -> str:
    clauses = []
    if repository is not None:
        clauses.append(f" AND {prefix}repository = :repository")
    if environment is not None:
        clauses.append(f" AND {prefix}environment = :environment")
    return "".join(clauses)


def interpolate(ranked: dict[int, float], n: int, fraction: float) -> float:
    """percentile_cont: linear interpolation between the values ranked around (n-1)p."""
    position = (n - 1) * fraction
    low = math.floor(position)
    value = ranked[low]
    if position > low and low + 1 in ranked:
        value += (position - low) * (ranked[low + 1] - value)
    return value


def percentile(values: Sequence[float], fraction: float) -> float:
    """percentile_cont over sorted values."""
    return interpolate(dict(enumerate(values)), len(values), fraction)


async def _durations_sqlite(
    store: SqlStore, timed: dict[Group, int], params: dict[str, Any]
) -> dict[Group, tuple[float, float]]:
    groups = [group for group, n in timed.items() if n]
    if not groups:
        return {}
    parts = []
    bound = {"since": params["since"]}
    for index, (repository, environment) in enumerate(groups):
        bound[f"r{index}"], bound[f"e{index}"] = repository, environment
        for which, fraction in enumerate(PERCENTILES):
            bound[f"k{index}_{which}"] = math.floor((timed[groups[index]] - 1) * fraction)
            parts.append(_RANKED_DURATIONS.format(group=index, which=which))
    ranked: dict[tuple[int, int], list[float]] = defaultdict(list)
    async with store.reader.connect() as conn:
        # SQLite allows 500 terms in a compound SELECT.
        for start in range(0, len(parts), COMPOUND_LIMIT):
            statement = text(" UNION ALL ".join(parts[start : start + COMPOUND_LIMIT]))
            for index, which, value in await conn.execute(statement, bound):
                ranked[(int(index), int(which))].append(float(value))
    result = {}
    for index, group in enumerate(groups):
        n = timed[group]
        values = []
        for which, fraction in enumerate(PERCENTILES):
            low = math.floor((n - 1) * fraction)
            pair = dict(enumerate(ranked[(index, which)], start=low))
            if low in pair:  # else a deployment was deleted between the two reads
                values.append(interpolate(pair, n, fraction))
        if len(values) == len(PERCENTILES):
            result[group] = (values[0], values[1])
    return result


async def _restores(store: SqlStore, sql: str, params: dict[str, Any]) -> dict[Group, float]:
    async with store.reader.connect() as conn:
        if not store.is_sqlite:
            rows = await conn.execute(text(sql + _PG_RESTORE_MEDIAN), params)
            return {(r[0], r[1]): float(r[2]) for r in rows}
        samples: dict[Group, list[float]] = defaultdict(list)
        for repository, environment, value in await conn.execute(
            text(sql + _SORTED_SAMPLES), params
        ):
            samples[(repository, environment)].append(float(value))
    return {group: percentile(values, 0.5) for group, values in samples.items()}


async def deployment_stats(
    store: SqlStore,
    *,
    since: float,
    days: int,
    repository: str | None = None,
    environment: str | None = None,
) -> list[dict[str, Any]]:
    """One entry per repository and environment with deployments created since a time."""
    window = "created_at >= :since" + _filters(repository, environment)
    params: dict[str, Any] = {"since": since}
    if repository is not None:
        params["repository"] = repository
    if environment is not None:
        params["environment"] = environment
    failure = _COUNTED_FAILURE.format(t="")
    restore_sql = _RESTORES.format(
        filters=_filters(repository, environment, "f."),
        failure=_COUNTED_FAILURE.format(t="f."),
    )

    async def counted() -> list[Any]:
        async with store.reader.connect() as conn:
            sql = _COUNTS.format(window=window, failure=failure)
            return list((await conn.execute(text(sql), params)).all())

    async def ranked() -> dict[Group, tuple[float, float]]:
        if store.is_sqlite:
            # The ranks to read need the counts first.
            rows = await counts_task
            return await _durations_sqlite(store, {(r[0], r[1]): int(r[5]) for r in rows}, params)
        async with store.reader.connect() as conn:
            found = await conn.execute(text(_PG_DURATIONS.format(window=window)), params)
            return {(r[0], r[1]): (float(r[2]), float(r[3])) for r in found}

    # Three reads on three connections, side by side: the answer waits for the slowest only.
    counts_task = asyncio.ensure_future(counted())
    durations, restores = await asyncio.gather(ranked(), _restores(store, restore_sql, params))
    counts = await counts_task
    stats = []
    for repo, env, total, successes, failures, _timed in sorted(counts):
        judged = int(successes or 0) + int(failures or 0)
        duration = durations.get((repo, env))
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
                "time_to_restore_seconds": {"median": restores.get((repo, env))},
            }
        )
    return stats


_DAILY = """
SELECT {day} AS day,
  SUM(CASE WHEN verdict_status = 'success' THEN 1 ELSE 0 END) AS successes,
  SUM(CASE WHEN {failure} THEN 1 ELSE 0 END) AS failures,
  AVG(duration_seconds) AS mean_duration
FROM deployments WHERE {window}
GROUP BY {day} ORDER BY day
"""


async def daily(
    store: SqlStore,
    *,
    since: float,
    repository: str | None = None,
    environment: str | None = None,
) -> list[tuple[int, int, int, float | None]]:
    """Per UTC day (days since the epoch): successes, counted failures, mean duration."""
    # PostgreSQL rounds a float cast to integer; SQLite truncates (and may lack FLOOR).
    day = "CAST(created_at / 86400 AS INTEGER)" if store.is_sqlite else "FLOOR(created_at / 86400)"
    window = "created_at >= :since" + _filters(repository, environment)
    params: dict[str, Any] = {"since": since}
    if repository is not None:
        params["repository"] = repository
    if environment is not None:
        params["environment"] = environment
    sql = _DAILY.format(day=day, failure=_COUNTED_FAILURE.format(t=""), window=window)
    async with store.reader.connect() as conn:
        rows = await conn.execute(text(sql), params)
        return [
            (int(r[0]), int(r[1] or 0), int(r[2] or 0), float(r[3]) if r[3] is not None else None)
            for r in rows
        ]
