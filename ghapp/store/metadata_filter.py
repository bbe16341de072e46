"""`metadata.KEY=VALUE` filters of the deployment list, as joins on the metadata's primary key.

Each filter joins one copy of `deployment_metadata` on (key, value, deployment_id), its
primary key: an index lookup per filter, all in one statement, so the planner orders the joins
by how selective each pair is. The former shape, one `IN (SELECT ...)` per filter, made
PostgreSQL plan a semi-join per filter (20 filters over a million rows: 2.6 s of planning);
with at most MAX_FILTERS joins planning stays in milliseconds (benchmarks/README.md, metadata).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, func, or_, true

from ghapp.core.scopes import like_pattern
from ghapp.store.schema import deployment_metadata, deployments

# At most this many filters in one list request (the API answers 422 past it).
MAX_FILTERS = 5


def with_metadata(query: Any, pairs: Mapping[str, str] | None) -> Any:
    """The deployments query narrowed to those whose metadata has every KEY=VALUE pair."""
    if not pairs:
        return query
    if len(pairs) > MAX_FILTERS:
        raise ValueError(f"at most {MAX_FILTERS} metadata filters")
    for n, (key, value) in enumerate(pairs.items()):
        pair = deployment_metadata.alias(f"meta{n}")
        query = query.join(
            pair,
            and_(
                pair.c.key == key,
                pair.c.value == value,
                pair.c.deployment_id == deployments.c.id,
            ),
        )
    return query


def within_globs(column: Any, globs: tuple[str, ...]) -> Any:
    """A condition: the column matches one of a token's globs, case-insensitively."""
    if "*" in globs:
        return true()
    return or_(
        *(func.lower(column).like(like_pattern(glob.lower()), escape="\\") for glob in globs)
    )
