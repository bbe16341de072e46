"""Time formats GitHub uses: whole seconds in JSON, 100 ns ticks in job logs."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

from ghapp.core.times import parse_github_time

TICKS_PER_SECOND = 10_000_000
# The jobs API answers step times in the server's zone; the recorded real answers use -07:00.
API_ZONE = timezone(timedelta(hours=-7))


def now_s() -> int:
    """The current time in whole epoch seconds."""
    return int(time.time())


def iso_z(sec: int) -> str:
    """``2026-11-26T13:32:29Z``."""
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_ms_z(sec: int) -> str:
    """``2026-11-26T13:32:29.000Z`` (step times in webhooks)."""
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def iso_offset(sec: int) -> str:
    """``2026-11-26T06:32:29.000-07:00`` (step times in the jobs API)."""
    text = datetime.fromtimestamp(sec, API_ZONE).strftime("%Y-%m-%dT%H:%M:%S.000%z")
    return f"{text[:-2]}:{text[-2:]}"


def log_stamp(ticks: int) -> str:
    """``2026-11-26T13:32:29.7916899Z``: a log line's prefix, 7 fractional digits."""
    sec, frac = divmod(ticks, TICKS_PER_SECOND)
    return f"{datetime.fromtimestamp(sec, UTC).strftime('%Y-%m-%dT%H:%M:%S')}.{frac:07d}Z"


def parse_time(text: str) -> int:
    """Parse an ISO date or date-time (``Z`` or offset; date alone means midnight UTC)."""
    return int(parse_github_time(text.strip()).timestamp())
