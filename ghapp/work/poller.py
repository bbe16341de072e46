"""Fallback polling, start-up reconciliation, deadlines, and finding runs GitHub did not name.

Webhooks stay the main path: a deployment is polled only after POLL_AFTER seconds of silence,
with conditional requests (a 304 costs no rate limit), at a bounded rate for the process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import gidgethub

from ghapp.config import Settings
from ghapp.core import correlation
from ghapp.core.deploys import DeadlinesChecked, DeploymentRecord, RunObserved, RunSearched
from ghapp.core.progress import JobObserved, job_of
from ghapp.github.client import GitHubClient, GitHubUnavailable
from ghapp.metrics import Metrics
from ghapp.store import SqlStore
from ghapp.work.engine import Engine, utcnow
from ghapp.work.workers import Worker

log = logging.getLogger("ghapp.poller")
# At most this many polls a second for the whole process, whatever the backlog.
MAX_POLLS_PER_SECOND = 5.0
DEADLINE_INTERVAL = 30.0
RECONCILE_BATCH = 50


def _lease_for(batch: int) -> float:
    # Long enough to work through the batch at the polling rate; the spacing of polls is
    # `polled_at`'s business, so the lease can end as soon as the work is done.
    return batch / MAX_POLLS_PER_SECOND + 10.0


def github_time(value: Any) -> datetime | None:
    """An aware datetime from GitHub's ISO text (`Z` or an offset); None if absent or bad."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def run_event(run: Mapping[str, Any], at: datetime) -> RunObserved:
    """A RunObserved from a workflow run object (REST answer or webhook payload)."""
    status = str(run.get("status") or "")
    return RunObserved(
        run_id=int(run["id"]),
        attempt=int(run.get("run_attempt") or 1),
        status=status,
        conclusion=run.get("conclusion"),
        html_url=run.get("html_url"),
        head_sha=run.get("head_sha"),
        at=at,
        started_at=github_time(run.get("run_started_at")),
        updated_at=github_time(run.get("updated_at")) if status == "completed" else None,
    )


class Poller(Worker):
    """One per process; claims work per deployment so several replicas share it."""

    def __init__(
        self, store: SqlStore, github: GitHubClient, engine: Engine, settings: Settings
    ) -> None:
        super().__init__(store, "poll")
        self.github = github
        self.engine = engine
        self.settings = settings
        self.tick = min(max(settings.poll_after / 4, 0.05), 5.0)
        self.polls = 0
        self.not_modified = 0
        self._last_deadlines = 0.0
        self._next_slot = 0.0
        self.metrics = Metrics()

    async def run(self) -> None:
        """Reconcile (alongside), and poll silent deployments until cancelled."""
        # Reconciling thousands of deployments takes a while at a bounded rate: it must not
        # hold up the polling of silent ones or the deadlines.
        self.spawn(self.reconcile())
        while True:
            try:
                await self.poll_silent()
                if time.monotonic() - self._last_deadlines >= min(
                    DEADLINE_INTERVAL, self.settings.poll_after
                ):
                    await self.check_deadlines()
            except Exception:
                log.exception("poller pass failed")
            await asyncio.sleep(self.tick)

    async def reconcile(self) -> int:
        """Check every unfinished deployment once: webhooks may have come while we were down."""
        started = time.time()
        count = 0
        while True:
            # Batch by batch: a deployment polled since the start (here or by another
            # replica) is not claimed again.
            records = await self.store.claim_for_poll(
                owner=self.owner,
                silent_since=started + 1,
                polled_before=started,
                lease_seconds=_lease_for(RECONCILE_BATCH),
                limit=RECONCILE_BATCH,
            )
            if not records:
                return count
            count += len(records)
            await self._check_all(records)

    async def poll_silent(self) -> int:
        """Poll the deployments nothing was heard about (nor polled) for POLL_AFTER seconds."""
        since = time.time() - self.settings.poll_after
        batch = max(int(MAX_POLLS_PER_SECOND * self.tick), 1)
        records = await self.store.claim_for_poll(
            owner=self.owner,
            silent_since=since,
            polled_before=since,
            lease_seconds=_lease_for(batch),
            limit=batch,
        )
        await self._check_all(records)
        return len(records)

    async def _check_all(self, records: list[DeploymentRecord]) -> None:
        try:
            for record in records:
                await self._pace()
                with contextlib.suppress(Exception):
                    await self.check(record)
        finally:
            if records:
                with contextlib.suppress(Exception):
                    await self.store.release_poll_claims([r.id for r in records], self.owner)

    async def _pace(self) -> None:
        # One schedule for reconciliation and polling together: a backlog is spread out at
        # MAX_POLLS_PER_SECOND, never a burst against the API.
        now = time.monotonic()
        slot = max(now, self._next_slot)
        self._next_slot = slot + 1 / MAX_POLLS_PER_SECOND
        await asyncio.sleep(slot - now)

    async def check(self, record: DeploymentRecord) -> None:
        """Ask GitHub about one deployment's run (or look for the run if unknown)."""
        installation = record.installation_id or await self.github.installation_for(
            record.repository
        )
        try:
            if record.run is None:
                await self.find_run(record, installation)
                return
            before = self.github.etag_hits
            run = await self.github.run(record.repository, installation, record.run.id)
            self.polls += 1
            unchanged = self.github.etag_hits > before
            self.not_modified += unchanged
            self.metrics.polls.labels("not_modified" if unchanged else "changed").inc()
            await self.engine.apply(record, run_event(run, utcnow()))
            if run.get("status") != "completed":
                await self.poll_jobs(record, installation, run)
        except (GitHubUnavailable, gidgethub.HTTPException) as exc:
            self.metrics.polls.labels("error").inc()
            log.warning("poll failed", extra={"deployment_id": record.id, "error": str(exc)})

    async def poll_jobs(
        self, record: DeploymentRecord, installation: int, run: Mapping[str, Any]
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
        since = (record.dispatched_at - correlation.CLOCK_SKEW).strftime("%Y-%m-%dT%H:%M:%SZ")
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
        """Give up on runs never found in time and on runs going on too long."""
        self._last_deadlines = time.monotonic()
        now = time.time()
        settings = self.settings
        records = await self.store.past_deadline(
            unbound_before=now - settings.run_lookup_timeout,
            running_before=now - settings.run_timeout,
        )
        event = DeadlinesChecked(
            at=datetime.now(UTC),
            run_lookup_timeout=settings.run_lookup_timeout,
            run_timeout=settings.run_timeout,
            rules=settings.cause_rules(),
        )
        for record in records:
            await self.engine.apply(record, event)
        return len(records)
