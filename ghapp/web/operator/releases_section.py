"""What the operator page shows of releases and statistics: each environment's current release
(with its rollback button), the figures of /api/v1/stats, and the two charts."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ghapp.core import releases
from ghapp.web.operator import charts

if TYPE_CHECKING:
    from ghapp.web.services import Services

CHART_DAYS = 30


async def context(services: Services, repository: str | None) -> dict[str, Any]:
    """The template variables of the releases and statistics sections."""
    store = services.store
    environments = []
    for repo, env in await store.environment_pairs():
        if repository is not None and repo != repository:
            continue
        view = releases.environment_view(env, await store.releases(repo, env))
        owner, name = repo.split("/", 1)
        environments.append({"repository": repo, "owner": owner, "name": name, "view": view})
    since = time.time() - CHART_DAYS * 86400
    stats = await store.stats(since=since, days=CHART_DAYS, repository=repository)
    by_day = {day: (ok, bad, mean) for day, ok, bad, mean in await store.daily(
        since=since, repository=repository
    )}
    first = datetime.fromtimestamp(since, UTC).date()
    days = []
    for offset in range(CHART_DAYS + 1):
        date = first + timedelta(days=offset)
        number = (date - datetime(1970, 1, 1, tzinfo=UTC).date()).days
        ok, bad, mean = by_day.get(number, (0, 0, None))
        days.append(charts.Day(date.isoformat(), ok, bad, mean))
    return {
        "environments": environments,
        "stats": stats,
        "chart_days": CHART_DAYS,
        "per_day_svg": charts.deployments_per_day(days),
        "duration_svg": charts.duration_over_time(days),
    }
