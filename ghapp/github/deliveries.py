"""GitHub's hook-deliveries API (App JWT), and which deliveries to send again.

A webhook GitHub could not deliver is never retried by GitHub itself; its docs suggest a script
that lists the App's deliveries, groups the attempts by `guid` and redelivers each guid that has
no successful attempt. `failed_guids` is that rule as a pure function; `redeliver_failed` applies
it; `AutoRedeliverer` runs it in the server on an interval (`AUTO_REDELIVER=1`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import gidgethub
from cachetools import TTLCache

from ghapp.core.times import parse_github_time
from ghapp.github.client import GitHubClient

log = logging.getLogger("ghapp.deliveries")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Listing walks newest first; a little slack past `since` covers attempts logged out of order.
_LISTING_SLACK = timedelta(minutes=2)


def parse_since(text: str) -> timedelta:
    """Parse a duration such as `30m`, `6h` or `2d` (also `s` and `w`)."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 30m, 6h or 2d")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def is_success(item: Mapping[str, Any]) -> bool:
    """Whether a delivery attempt got a 2xx answer from the App."""
    code = item.get("status_code")
    return isinstance(code, int) and 200 <= code < 300


@dataclass(frozen=True)
class FailedDelivery:
    """A guid none of whose attempts in the window succeeded."""

    guid: str
    event: str
    action: str | None
    last_status: str
    last_status_code: int
    delivered_at: datetime
    attempts: int
    # The newest attempt: redelivering it sends the same payload under the same guid.
    redeliver_id: int

    def as_json(self) -> dict[str, Any]:
        """The JSON form `--json` prints."""
        return {
            "guid": self.guid,
            "event": self.event,
            "action": self.action,
            "last_status": self.last_status,
            "last_status_code": self.last_status_code,
            "delivered_at": self.delivered_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "attempts": self.attempts,
            "redeliver_id": self.redeliver_id,
        }


def failed_guids(deliveries: Iterable[Mapping[str, Any]], since: datetime) -> list[FailedDelivery]:
    """Group attempts since `since` by guid; keep guids with no 2xx attempt, newest first."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for item in deliveries:
        if parse_github_time(str(item["delivered_at"])) >= since:
            groups.setdefault(str(item["guid"]), []).append(item)
    failed = []
    for guid, attempts in groups.items():
        if any(is_success(a) for a in attempts):
            continue
        latest = max(
            attempts, key=lambda a: (parse_github_time(str(a["delivered_at"])), int(a["id"]))
        )
        failed.append(
            FailedDelivery(
                guid=guid,
                event=str(latest.get("event") or ""),
                action=latest.get("action"),
                last_status=str(latest.get("status") or ""),
                last_status_code=int(latest.get("status_code") or 0),
                delivered_at=parse_github_time(str(latest["delivered_at"])),
                attempts=len(attempts),
                redeliver_id=int(latest["id"]),
            )
        )
    failed.sort(key=lambda f: (f.delivered_at, f.redeliver_id), reverse=True)
    return failed


class HookDeliveries:
    """The App's `/app/hook/deliveries` endpoints, authenticated with the App JWT."""

    def __init__(self, github: GitHubClient) -> None:
        self.github = github

    async def list(self, *, since: datetime | None = None) -> list[dict[str, Any]]:
        """Every attempt (newest first), following the cursor; stops once past `since`."""
        stop_before = since - _LISTING_SLACK if since is not None else None

        async def collect(gh: Any) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            pages = gh.getiter("/app/hook/deliveries?per_page=100", iterable_key=None)
            async with contextlib.aclosing(pages):
                async for item in pages:
                    if (
                        stop_before is not None
                        and parse_github_time(item["delivered_at"]) < stop_before
                    ):
                        break
                    found.append(dict(item))
            return found

        items = await self.github.as_app(collect)
        if since is None:
            return items
        return [i for i in items if parse_github_time(i["delivered_at"]) >= since]

    async def get(self, delivery_id: int) -> dict[str, Any]:
        """One attempt with the request GitHub sent and the response it recorded."""
        data = await self.github.as_app(
            lambda gh: gh.getitem(f"/app/hook/deliveries/{int(delivery_id)}")
        )
        return dict(data)

    async def redeliver(self, delivery_id: int) -> None:
        """Ask GitHub to send an attempt again (it answers 202 and sends it shortly)."""
        await self.github.as_app(
            lambda gh: gh.post(f"/app/hook/deliveries/{int(delivery_id)}/attempts", data={})
        )


@dataclass
class RedeliveryReport:
    """What a redeliver-failed pass found and did."""

    since: datetime
    dry_run: bool
    failed: list[FailedDelivery]
    redelivered: list[FailedDelivery] = field(default_factory=list)
    errors: list[tuple[FailedDelivery, str]] = field(default_factory=list)
    skipped: list[FailedDelivery] = field(default_factory=list)
    held: list[FailedDelivery] = field(default_factory=list)

    def summary(self) -> str:
        """One line for people and cron mails."""
        verb = "would redeliver" if self.dry_run else "redelivered"
        pending = len(self.failed) - len(self.skipped) - len(self.held)
        done = pending if self.dry_run else len(self.redelivered)
        line = (
            f"{len(self.failed)} failed guid(s) since "
            f"{self.since.strftime('%Y-%m-%dT%H:%M:%SZ')}; {verb} {done}"
        )
        if self.errors:
            line += f", {len(self.errors)} error(s)"
        if self.skipped:
            line += f", {len(self.skipped)} left for the next run (limit)"
        if self.held:
            line += f", {len(self.held)} held back"
        return line


async def redeliver_failed(
    hooks: HookDeliveries,
    since: datetime,
    *,
    dry_run: bool = False,
    limit: int | None = None,
    hold: Callable[[FailedDelivery], bool] | None = None,
    settled_before: datetime | None = None,
) -> RedeliveryReport:
    """Redeliver the newest attempt of each failed guid once (none with `dry_run`).

    Guids for which `hold` is true are left alone; with `limit`, at most that many requests are
    made; with `settled_before`, guids attempted after it are left for a later run.
    """
    failed = failed_guids(await hooks.list(since=since), since)
    if settled_before is not None:
        failed = [f for f in failed if f.delivered_at <= settled_before]
    report = RedeliveryReport(since=since, dry_run=dry_run, failed=failed)
    chosen = 0
    for item in failed:
        if hold is not None and hold(item):
            report.held.append(item)
            continue
        if limit is not None and chosen >= limit:
            report.skipped.append(item)
            continue
        chosen += 1
        if dry_run:
            continue
        try:
            await hooks.redeliver(item.redeliver_id)
        except gidgethub.BadRequest as exc:
            # One refused redelivery (an attempt GitHub no longer keeps) must not stop the rest.
            report.errors.append((item, f"GitHub answered {int(exc.status_code)}: {exc}"))
            continue
        report.redelivered.append(item)
    return report


class AutoRedeliverer:
    """The server's periodic redeliver-failed (`AUTO_REDELIVER=1`)."""

    # Seconds between passes; the first pass waits `start_delay` and looks `first_window` back.
    interval = 300.0
    start_delay = 30.0
    first_window = 6 * 3600.0
    # Each later pass starts where the previous one started, minus this overlap.
    overlap = 120.0
    max_per_pass = 50
    # Failures younger than this wait for the next pass (the overlap brings them back), so a
    # delivery GitHub is still attempting is not redelivered beside it.
    settle = 30.0
    # A delivery the server keeps refusing is given up on after this many redeliveries.
    max_per_guid = 3

    def __init__(self, github: GitHubClient) -> None:
        self.hooks = HookDeliveries(github)
        self.last_pass: float | None = None
        self.passes = 0
        # Per guid: redeliveries made, and the attempt last redelivered.
        self._tries: TTLCache[str, int] = TTLCache(maxsize=100_000, ttl=7 * 86400)
        self._sent: TTLCache[str, int] = TTLCache(maxsize=100_000, ttl=7 * 86400)

    def _hold(self, item: FailedDelivery) -> bool:
        # Given up on; or redelivered already and GitHub has not made that attempt yet (the
        # newest attempt is still the one redelivered), so sending it again would double it.
        exhausted = self._tries.get(item.guid, 0) >= self.max_per_guid
        return exhausted or self._sent.get(item.guid) == item.redeliver_id

    def window_start(self, now: float) -> datetime:
        """Since the previous pass (with overlap), or `first_window` back on the first one."""
        start = now - self.first_window if self.last_pass is None else self.last_pass - self.overlap
        return datetime.fromtimestamp(start, UTC)

    async def run_pass(self) -> RedeliveryReport:
        """One pass: redeliver the failed guids of the window, at most `max_per_pass`."""
        now = time.time()
        report = await redeliver_failed(
            self.hooks,
            self.window_start(now),
            limit=self.max_per_pass,
            hold=self._hold,
            settled_before=datetime.fromtimestamp(now - self.settle, UTC),
        )
        self.last_pass = now
        self.passes += 1
        for item in report.redelivered:
            self._tries[item.guid] = self._tries.get(item.guid, 0) + 1
            self._sent[item.guid] = item.redeliver_id
        if report.failed:
            log.info("auto-redeliver: %s", report.summary())
        return report

    async def run(self) -> None:
        """Pass after pass until cancelled; a failing pass is logged and retried next time."""
        await asyncio.sleep(self.start_delay)
        while True:
            try:
                await self.run_pass()
            except Exception as exc:
                log.warning("auto-redeliver pass failed: %s", exc)
            await asyncio.sleep(self.interval)
