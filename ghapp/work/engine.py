"""Drives deployments: applies events durably and runs the actions the state machine asks for."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import weakref
from collections.abc import Awaitable, Callable

import gidgethub
from cachetools import LRUCache
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from ghapp.core import deploys
from ghapp.core.causes import CauseRules
from ghapp.core.deploys import (
    Action,
    CancelRun,
    DeadlinesChecked,
    DeployedUrlFound,
    DeploymentRecord,
    DropRecord,
    Event,
    FindDeployedUrl,
    GatherFailure,
    RollbackDecided,
    SendCallback,
    SendStarted,
    SendWaiting,
    StartRollback,
    Transition,
)
from ghapp.core.times import utcnow
from ghapp.github.client import GitHubClient, GitHubUnavailable
from ghapp.logsetup import bind
from ghapp.store import SqlStore
from ghapp.work.deployed_urls import DeployedUrls
from ghapp.work.failures import FailureReporter
from ghapp.work.workers import Worker

log = logging.getLogger("ghapp.engine")
SAVE_RETRIES = 8
# Deployments whose last saved record is kept, to apply the next event to without a read.
LATEST_KEPT = 1000
# Renewed while the work goes on, so a replica that dies frees its work within this time.
GATHER_LEASE = 6.0
# Verdicts gathered side by side; a backlog (after an outage) waits its turn with its lease kept.
GATHER_CONCURRENCY = 32
# Past REPORT_TIMEOUT, how long what was gathered may take to be written before the state
# machine's deadline (with less in the verdict) is applied instead.
REPORT_GRACE = 2.0
# After an unexpected failure to gather a verdict, the pause before trying again (seconds,
# times the retry base).
RETRY_PAUSE = 10.0
# Tries at cancelling a superseded deployment's run while GitHub is unavailable.
CANCEL_TRIES = 5
# The slow actions: run under the deployment's gather lease.
_GATHERED = (GatherFailure, FindDeployedUrl, StartRollback)


class Engine(Worker):
    """Applies events to stored deployments and runs the resulting actions in the background."""

    def __init__(
        self,
        store: SqlStore,
        github: GitHubClient,
        *,
        on_verdict: Callable[[DeploymentRecord], None] = lambda _r: None,
        action_retry_base: float = 1.0,
        report_timeout: float = 300.0,
        rules: CauseRules | None = None,
    ) -> None:
        super().__init__(store, "engine")
        self.github = github
        self.on_verdict = on_verdict
        self.action_retry_base = action_retry_base
        self.report_timeout = report_timeout
        self.rules = rules
        self.reporter = FailureReporter(
            github, retry_base=action_retry_base, report_timeout=report_timeout, rules=rules
        )
        # Dispatches an automatic rollback (the app sets it: starting a deployment is the web
        # layer's); without it a held verdict is reported with no rollback.
        self.start_rollback: Callable[[DeploymentRecord], Awaitable[RollbackDecided]] | None = (
            None
        )
        self._in_flight: set[str] = set()
        # Deliveries about one deployment arrive together (a run's webhooks, GitHub's retries):
        # one applies at a time in this process, starting from the last record this process
        # saved, so the others find nothing left to change instead of losing a race to it.
        self._applying: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._saved: LRUCache[str, DeploymentRecord] = LRUCache(maxsize=LATEST_KEPT)
        # Signs of life not written yet (a newer `last_heard_at` only), by deployment id.
        self._alive: dict[str, DeploymentRecord] = {}
        # Gather leases held here (renewed together), and how many gathers run at once.
        self._held: set[str] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._gather_slots = asyncio.Semaphore(GATHER_CONCURRENCY)
        # URLs of successes no webhook named, many per request (GraphQL; REST as fallback).
        self.deployed_urls = DeployedUrls(github, self.spawn)

    def _lock(self, deployment_id: str) -> asyncio.Lock:
        lock = self._applying.get(deployment_id)
        if lock is None:
            lock = self._applying[deployment_id] = asyncio.Lock()
        return lock

    async def apply(
        self, record: DeploymentRecord, event: Event, *, delivery_id: str | None = None
    ) -> Transition | None:
        """Apply an event and persist the result; None if the delivery was handled before."""
        async with self._lock(record.id):
            saved = self._saved.get(record.id)
            if saved is not None and saved.version > record.version:
                record = saved
            alive = self._alive.get(record.id)
            if alive is not None and alive.version == record.version:
                heard = max(record.last_heard_at, alive.last_heard_at)
                record = record.model_copy(update={"last_heard_at": heard})
            transition = await self._apply(record, event, delivery_id)
            if transition is not None and transition.changed and not transition.liveness_only:
                if transition.record.phase == "completed":
                    # Nothing more is coming for it (a late delivery reads the store): kept,
                    # a thousand finished records would be ~10 MiB that only grows.
                    self._saved.pop(record.id, None)
                else:
                    self._saved[record.id] = transition.record
            return transition

    def _write_alive_later(self, record: DeploymentRecord) -> None:
        # A sign of life only moves the polling clock: the answer to GitHub need not wait for
        # the single SQLite writer. Until the write is done, deliveries about the deployment
        # start from this record (see `apply`), so a crowd of them makes one write.
        if record.id not in self._alive:
            self._alive[record.id] = record
            self.spawn(self._write_alive(record))

    async def _write_alive(self, record: DeploymentRecord) -> None:
        # Not under the deployment's lock: the deliveries it would hold up have nothing to
        # wait for. If a real change is written first, this write loses the version check.
        try:
            if await self.store.save(record):
                self._saved[record.id] = record
        except Exception:
            # The poller may then poll this run once more than needed; nothing else is lost.
            log.warning(
                "could not record a sign of life",
                exc_info=True,
                extra={"deployment_id": record.id},
            )
        finally:
            if self._alive.get(record.id) is record:
                del self._alive[record.id]

    async def _apply(
        self, record: DeploymentRecord, event: Event, delivery_id: str | None
    ) -> Transition | None:
        for _ in range(SAVE_RETRIES):
            transition = deploys.apply(record, event)
            if any(isinstance(a, DropRecord) for a in transition.actions):
                # Its dispatch never left: the record goes (unless it moved on meanwhile).
                await self.store.drop_recorded(record.id)
                return transition
            if not transition.changed:
                return transition
            if transition.liveness_only:
                self._write_alive_later(transition.record)
                return transition
            sends = any(isinstance(a, SendCallback) for a in transition.actions)
            starts = any(isinstance(a, SendStarted) for a in transition.actions)
            waits = any(isinstance(a, SendWaiting) for a in transition.actions)
            # Slow work to start: its lease is taken in the same write (here, not elsewhere).
            gathers = any(isinstance(a, _GATHERED) for a in transition.actions)
            lease = gathers and transition.record.id not in self._in_flight
            saved = await self.store.save(
                transition.record,
                delivery_id=delivery_id,
                enqueue_callback=sends,
                enqueue_started=starts,
                enqueue_waiting=waits,
                gather_owner=self.owner if lease else None,
                gather_seconds=GATHER_LEASE,
            )
            if saved:
                if sends or starts or waits:
                    # Wakes the callback sender (and counts a verdict, when there is one).
                    self.on_verdict(transition.record)
                self.schedule(transition.record, transition.actions, leased=lease)
                return transition
            if delivery_id is not None and await self.store.delivery_seen(delivery_id):
                return None
            fresh = await self.store.get(record.id)
            if fresh is None:
                return None
            record = fresh
        raise RuntimeError(f"deployment {record.id}: too many concurrent updates")

    def schedule(
        self, record: DeploymentRecord, actions: list[Action], *, leased: bool = False
    ) -> None:
        """Start the slow actions (reading jobs and logs) as background tasks; `leased`: the
        write that asked for them took their lease already."""
        for action in actions:
            if isinstance(action, CancelRun):
                self.spawn(self._cancel_run(record, action.run_id))
                continue
            if not isinstance(action, _GATHERED) or record.id in self._in_flight:
                continue
            self._in_flight.add(record.id)
            self.spawn(self._conclude(record.id, action, leased))

    async def _cancel_run(self, record: DeploymentRecord, run_id: int) -> None:
        """Cancel a superseded deployment's run; its verdict follows from the run's end."""
        for attempt in range(1, CANCEL_TRIES + 1):
            try:
                installation = record.installation_id or await self.github.installation_for(
                    record.repository
                )
                await self.github.cancel_run(record.repository, installation, run_id)
                log.info("superseded run cancelled",
                         extra={"deployment_id": record.id, "run_id": run_id})
                return
            except gidgethub.BadRequest as exc:
                # 409: the run ended meanwhile; its own verdict stands.
                log.info("superseded run not cancelled",
                         extra={"deployment_id": record.id, "error": str(exc)})
                return
            except GitHubUnavailable as exc:
                log.warning("cancelling a superseded run failed",
                            extra={"deployment_id": record.id, "error": str(exc)})
                await asyncio.sleep(self.action_retry_base * 2**attempt)

    async def _conclude(self, deployment_id: str, action: Action, leased: bool) -> None:
        with bind(deployment_id=deployment_id):
            await self._conclude_bound(deployment_id, action, leased)

    async def _conclude_bound(self, deployment_id: str, action: Action, leased: bool) -> None:
        # Another replica may be gathering this verdict already: the lease decides.
        if not leased and not await self.store.claim(
            deployment_id, owner=self.owner, lease_seconds=GATHER_LEASE
        ):
            self._in_flight.discard(deployment_id)
            return
        self._held.add(deployment_id)
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = self.spawn(self._renew_held())
        try:
            async with self._gather_slots:
                if not await self._conclude_by_deadline(deployment_id, action):
                    return
        finally:
            self._held.discard(deployment_id)
            self._in_flight.discard(deployment_id)
        await self._report_deadline(deployment_id)

    async def _conclude_by_deadline(self, deployment_id: str, action: Action) -> bool:
        """Gather and apply the verdict; True when REPORT_TIMEOUT came first."""
        loop = asyncio.get_running_loop()
        while True:
            record = await self.store.get(deployment_id)
            if record is None or record.phase != "concluding":
                return False
            # REPORT_TIMEOUT counts from when the run was seen completed, across restarts and
            # replicas: past it, the verdict goes out with what is known.
            deadline = loop.time() + (
                deploys.report_deadline(record, self.report_timeout) - utcnow()
            ).total_seconds()
            if deadline <= loop.time():
                return True
            try:
                async with asyncio.timeout_at(deadline + REPORT_GRACE):
                    await self._gather_and_apply(record, action, deadline)
                return False
            except TimeoutError:
                log.warning(
                    "verdict not gathered within REPORT_TIMEOUT",
                    extra={"deployment_id": deployment_id},
                )
                return True
            except Exception:
                log.exception(
                    "concluding deployment failed", extra={"deployment_id": deployment_id}
                )
            # Something else failed (the database, a bug): try again shortly, until the
            # deadline, rather than wait for the next sweep.
            pause = RETRY_PAUSE * self.action_retry_base
            await asyncio.sleep(min(pause, max(deadline - loop.time(), 0)))

    async def _gather_and_apply(
        self, record: DeploymentRecord, action: Action, deadline: float
    ) -> None:
        loop = asyncio.get_running_loop()
        backoff = wait_exponential(multiplier=self.action_retry_base, max=60)
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(GitHubUnavailable),
            # GitHub may come back: keep trying until the report's deadline, not past it.
            stop=lambda _state: loop.time() >= deadline,
            wait=lambda state: min(backoff(state), max(deadline - loop.time(), 0.0)),
            reraise=True,
        ):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    fresh = await self.store.get(record.id)
                    if fresh is None or fresh.phase != "concluding":
                        return
                    record = fresh
                event = await self._gather(record, action, deadline)
                await self.apply(record, event)

    async def _report_deadline(self, deployment_id: str) -> None:
        """Past REPORT_TIMEOUT without a verdict: the state machine gives one with what is known."""
        try:
            record = await self.store.get(deployment_id)
            if record is None or record.phase != "concluding":
                return
            now = utcnow()
            if now < deploys.report_deadline(record, self.report_timeout):
                return
            # Only the report's deadline matters here: the run itself has ended.
            never = float("inf")
            tick = DeadlinesChecked(
                at=now,
                run_lookup_timeout=never,
                run_timeout=never,
                report_timeout=self.report_timeout,
                rules=self.rules,
            )
            await self.apply(record, tick)
        except Exception:
            # The poller's deadline check gives the verdict a little later.
            log.exception("report deadline not applied", extra={"deployment_id": deployment_id})

    async def _renew_held(self) -> None:
        # One heartbeat for every lease this process holds (thousands after an outage), not
        # one each: a write every few seconds whatever the backlog.
        while self._held:
            await asyncio.sleep(GATHER_LEASE / 3)
            with contextlib.suppress(Exception):
                await self.store.renew_gathers(list(self._held), self.owner, GATHER_LEASE)

    async def _gather(self, record: DeploymentRecord, action: Action, deadline: float) -> Event:
        if isinstance(action, StartRollback):
            if self.start_rollback is None:
                return RollbackDecided(deployment_id=None, to=None, at=utcnow())
            return await self.start_rollback(record)
        installation = record.installation_id or await self.github.installation_for(
            record.repository
        )
        found: dict[str, str] | None = None
        problem: str | None = None
        if record.outputs_wanted:
            # Only deployments that named outputs cost the artifact's calls.
            found, problem = await self._outputs(record, installation, action)
        if isinstance(action, FindDeployedUrl):
            url = record.deployed_url_seen
            if url is None and action.head_sha:
                url = await self.deployed_urls.find(
                    record, installation, action.run_id, action.head_sha
                )
            return DeployedUrlFound(url=url, at=utcnow(), outputs=found, outputs_problem=problem)
        assert isinstance(action, GatherFailure)
        if record.progress is not None and record.progress.waiting is not None:
            # It failed while waiting for reviewers: a rejection whose webhook was lost.
            from ghapp.work.reviews import rejection  # only runs that waited for people

            rejected = await rejection(self.github, record, installation, action.run_id)
            if rejected is not None:
                return rejected
        gathered = await self.reporter.gather(
            record.repository,
            installation,
            action.run_id,
            action.attempt,
            action.conclusion,
            deadline=deadline,
        )
        return dataclasses.replace(gathered, outputs=found, outputs_problem=problem)

    async def _outputs(
        self, record: DeploymentRecord, installation: int, action: Action
    ) -> tuple[dict[str, str], str | None]:
        """The run's outputs artifact read, or why it could not be (GitHub unavailable: tried
        again with the rest of the verdict)."""
        run_id = getattr(action, "run_id", None) or (record.run.id if record.run else 0)
        try:
            from ghapp.github.artifacts import read_outputs  # only deployments that asked

            return await read_outputs(self.github, record.repository, installation, run_id)
        except gidgethub.BadRequest as exc:
            return {}, f"GitHub answered {exc.status_code} listing the run's artifacts"

    async def resume(self, *, stranded_only: bool = False) -> int:
        """Restart the pending actions of stored deployments (after a restart: all of them;
        `stranded_only`: those whose gather lease nobody holds, e.g. a dead replica's)."""
        count = 0
        records = await (
            self.store.stranded() if stranded_only else self.store.unfinished(phase="concluding")
        )
        for record in records:
            actions = deploys.pending_actions(record)
            if actions:
                self.schedule(record, actions)
                count += 1
        return count

