"""The `deployed_url` lookup of successful runs no `deployment_status` webhook named, in
batches: one GraphQL request reads a page of deployments of up to ten repositories, and what
it read answers every run dispatched since (a backlog after an outage costs a request per
hundred successes, not two each). A repository GitHub's GraphQL API gives no page for (an
error, GitHub Enterprise Server without it) is looked up the REST way, run by run.

The decisions (what a page answers, what to read next, which deployment is the run's) are in
`ghapp.core.deployed_urls`; this module does the requests and the waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cachetools import TTLCache

from ghapp.core.deploy_record import DeploymentRecord
from ghapp.core.deployed_urls import (
    PageWanted,
    RepositoryWindow,
    UrlLookup,
    choose_url,
    lookup_of,
    next_page,
)
from ghapp.github.client import GitHubClient, GitHubUnavailable, GraphQLRefused
from ghapp.github.graphql import REPOSITORIES_PER_QUERY

log = logging.getLogger("ghapp.deployed_urls")
# How long the first lookup waits for others to share its request (only when a request is
# needed: a lookup a recent read answers waits for nothing).
GATHER_WINDOW = 0.02
# What was read of a repository is kept this long, for the lookups that follow.
WINDOW_SECONDS = 300.0
# After GitHub's GraphQL API answered an error, the REST way is taken for this long.
GRAPHQL_PAUSE = 600.0


Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


@dataclass
class _Waiting:
    lookup: UrlLookup
    future: asyncio.Future[str | None]


class DeployedUrls:
    """Finds successful runs' environment URLs, many per GitHub request."""

    def __init__(
        self, github: GitHubClient, spawn: Spawn, *, gather_window: float = GATHER_WINDOW
    ) -> None:
        self.github = github
        # The owner's spawn (the engine's): closing the owner ends the reads under way.
        self._spawn = spawn
        self.gather_window = gather_window
        self._windows: TTLCache[tuple[int, str], RepositoryWindow] = TTLCache(
            maxsize=256, ttl=WINDOW_SECONDS
        )
        self._waiting: dict[int, dict[str, list[_Waiting]]] = {}
        self._readers: dict[int, asyncio.Task[Any]] = {}
        self._graphql_paused_until = 0.0
        # Requests made, by way: `graphql` (one per batch) and `rest` (one per lookup).
        self.requests = {"graphql": 0, "rest": 0}

    async def find(self, record: DeploymentRecord, installation: int, run_id: int,
                   head_sha: str) -> str | None:
        """The environment URL of the record's successful run (None: it gave none)."""
        lookup = lookup_of(
            repository=record.repository,
            run_id=run_id,
            head_sha=head_sha,
            inputs=record.inputs,
            environment=record.environment,
            dispatched_at=record.dispatched_at,
            run_completed_at=record.run_completed_at,
            run_completed_seen_at=record.run_completed_seen_at,
            now=utcnow(),
        )
        if time.monotonic() < self._graphql_paused_until:
            return await self._rest(lookup, installation)
        window = self._windows.get((installation, lookup.repository.lower()))
        if window is not None and window.answers(lookup):
            return choose_url(window.deployments, lookup)
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        by_repository = self._waiting.setdefault(installation, {})
        by_repository.setdefault(lookup.repository.lower(), []).append(_Waiting(lookup, future))
        reader = self._readers.get(installation)
        if reader is None or reader.done():
            self._readers[installation] = self._spawn(self._read(installation))
        return await future

    async def _rest(self, lookup: UrlLookup, installation: int) -> str | None:
        self.requests["rest"] += 1
        return await self.github.environment_url(
            lookup.repository, installation, lookup.head_sha, lookup.run_id, lookup.environment
        )

    def _fall_back(self, waiting: _Waiting, installation: int) -> None:
        async def rest() -> None:
            try:
                url = await self._rest(waiting.lookup, installation)
            except Exception as exc:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
                return
            if not waiting.future.done():
                waiting.future.set_result(url)

        self._spawn(rest())

    async def _read(self, installation: int) -> None:
        """Read pages for the installation's waiting lookups until none is left."""
        try:
            await self._read_all(installation)
        except Exception as exc:
            # A bug must not leave lookups waiting until REPORT_TIMEOUT: they fail now (the
            # engine tries again) and the next lookup starts a new reader.
            log.exception("reading deployments failed", extra={"installation": installation})
            for items in self._waiting.pop(installation, {}).values():
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(exc)

    async def _read_all(self, installation: int) -> None:
        await asyncio.sleep(self.gather_window)
        waiting = self._waiting.get(installation, {})
        while waiting:
            batch: list[tuple[PageWanted, list[_Waiting]]] = []
            for key in list(waiting):
                items = [w for w in waiting.pop(key) if not w.future.done()]
                window = self._windows.get((installation, key))
                items = self._settle(items, window)
                wanted = next_page(window, [w.lookup for w in items])
                if wanted is None:
                    for item in items:
                        self._fall_back(item, installation)
                elif items:
                    batch.append((wanted, items))
                if len(batch) >= REPOSITORIES_PER_QUERY:
                    break
            if batch:
                try:
                    await self._read_batch(installation, batch)
                except BaseException as exc:
                    for _, items in batch:
                        for item in items:
                            if item.future.done():
                                continue
                            if isinstance(exc, Exception):
                                item.future.set_exception(exc)
                            else:
                                item.future.cancel()
                    raise
        self._waiting.pop(installation, None)

    def _settle(self, items: list[_Waiting], window: RepositoryWindow | None) -> list[_Waiting]:
        """Answer the lookups the window answers; the others still wait."""
        if window is None:
            return items
        left = []
        for item in items:
            if window.answers(item.lookup):
                item.future.set_result(choose_url(window.deployments, item.lookup))
            else:
                left.append(item)
        return left

    async def _read_batch(
        self, installation: int, batch: list[tuple[PageWanted, list[_Waiting]]]
    ) -> None:
        fetched_at = utcnow()
        self.requests["graphql"] += 1
        try:
            pages = await self.github.deployment_pages(installation, [w for w, _ in batch])
        except (GraphQLRefused, GitHubUnavailable) as exc:
            log.warning(
                "GraphQL deployments query failed; looking the URLs up the REST way",
                extra={"error": str(exc), "installation": installation},
            )
            if isinstance(exc, GraphQLRefused) and exc.missing:
                # No GraphQL API there (GitHub Enterprise Server without it): not asked
                # again for a while.
                self._graphql_paused_until = time.monotonic() + GRAPHQL_PAUSE
            pages = [None] * len(batch)
        waiting = self._waiting.setdefault(installation, {})
        for (wanted, items), page in zip(batch, pages, strict=True):
            if page is None:
                for item in items:
                    self._fall_back(item, installation)
                continue
            key = (installation, wanted.repository.lower())
            if wanted.after is None:
                window = RepositoryWindow(fetched_at=fetched_at)
            else:
                found = self._windows.get(key)
                if found is None:
                    # What this page continues was forgotten meanwhile: read from the newest.
                    waiting.setdefault(wanted.repository.lower(), []).extend(items)
                    continue
                window = found
            window.add(page)
            self._windows[key] = window
            left = self._settle([i for i in items if not i.future.done()], window)
            if left:
                waiting.setdefault(wanted.repository.lower(), []).extend(left)
