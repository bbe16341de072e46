"""Fallback polling, start-up reconciliation, deadlines, and finding runs GitHub did not name.

Webhooks stay the main path: a deployment is polled only after POLL_AFTER seconds of silence,
with conditional requests (a 304 costs no rate limit), at a bounded rate for the process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import gidgethub

from ghapp.config import Settings
from ghapp.core import correlation
from ghapp.core.deploy_events import run_event
from ghapp.core.deploys import DeadlinesChecked, DeploymentRecord, RunSearched
from ghapp.core.progress import JobObserved, job_of
from ghapp.core.times import utcnow
from ghapp.github.budget import RateBudget
from ghapp.github.client import GitHubClient, GitHubUnavailable
from ghapp.metrics import Metrics
from ghapp.store import SqlStore
from ghapp.store.base import StoreUnavailable
from ghapp.work import orphans
from ghapp.work.engine import REPORT_GRACE, Engine
from ghapp.work.workers import Backoff, Worker

log = logging.getLogger("ghapp.poller")
# At most this many background requests a second for the whole process, whatever the backlog
# (each installation's own budget is watched too, see RateBudget).
MAX_POLLS_PER_SECOND = 10.0
DEADLINE_INTERVAL = 30.0
# Repositories claimed at once: each gets one listing for all its due deployments.
RECONCILE_REPOSITORIES = 10
# Short, renewed while the work goes on: a replica that dies frees its polls within this.
POLL_LEASE = 6.0
# GitHub's most results for a filtered listing; a window that reaches it is narrowed.
LISTING_CAP = 1000
PAGE_SIZE = 100
# What one listing settled is written this many at a time (the database overlaps commits).
APPLY_CONCURRENCY = 16
# Repositories polled side by side (their requests still share the process's pace).
PARALLEL_REPOSITORIES = 4
# How often `recorded` deployments left by a stopped process are looked for.
ORPHAN_INTERVAL = 5.0


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Poller(Worker):
    """One per process; claims work by repository so several replicas share it."""

    def __init__(
        self,
        store: SqlStore,
        github: GitHubClient,
        engine: Engine,
        settings: Settings,
        budget: RateBudget | None = None,
    ) -> None:
        super().__init__(store, "poll")
        self.github = github
        self.engine = engine
        self.settings = settings
        self.budget = budget or RateBudget()
        self.tick = min(max(settings.poll_after / 4, 0.05), 2.0)
        self.polls = 0
        self.not_modified = 0
        self.requests = 0
        self._last_deadlines = 0.0
        self._last_orphans = 0.0
        self._next_slot = 0.0
        self.metrics = Metrics()
        # Called for each deployment a silent-poll found still running (not for what
        # reconciliation finds completed): where job progress is read.
        self.follow_progress: Callable[
            [DeploymentRecord, Mapping[str, Any], int], Awaitable[None]
        ] = self.poll_jobs
        # Called for a deployment's run seen `waiting` (the gate decides it; see app.py).
        self.on_waiting: Callable[
            [DeploymentRecord, Mapping[str, Any], int], Awaitable[None]
        ] | None = None

    async def run(self) -> None:
        """Reconcile (alongside), and poll silent deployments until cancelled; while the
        database is away, back off and resume by itself."""
        # Reconciling thousands of deployments takes a while at a bounded rate: it must not
        # hold up the polling of silent ones or the deadlines.
        self.spawn(self._reconcile_until_done())
        backoff = Backoff(first=self.tick)
        while True:
            wait = self.tick
            try:
                await self.poll_silent()
                if time.monotonic() - self._last_orphans >= ORPHAN_INTERVAL:
                    await self.adopt_orphans()
                if time.monotonic() - self._last_deadlines >= min(
                    DEADLINE_INTERVAL, self.settings.poll_after
                ):
                    await self.check_deadlines()
                if backoff.ok():
                    log.info("poller resumed: the database answers again")
            except Exception as exc:
                wait = backoff.failed()
                if not StoreUnavailable.covers(exc):
                    log.exception("poller pass failed")
                elif backoff.failures == 1:
                    log.warning("poller paused: the database is unavailable (%s)", exc)
            await asyncio.sleep(wait)

    async def _reconcile_until_done(self) -> None:
        backoff = Backoff()
        while True:
            try:
                await self.reconcile()
                return
            except Exception as exc:
                if not StoreUnavailable.covers(exc):
                    log.exception("reconciliation failed")
                    return
                await asyncio.sleep(backoff.failed())

    async def adopt_orphans(self) -> int:
        """Dispatches a stopped process left `recorded`: shown, their runs looked for."""
        self._last_orphans = time.monotonic()
        return await orphans.adopt(
            self.store, self.engine, lambda record: self.spawn(self.check_quietly(record))
        )

    async def reconcile(self) -> int:
        """Check every unfinished deployment once: webhooks may have come while we were down."""
        started = time.time()
        count = 0
        while True:
            # A few repositories at a time: a deployment polled since the start (here or by
            # another replica) is not claimed again.
            records = await self.store.claim_for_poll(
                owner=self.owner,
                silent_since=started + 1,
                polled_before=started,
                lease_seconds=POLL_LEASE,
                repositories=RECONCILE_REPOSITORIES,
            )
            if not records:
                return count
            count += len(records)
            await self._check_all(records, progress=False)

    async def poll_silent(self) -> int:
        """Poll the deployments nothing was heard about (nor polled) for POLL_AFTER seconds."""
        since = time.time() - self.settings.poll_after
        records = await self.store.claim_for_poll(
            owner=self.owner,
            silent_since=since,
            polled_before=since,
            lease_seconds=POLL_LEASE,
            repositories=RECONCILE_REPOSITORIES,
        )
        await self._check_all(records, progress=True)
        return len(records)

    async def _check_all(self, records: list[DeploymentRecord], *, progress: bool) -> None:
        ids = [r.id for r in records]
        heartbeat = asyncio.create_task(self._heartbeat(ids))
        try:
            by_repository: dict[str, list[DeploymentRecord]] = {}
            for record in records:
                by_repository.setdefault(record.repository, []).append(record)
            slots = asyncio.Semaphore(PARALLEL_REPOSITORIES)

            async def one(group: list[DeploymentRecord]) -> None:
                installation = await self._installation(group[0])
                # A paused installation waits outside the slots: others go on meanwhile.
                await self.budget.wait(installation)
                async with slots:
                    await self.check_repository(group, installation, progress=progress)

            results = await asyncio.gather(
                *(one(group) for group in by_repository.values()), return_exceptions=True
            )
            for result in results:
                if isinstance(result, Exception) and not isinstance(
                    result, (GitHubUnavailable, gidgethub.HTTPException)
                ):
                    log.error("polling a repository failed", exc_info=result)
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            if records:
                with contextlib.suppress(Exception):
                    await self.store.release_poll_claims(ids, self.owner)

    async def _heartbeat(self, ids: list[str]) -> None:
        while True:
            await asyncio.sleep(POLL_LEASE / 3)
            with contextlib.suppress(Exception):
                await self.store.renew_poll_claims(ids, self.owner, POLL_LEASE)

    async def _installation(self, record: DeploymentRecord) -> int:
        return record.installation_id or await self.github.installation_for(record.repository)

    async def _pace(self, installation: int) -> None:
        # One schedule for reconciliation and polling together: a backlog is spread out at
        # MAX_POLLS_PER_SECOND, never a burst against the API.
        await self.budget.wait(installation)
        now = time.monotonic()
        slot = max(now, self._next_slot)
        self._next_slot = slot + 1 / MAX_POLLS_PER_SECOND
        await asyncio.sleep(slot - now)
        self.requests += 1

    async def check_repository(
        self, records: list[DeploymentRecord], installation: int, *, progress: bool = False
    ) -> None:
        """Settle a repository's deployments from one listing of its dispatched runs; ask
        about single runs only for those the listing does not show."""
        bound = [r for r in records if r.run is not None]
        for record in records:
            if record.run is None:
                await self._guarded(record, self.find_run(record, installation))
        if not bound:
            return
        oldest = min(r.dispatched_at for r in bound) - correlation.CLOCK_SKEW
        wanted = {r.run.id for r in bound if r.run is not None}
        try:
            listed = await self.list_runs(records[0].repository, installation, oldest, wanted)
        except (GitHubUnavailable, gidgethub.HTTPException) as exc:
            self.metrics.polls.labels("error").inc()
            log.warning(
                "listing runs failed",
                extra={"repository": records[0].repository, "error": str(exc)},
            )
            listed = {}
        slots = asyncio.Semaphore(APPLY_CONCURRENCY)

        async def settle(record: DeploymentRecord) -> None:
            assert record.run is not None
            run = listed.get(record.run.id)
            async with slots:
                if run is None:
                    await self._guarded(record, self.check(record, installation))
                    return
                self.polls += 1
                self.metrics.polls.labels("listed").inc()
                await self._guarded(record, self._observe(record, run, installation, progress))

        await asyncio.gather(*(settle(record) for record in bound))

    async def list_runs(
        self, repository: str, installation: int, oldest: datetime, wanted: set[int]
    ) -> dict[int, dict[str, Any]]:
        """A repository's dispatched runs created since a time, by id; stops once every
        wanted run was seen, and narrows the window when GitHub's 1,000 cap cuts it off."""
        runs: dict[int, dict[str, Any]] = {}
        since = _stamp(oldest)
        upper: str | None = None
        while True:
            created = f">={since}" if upper is None else f"{since}..{upper}"
            window: list[dict[str, Any]] = []
            total = 0
            page = 1
            while True:
                await self._pace(installation)
                before = self.github.etag_hits
                data = await self.github.dispatch_runs_page(
                    repository, installation, created, page
                )
                self.not_modified += self.github.etag_hits > before
                total = int(data.get("total_count") or 0)
                items = list(data.get("workflow_runs") or [])
                window.extend(items)
                for run in items:
                    runs[int(run["id"])] = run
                if wanted <= runs.keys():
                    return runs
                if len(items) < PAGE_SIZE or len(window) >= min(total, LISTING_CAP):
                    break
                page += 1
            if total <= len(window) or not window:
                return runs
            # Newest first: what the cap cut off is older than the oldest run returned.
            oldest_seen = min(str(run.get("created_at") or "") for run in window)
            if not oldest_seen or oldest_seen == upper:
                return runs  # a thousand runs within one second: single requests settle it
            upper = oldest_seen

    async def _observe(
        self,
        record: DeploymentRecord,
        run: Mapping[str, Any],
        installation: int,
        progress: bool,
    ) -> None:
        transition = await self.engine.apply(record, run_event(run, utcnow()))
        if run.get("status") == "waiting" and self.on_waiting is not None:
            await self.on_waiting(record, run, installation)
        if progress and run.get("status") != "completed":
            latest = transition.record if transition is not None else record
            await self.follow_progress(latest, run, installation)

    async def _guarded(self, record: DeploymentRecord, work: Awaitable[Any]) -> None:
        try:
            await work
        except (GitHubUnavailable, gidgethub.HTTPException) as exc:
            self.metrics.polls.labels("error").inc()
            log.warning("poll failed", extra={"deployment_id": record.id, "error": str(exc)})
        except Exception:
            log.exception("poll failed", extra={"deployment_id": record.id})

    async def check_quietly(self, record: DeploymentRecord) -> None:
        """`check`, its failures logged (for a background task)."""
        await self._guarded(record, self.check(record))

    async def check(self, record: DeploymentRecord, installation: int | None = None) -> None:
        """Ask GitHub about one deployment's run (or look for the run if unknown)."""
        installation = installation or await self._installation(record)
        if record.run is None:
            await self.find_run(record, installation)
            return
        await self._pace(installation)
        before = self.github.etag_hits
        run = await self.github.run(record.repository, installation, record.run.id)
        self.polls += 1
        unchanged = self.github.etag_hits > before
        self.not_modified += unchanged
        self.metrics.polls.labels("not_modified" if unchanged else "changed").inc()
        await self.engine.apply(record, run_event(run, utcnow()))
        if run.get("status") == "waiting" and self.on_waiting is not None:
            await self.on_waiting(record, run, installation)

    async def poll_jobs(
        self, record: DeploymentRecord, run: Mapping[str, Any], installation: int
    ) -> None:
        """Read the jobs of a polled run still going (conditional request), for `progress`."""
        run_id = int(run["id"])
        listed = await self.github.run_jobs(record.repository, installation, run_id)
        self.polls += 1
        jobs = tuple(job for job in map(job_of, listed) if job is not None)
        attempt = int(run.get("run_attempt") or 1)
        await self.engine.apply(
            record, JobObserved(run_id=run_id, attempt=attempt, jobs=jobs, at=utcnow())
        )

    async def find_run(self, record: DeploymentRecord, installation: int) -> bool:
        """Search the dispatch's run by listing runs; bind it when the rules allow."""
        since = _stamp(record.dispatched_at - correlation.CLOCK_SKEW)
        await self._pace(installation)
        runs = await self.github.dispatch_runs(
            record.repository, installation, record.workflow, record.ref, since
        )
        self.polls += 1
        return await self.consider(record, runs)

    async def consider(self, record: DeploymentRecord, runs: Sequence[Mapping[str, Any]]) -> bool:
        """Bind a run from these to the deployment if it is surely its run."""
        free = [run for run in runs if await self.store.by_run(int(run["id"])) is None]
        rivals = [
            other
            for other in await self.store.unbound(record.repository)
            if other.id != record.id
            and other.workflow == record.workflow
            and other.ref == record.ref
            and other.correlation_id is None
        ]
        wanted = correlation.Wanted(
            deployment_id=record.id,
            workflow=record.workflow,
            ref=record.ref,
            dispatched_at=record.dispatched_at,
            correlation_id=record.correlation_id,
        )
        found = correlation.match(wanted, free, rivals=len(rivals), now=utcnow())
        if found.run is None:
            await self.engine.apply(record, RunSearched(ambiguity=found.ambiguity, at=utcnow()))
            return False
        log.info(
            "run identified",
            extra={"deployment_id": record.id, "run_id": found.run["id"]},
        )
        await self.engine.apply(record, run_event(found.run, utcnow()))
        return True

    async def on_unknown_run(self, run: Mapping[str, Any], repository: str) -> bool:
        """A webhook about a dispatched run no deployment watches: maybe a GHES dispatch's.

        Only a run whose title carries a deployment id can be one (the template's run-name
        puts it there); every other run costs no database query. Dispatches without the
        correlation input are searched for by listing, see `search_soon`.
        """
        title = str(run.get("display_title") or "")
        if not correlation.may_name_deployment(title):
            return False
        for record in await self.store.unbound(repository):
            if record.correlation_id and record.correlation_id in title:
                return await self.consider(record, [run])
        return False

    def search_soon(self, repository: str) -> None:
        """Look for the runs of uncorrelated dispatches once racing runs had time to appear."""
        self.spawn(self._search_later(repository))

    async def _search_later(self, repository: str) -> None:
        await asyncio.sleep(correlation.SETTLE.total_seconds())
        for record in await self.store.unbound(repository):
            if record.correlation_id is None:
                with contextlib.suppress(Exception):
                    await self.check(record)

    async def check_deadlines(self) -> int:
        """Give up on runs never found in time, runs going on too long, and reports past
        REPORT_TIMEOUT: no phase of a deployment waits without end."""
        self._last_deadlines = time.monotonic()
        now = time.time()
        settings = self.settings
        records = await self.store.past_deadline(
            unbound_before=now - settings.run_lookup_timeout,
            running_before=now - settings.run_timeout,
            # The gatherer gives its own verdict at REPORT_TIMEOUT; this catches the rest
            # (a replica that died gathering, a sweep that never came) a little later.
            concluding_before=now - settings.report_timeout - REPORT_GRACE,
        )
        event = DeadlinesChecked(
            at=datetime.now(UTC),
            run_lookup_timeout=settings.run_lookup_timeout,
            run_timeout=settings.run_timeout,
            report_timeout=settings.report_timeout,
            rules=settings.cause_rules(),
        )
        for record in records:
            # One deployment that cannot be written must not hold up the others' deadlines.
            try:
                await self.engine.apply(record, event)
            except Exception:
                log.exception("deadline not applied", extra={"deployment_id": record.id})
        return len(records)

