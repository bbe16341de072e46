"""When to retry a GitHub answer, and after how long: pure functions over status and headers."""

from __future__ import annotations

import random
from collections.abc import Mapping

# GitHub's advice for secondary rate limits without a Retry-After: wait at least a minute.
SECONDARY_LIMIT_DEFAULT_WAIT = 60.0
MAX_WAIT = 900.0


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.title())
    return value


def is_rate_limited(status: int, headers: Mapping[str, str], message: str = "") -> bool:
    """Whether a 403/429 is a rate limit (primary or secondary), not a permission problem."""
    if status not in (403, 429):
        return False
    if status == 429 or _header(headers, "retry-after") is not None:
        return True
    if _header(headers, "x-ratelimit-remaining") == "0":
        return True
    return "rate limit" in message.lower()


def rate_limit_wait(headers: Mapping[str, str], now: float) -> float:
    """Seconds to wait before retrying a rate-limited request, as GitHub's docs prescribe."""
    retry_after = _header(headers, "retry-after")
    if retry_after is not None:
        try:
            return min(max(float(retry_after), 0.0), MAX_WAIT)
        except ValueError:
            pass
    if _header(headers, "x-ratelimit-remaining") == "0":
        reset = _header(headers, "x-ratelimit-reset")
        if reset is not None:
            try:
                return min(max(float(reset) - now, 0.0) + 1.0, MAX_WAIT)
            except ValueError:
                pass
    return SECONDARY_LIMIT_DEFAULT_WAIT


def backoff(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: attempt 1 waits about `base`, doubling up to `cap`."""
    ceiling = min(cap, base * 2.0 ** max(attempt - 1, 0))
    # Equal jitter: never less than half the step, so retries still spread out.
    jitter: float = (rng or random).uniform(0, ceiling / 2)
    return ceiling / 2 + jitter
