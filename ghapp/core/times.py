"""Time for the edges of ghapp: the clock, and GitHub's ISO 8601 times read into datetimes.

The state machine never reads the clock (time comes in with its events); the handlers and
workers that build those events call `utcnow` here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def github_time(value: Any) -> datetime | None:
    """An aware datetime from GitHub's ISO text (`Z` or an offset); None if absent or bad."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
