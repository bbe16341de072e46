"""What the simulator is and does apart from its HTTP servers: the App and its tokens, the
repositories and runs, faults, the webhook sender and the moves of runs. The servers and their
routes see the simulator as this; `Simulator` adds the servers."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web
from nacl.public import PrivateKey

from ghapp.core.signatures import hub_signature
from ghapp.simulator import gate, logs
from ghapp.simulator.auth import (
    RateLimits,
    TokenStore,
    generate_private_key_pem,
    make_jwt,
    public_key_pem,
)
from ghapp.simulator.http import RequestRecord
from ghapp.simulator.model import Faults
from ghapp.simulator.oauth_state import OAuth
from ghapp.simulator.runs import Outgoing, RunPlayer
from ghapp.simulator.state import JobState, Repository, RunState, World
from ghapp.simulator.webhooks import Delivery, WebhookSender


class SimulatedGitHub:
    """The simulated GitHub a GitHub App talks to, without the servers that serve it."""

    def __init__(
        self,
        app_id: int = 1234,
        private_key_pem: str | None = None,
        webhook_secret: str = "s3cret",
        webhook_url: str | None = None,
        step_delay: float = 0.0,
        *,
        app_slug: str = "ghapp-sim",
        app_name: str = "ghapp (simulated)",
        client_id: str | None = None,
    ) -> None:
        self.app_id = app_id
        self.private_key_pem = private_key_pem or generate_private_key_pem()
        self.public_key_pem = public_key_pem(self.private_key_pem)
        # The App's keys GitHub accepts (up to 25): key rotation adds one, then removes one.
        self.accepted_public_keys: list[str] = [self.public_key_pem]
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.step_delay = step_delay
        self.client_id = client_id or f"Iv23li{secrets.token_hex(7)}"
        self.client_secret = secrets.token_hex(20)
        self.auto = True
        self.token_ttl: float = 3600
        self.log_url_ttl: float = 60
        self.faults = Faults()
        self.world = World(app_id, app_slug, app_name, self.client_id)
        self.player = RunPlayer(self.world)
        self.tokens = TokenStore()
        self.rate_limits = RateLimits()
        self.requests: list[RequestRecord] = []
        self.log_auth_violations = 0
        self.log_key = secrets.token_bytes(32)
        self.secrets_key = PrivateKey.generate()
        self.secrets_key_id = str(3_380_204_578_043_523_000 + secrets.randbelow(10**6))
        self.manifest_codes: dict[str, dict[str, Any]] = {}
        # Sign in with GitHub: the user the authorize page signs in, teams, codes, user tokens.
        self.oauth = OAuth()
        # The App's answers to protection-rule requests: (run id, environment, state, comment).
        self.answers: list[tuple[int, str, str, str]] = []
        self.webhooks = WebhookSender(
            secret=lambda: self.webhook_secret, url=lambda: self.webhook_url,
            app_id=app_id, faults=self.faults, next_id=lambda: next(self.world.ids.delivery),
        )
        # Set before start(): extra aiohttp routes on the API origin, and a hook that may create
        # a repository the first time a request names one that does not exist (the sandbox).
        self.extra_routes: list[web.RouteDef] = []
        self.on_unknown_repository: Callable[[str, str], object] | None = None
        self.api_url = ""
        self.log_url = ""
        self._runners: list[web.AppRunner] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # Set when stopping: answers held by a fault are let go at once.
        self.stopping = asyncio.Event()

    # -- state ----------------------------------------------------------------------------

    @property
    def runs(self) -> dict[int, RunState]:
        """Every run, by id."""
        return self.world.runs

    @property
    def jobs(self) -> dict[int, JobState]:
        """Every job of every attempt, by id."""
        return self.world.jobs

    @property
    def repos(self) -> dict[str, Repository]:
        """Repositories by full name."""
        return self.world.repos

    @property
    def deliveries(self) -> list[Delivery]:
        """Every webhook delivery attempt, dropped ones included (``dropped=True``)."""
        return self.webhooks.deliveries

    @property
    def rate_limit(self) -> int:
        """The primary rate limit per installation and for the App (default 5000)."""
        return self.rate_limits.limit

    @rate_limit.setter
    def rate_limit(self, value: int) -> None:
        self.rate_limits.limit = value
        self.rate_limits.buckets.clear()

    @property
    def ghes_api_url(self) -> str:
        """The API under GitHub Enterprise Server's ``/api/v3`` prefix (also served)."""
        return f"{self.api_url}/api/v3"

    @property
    def manifest_form_url(self) -> str:
        """Where the manifest flow's form posts (``/settings/apps/new``)."""
        return f"{self.api_url}/settings/apps/new"

    def add_repository(self, full_name: str, default_branch: str = "main",
                       installation_id: int | None = None, private: bool = True) -> Repository:
        """Add a repository the App is installed on (an owner's repos share an installation)."""
        return self.world.add_repository(full_name, default_branch, installation_id, private)

    def api_calls(self, origin: str = "api", *, method: str | None = None,
                  path: str | None = None) -> int:
        """How many requests an origin got (optionally one method, or paths containing ``path``)."""
        return sum(
            1 for r in self.requests
            if r.origin == origin and (method is None or r.method == method)
            and (path is None or path in r.path)
        )

    def request_counts(self, origin: str = "api", *, since: int = 0) -> Counter[str]:
        """Requests an origin got, by kind (`listing`, `run`, `deployments`, `graphql`, ...;
        see `http.request_kind`), from the `since`-th request recorded on."""
        return Counter(r.kind for r in self.requests[since:] if r.origin == origin)

    def make_jwt(self, *, lifetime: int = 540, now: float | None = None) -> str:
        """An App JWT signed with the App's key (what the App itself would make)."""
        return make_jwt(self.private_key_pem, self.app_id, lifetime=lifetime, now=now)

    def add_app_key(self, private_key_pem: str) -> None:
        """Accept JWTs signed by another of the App's keys (a rotation's new key)."""
        pem = public_key_pem(private_key_pem)
        if pem not in self.accepted_public_keys:
            self.accepted_public_keys.append(pem)

    def remove_app_key(self, private_key_pem: str) -> None:
        """Stop accepting JWTs signed by this key (deleted in the App's settings)."""
        pem = public_key_pem(private_key_pem)
        self.accepted_public_keys = [k for k in self.accepted_public_keys if k != pem]

    def installation_token(self, repo: str | int) -> str:
        """Issue an installation token directly, for a repository name or installation id."""
        inst = repo if isinstance(repo, int) else self.world.repos[repo].installation_id
        return self.tokens.issue(inst, self.token_ttl, None, {}).token

    def revoke_tokens(self) -> None:
        """Invalidate every installation token issued so far."""
        self.tokens.revoke_all()

    def manifest_code(self, manifest: dict[str, Any] | None = None) -> str:
        """A one-time code for ``POST /app-manifests/{code}/conversions``."""
        code = secrets.token_hex(10)
        self.manifest_codes[code] = dict(manifest or {})
        return code

    def log_text(self, job_id: int) -> str:
        """A job's log as the log host would serve it."""
        job = self.world.jobs[job_id]
        return b"".join(logs.render(self.world.runs[job.run_id], job)).decode()

    def sign(self, body: bytes) -> str:
        """The ``X-Hub-Signature-256`` value for a body."""
        return hub_signature(body, self.webhook_secret)

    # -- runs -----------------------------------------------------------------------------

    def emit(self, events: Iterable[Outgoing]) -> list[asyncio.Future[None]]:
        """Queue webhooks in order; the futures resolve as each is handled."""
        return [self.webhooks.enqueue(event) for event in events]

    def launch(self, run: RunState, events: Iterable[Outgoing]) -> None:
        """Send a new (or re-run) attempt's first webhooks; in auto mode let it play out.
        A run that targets an environment with ghapp's rule waits for the App's answer."""
        self.emit([*events, *gate.hold(self.world, run)])
        if self.auto:
            self._spawn(self._autoplay(run.id, run.attempt))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _autoplay(self, run_id: int, attempt: int) -> None:
        # With time between moves, jobs go through their steps one by one, each move a
        # workflow_job webhook (at step_delay 0, a run starts and ends at once, as before).
        run = self.world.runs[run_id]
        # A workflow may set its own pace (the sandbox's scenarios do).
        delay = self.step_delay if run.workflow.phase_delay is None else run.workflow.phase_delay
        stepwise = delay > 0
        while self.auto and run.attempt == attempt and run.status != "completed":
            if run.waiting or run.status == "waiting":
                # Its concurrency group is held by another run: wait for it to complete.
                await asyncio.sleep(max(delay, 0.01))
                continue
            await asyncio.sleep(delay)
            if not (self.auto and run.attempt == attempt and run.status != "completed"):
                return
            if run.status == "queued" and stepwise:
                await self._apply(run_id, lambda r: self.player.begin(r, stepwise=True))
            elif not (stepwise and await self._apply_steps(run_id)):
                await self.advance(run_id)

    async def _apply_steps(self, run_id: int) -> bool:
        """Move the run's jobs one step on; False when they are all in their last step."""
        moved = self.player.step(self._run(run_id))
        await asyncio.gather(*self.emit(moved))
        return bool(moved)

    def _run(self, run_id: int) -> RunState:
        if run_id not in self.world.runs:
            raise KeyError(f"no run {run_id}")
        return self.world.runs[run_id]

    async def _apply(self, run_id: int, move: Callable[[RunState], list[Outgoing]]) -> RunState:
        run = self._run(run_id)
        await asyncio.gather(*self.emit(move(run)))
        return run

    async def advance(self, run_id: int) -> RunState:
        """Move a run one phase (queued -> in_progress -> completed), sending its webhooks."""
        def move(run: RunState) -> list[Outgoing]:
            if run.status == "queued" and run.waiting:
                return []  # its concurrency group is held by another run
            if run.status == "queued":
                return self.player.begin(run)
            if run.status == "in_progress":
                return self.player.complete(run)
            return []
        return await self._apply(run_id, move)

    async def finish(self, run_id: int) -> RunState:
        """Advance a run until it completes."""
        run = self._run(run_id)
        while run.status != "completed":
            await self.advance(run_id)
        return run

    async def cancel_run(self, run_id: int) -> RunState:
        """Cancel a run that has not completed (conclusion ``cancelled``)."""
        def move(run: RunState) -> list[Outgoing]:
            if run.status == "completed":
                raise ValueError(f"run {run_id} is already completed")
            return self.player.cancel(run)
        return await self._apply(run_id, move)

    async def rerun(self, run_id: int, actor: str | None = None) -> RunState:
        """Start a new attempt of a completed run (``run_attempt`` + 1); `actor`: a person
        pressed "Re-run" (the attempt's triggering actor), else the App's bot."""
        run = self._run(run_id)
        if run.status != "completed":
            raise ValueError(f"run {run_id} is still running")
        events = self.player.rerun(run)
        if actor is not None:
            run.actors[run.attempt] = actor
        self.launch(run, events)
        return run

    def set_environment(self, repo: str, name: str, *, ghapp_rule: bool = True,
                        reviewers: list[str] | None = None, wait_timer: int = 0) -> None:
        """Protect an environment of a repository (ghapp's rule, reviewers, a wait timer)."""
        self.world.repos[repo].environments[name] = {
            "ghapp_rule": ghapp_rule, "reviewers": list(reviewers or []), "wait_timer": wait_timer,
        }

    async def review(self, run_id: int, state: str, reviewer: str, comment: str = "",
                     environment: str | None = None) -> RunState:
        """A required reviewer approves or rejects a waiting run's deployment."""
        run = self._run(run_id)
        pending = [name for name, value in run.reviews.items() if value == "pending"]
        name = environment or (pending[0] if pending else None)
        if state not in ("approved", "rejected"):
            raise ValueError("state must be approved or rejected")
        if name is None or run.reviews.get(name) != "pending" or run.status != "waiting":
            raise ValueError(f"run {run_id} waits for no review")
        moves = gate.review(self.world, self.player, run, name, state, reviewer, comment)
        await asyncio.gather(*self.emit(moves))
        return run

    async def start_foreign_run(self, repo: str, actor: str, workflow: str = "deploy.yml",
                                ref: str | None = None,
                                inputs: dict[str, Any] | None = None) -> RunState:
        """Someone pressed "Run workflow": a dispatched run triggered by a person."""
        repository = self.world.repos[repo]
        wf = repository.workflow(workflow)
        if wf is None:
            raise KeyError(f"{repo} has no workflow {workflow}")
        branch = repository.resolve_ref(ref or repository.default_branch)
        if branch is None:
            raise KeyError(f"{repo} has no ref {ref}")
        specs = wf.input_specs()
        effective = {n: s["default"] for n, s in specs.items() if "default" in s}
        effective.update(inputs or {})
        run, events = self.player.create_run(repository, wf, branch, effective)
        run.actors[1] = actor
        events = [gate.resend_as(self.world, run, event) for event in events]
        self.launch(run, events)
        return run

    async def dispatch(self, repo: str, workflow: str = "deploy.yml", ref: str | None = None,
                       inputs: dict[str, Any] | None = None) -> RunState:
        """Start a run as a dispatch would, without going through HTTP or its checks."""
        repository = self.world.repos[repo]
        wf = repository.workflow(workflow)
        if wf is None:
            raise KeyError(f"{repo} has no workflow {workflow}")
        branch = repository.resolve_ref(ref or repository.default_branch)
        if branch is None:
            raise KeyError(f"{repo} has no ref {ref}")
        run, events = self.player.create_run(repository, wf, branch, dict(inputs or {}))
        self.launch(run, events)
        return run

    async def wait_for_run(self, run_id: int, status: str = "completed",
                           timeout: float = 10.0) -> RunState:
        """Wait until a run reaches ``status`` and the webhooks queued so far were handled."""
        deadline = time.monotonic() + timeout
        run = self._run(run_id)
        while run.status != status:
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} is {run.status}, not {status}")
            await asyncio.sleep(0.005)
        await asyncio.wait_for(self.drain(), max(deadline - time.monotonic(), 0.1))
        return run

    # -- webhooks -------------------------------------------------------------------------

    async def drain(self) -> None:
        """Wait until every queued webhook has been sent (held ones stay held)."""
        await self.webhooks.drain()

    async def release_webhooks(self) -> None:
        """Send the webhooks held by ``faults.hold_webhooks``, in order, and wait for them."""
        await asyncio.gather(*self.webhooks.release())

    async def send_webhook(self, event: str, payload: dict[str, Any]) -> Delivery:
        """Send one signed webhook now, bypassing the fault switches."""
        return await self.webhooks.post(event, json.loads(json.dumps(payload)))
