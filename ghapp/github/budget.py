"""Each installation's API budget, as GitHub's X-RateLimit-* headers tell it.

Background work (polling, reconciliation) asks before each request and pauses while an
installation is below its reserve; dispatches and verdicts never ask, so they never wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass

# Below this share of its limit an installation's budget is kept for dispatches and verdicts.
RESERVE = 0.10
# A reset GitHub announces further ahead than this is not believed (clock trouble).
MAX_PAUSE = 3600.0


@dataclass
class Window:
    """An installation's latest rate-limit window: its limit, what is left, when it resets."""

    limit: int
    remaining: int
    reset: float


def _int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.title())
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class RateBudget:
    """Windows by installation, fed by every GitHub answer (`observe` is a client observer)."""

    def __init__(self, reserve: float = RESERVE) -> None:
        self.reserve = reserve
        self.windows: dict[int, Window] = {}
        self.pauses = 0

    def observe(
        self, _url: str, _status: int, headers: Mapping[str, str], installation: int | None
    ) -> None:
        """Note an answer's rate-limit headers (App JWT calls have their own budget: skipped)."""
        if installation is None:
            return
        # GraphQL answers count against a budget of their own (resource `graphql`).
        resource = headers.get("x-ratelimit-resource") or headers.get("X-RateLimit-Resource")
        if resource not in (None, "core"):
            return
        limit = _int(headers, "x-ratelimit-limit")
        remaining = _int(headers, "x-ratelimit-remaining")
        reset = _int(headers, "x-ratelimit-reset")
        if limit is None or remaining is None or reset is None or limit <= 0:
            return
        known = self.windows.get(installation)
        # Answers can arrive out of order: within one window, the lowest count is the latest.
        if known is not None and known.reset == reset and known.remaining < remaining:
            return
        self.windows[installation] = Window(limit, remaining, float(reset))

    def paused_until(self, installation: int, now: float | None = None) -> float | None:
        """When background work for this installation may go on, or None if it may now."""
        window = self.windows.get(installation)
        if window is None:
            return None
        now = time.time() if now is None else now
        if window.reset <= now or window.remaining >= window.limit * self.reserve:
            return None
        return min(window.reset, now + MAX_PAUSE)

    async def wait(self, installation: int) -> float:
        """Sleep while the installation is below its reserve; the seconds waited."""
        waited = 0.0
        while (until := self.paused_until(installation)) is not None:
            self.pauses += 1
            pause = max(until - time.time(), 0.0) + 0.5
            await asyncio.sleep(pause)
            waited += pause
        return waited
