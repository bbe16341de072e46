"""Time for the edges of ghapp: the clock, and GitHub's ISO 8601 times read into datetimes.

The state machine never reads the clock (time comes in with its events); the handlers and
workers that build those events call `utcnow` here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def parse_github_time(text: str) -> datetime:
    """An aware datetime from GitHub's ISO 8601 text (`Z` or an offset; none means UTC);
    ValueError when it is not one."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def github_time(value: Any) -> datetime | None:
    """As `parse_github_time`, for a field that may be absent or bad: None then."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_github_time(value)
    except ValueError:
        return None
