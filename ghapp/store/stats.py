"""Deployment statistics per repository and environment, computed in SQL (see docs/releases.md).

Every query reads indexes only. Counts come from one GROUP BY over `ix_deployments_stats`.
Time to restore is kept on each success that ended a run of failures (`restore_seconds`,
written with the success: `history.note_restore`), so a window's samples are its successes'.
Percentiles interpolate linearly as PostgreSQL's `percentile_cont`, which computes them there;
SQLite has none, so it reads the two values ranked around each percentile with LIMIT 2 OFFSET
from `ix_deployments_durations` and `ix_deployments_restores`, and they are interpolated here."""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text

from ghapp.store.base import StoreBase

Group = tuple[str, str]
# (column, percentile) pairs the answer needs.
RANKED = (("duration_seconds", 0.5), ("duration_seconds", 0.9), ("restore_seconds", 0.5))
# SQLite allows 500 terms in a compound SELECT.
COMPOUND_LIMIT = 400
# Failure verdicts that count as failures (a superseded or never-dispatched deploy does not).
_COUNTED_FAILURE = (
    "verdict_status = 'failure' "
    "AND COALESCE(verdict_reason, '') NOT IN "
    "('superseded', 'dispatch_rejected', 'policy_rejected', 'review_rejected')"
)
_COUNTS = """
SELECT repository, environment, COUNT(*) AS deployments,
  SUM(CASE WHEN verdict_status = 'success' THEN 1 ELSE 0 END) AS successes,
  SUM(CASE WHEN {failure} THEN 1 ELSE 0 END) AS failures,
  COUNT(duration_seconds) AS timed,
  COUNT(restore_seconds) AS restored
FROM deployments WHERE {window}
GROUP BY repository, environment
"""
# Ordered-set aggregates leave NULLs out: each percentile is over the rows that have a value.
_PG_PERCENTILES = """
SELECT repository, environment,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_seconds),
  percentile_cont(0.9) WITHIN GROUP (ORDER BY duration_seconds),
  percentile_cont(0.5) WITHIN GROUP (ORDER BY restore_seconds)
FROM deployments WHERE {window}
GROUP BY repository, environment
"""
_RANKED_READ = """
SELECT {group}, {which}, {column} FROM (
  SELECT {column} FROM deployments
  WHERE repository = :r{group} AND environment = :e{group} AND {column} IS NOT NULL
    AND created_at >= :since
  ORDER BY {column} LIMIT 2 OFFSET :k{group}_{which}) AS ranked{group}_{which}
"""


# Dispatches not yet sent (`recorded`) may yet be dropped: they count nowhere.
_WINDOW = "created_at >= :since AND phase <> 'recorded'"


def _filters(repository: str | None, environment: str | None) -> str:
    clauses = []
    if repository is not None:
        clauses.append(" AND repository = :repository")
    if environment is not None:
        clauses.append(" AND environment = :environment")
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


_DAILY = """
SELECT {day} AS day,
  SUM(CASE WHEN verdict_status = 'success' THEN 1 ELSE 0 END) AS successes,
  SUM(CASE WHEN {failure} THEN 1 ELSE 0 END) AS failures,
  AVG(duration_seconds) AS mean_duration
FROM deployments WHERE {window}
GROUP BY {day} ORDER BY day
"""


class Stats(StoreBase):
    """Deployment statistics and the page's daily figures, computed in SQL."""

    async def _ranked_sqlite(
        self, sizes: dict[tuple[Group, str], int], since: float
    ) -> dict[tuple[Group, int], float]:
        """Each (group, RANKED index)'s percentile, from LIMIT 2 OFFSET reads of an index."""
        parts: list[str] = []
        bound: dict[str, Any] = {"since": since}
        wanted: list[tuple[Group, int, int]] = []
        groups = sorted({group for group, _ in sizes})
        for index, group in enumerate(groups):
            bound[f"r{index}"], bound[f"e{index}"] = group
            for which, (column, fraction) in enumerate(RANKED):
                n = sizes.get((group, column), 0)
                if not n:
                    continue
                bound[f"k{index}_{which}"] = math.floor((n - 1) * fraction)
                parts.append(_RANKED_READ.format(group=index, which=which, column=column))
                wanted.append((group, index, which))
        found: dict[tuple[int, int], list[float]] = defaultdict(list)
        async with self.reader.connect() as conn:
            for start in range(0, len(parts), COMPOUND_LIMIT):
                statement = text(" UNION ALL ".join(parts[start : start + COMPOUND_LIMIT]))
                for index, which, value in await conn.execute(statement, bound):
                    found[(int(index), int(which))].append(float(value))
        result = {}
        for group, index, which in wanted:
            column, fraction = RANKED[which]
            n = sizes[(group, column)]
            low = math.floor((n - 1) * fraction)
            pair = dict(enumerate(found[(index, which)], start=low))
            if low in pair:  # else rows were deleted between the two reads
                result[(group, which)] = interpolate(pair, n, fraction)
        return result

    async def stats(
        self,
        *,
        since: float,
        days: int,
        repository: str | None = None,
        environment: str | None = None,
    ) -> list[dict[str, Any]]:
        """One entry per repository and environment with deployments created since a time."""
        window = _WINDOW + _filters(repository, environment)
        params: dict[str, Any] = {"since": since}
        if repository is not None:
            params["repository"] = repository
        if environment is not None:
            params["environment"] = environment

        async def counted() -> list[Any]:
            async with self.reader.connect() as conn:
                sql = _COUNTS.format(window=window, failure=_COUNTED_FAILURE)
                return list((await conn.execute(text(sql), params)).all())

        async def ranked_pg() -> dict[tuple[Group, int], float]:
            async with self.reader.connect() as conn:
                found = await conn.execute(text(_PG_PERCENTILES.format(window=window)), params)
                return {
                    ((r[0], r[1]), which): float(r[2 + which])
                    for r in found
                    for which in range(len(RANKED))
                    if r[2 + which] is not None
                }

        if self.is_sqlite:
            counts = await counted()
            sizes = {}
            for r in counts:
                sizes[((r[0], r[1]), "duration_seconds")] = int(r[5])
                sizes[((r[0], r[1]), "restore_seconds")] = int(r[6])
            ranked = await self._ranked_sqlite(sizes, since)
        else:
            # Two reads on two connections, side by side.
            counts, ranked = await asyncio.gather(counted(), ranked_pg())
        stats = []
        for repo, env, total, successes, failures, _timed, _restored in sorted(counts):
            judged = int(successes or 0) + int(failures or 0)
            group = (repo, env)
            stats.append(
                {
                    "repository": repo,
                    "environment": env,
                    "deployments": int(total),
                    "successes": int(successes or 0),
                    "failures": int(failures or 0),
                    "change_failure_rate": int(failures or 0) / judged if judged else None,
                    "duration_seconds": {
                        "median": ranked.get((group, 0)),
                        "p90": ranked.get((group, 1)),
                    },
                    "deployments_per_day": int(total) / days,
                    "time_to_restore_seconds": {"median": ranked.get((group, 2))},
                }
            )
        return stats

    async def daily(
        self,
        *,
        since: float,
        repository: str | None = None,
        environment: str | None = None,
    ) -> list[tuple[int, int, int, float | None]]:
        """Per UTC day (days since the epoch): successes, counted failures, mean duration."""
        # PostgreSQL rounds a float cast to integer; SQLite truncates (and may lack FLOOR).
        day = (
            "CAST(created_at / 86400 AS INTEGER)"
            if self.is_sqlite
            else "FLOOR(created_at / 86400)"
        )
        window = _WINDOW + _filters(repository, environment)
        params: dict[str, Any] = {"since": since}
        if repository is not None:
            params["repository"] = repository
        if environment is not None:
            params["environment"] = environment
        sql = _DAILY.format(day=day, failure=_COUNTED_FAILURE, window=window)
        async with self.reader.connect() as conn:
            rows = await conn.execute(text(sql), params)
            return [
                (
                    int(r[0]),
                    int(r[1] or 0),
                    int(r[2] or 0),
                    float(r[3]) if r[3] is not None else None,
                )
                for r in rows
            ]
