"""GitHub REST client: App JWT, cached installation tokens, retries, and the calls ghapp makes."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlencode, urljoin

import gidgethub
from cachetools import LRUCache, TLRUCache, TTLCache

from ghapp.core.deployed_urls import (
    DeploymentSeen,
    Page,
    PageWanted,
    StatusSeen,
    UrlLookup,
    choose_url,
)
from ghapp.core.times import parse_github_time
from ghapp.github.errors import describe, origin_of
from ghapp.github.retry import is_rate_limited
from ghapp.github.sessions import LazySession

log = logging.getLogger("ghapp.github")

if TYPE_CHECKING:
    import aiohttp

    from ghapp.github.api import GitHubAPI as _GitHubAPI

T = TypeVar("T")
USER_AGENT = "ghapp"
DISPATCH_API_VERSION = "2026-03-10"
# Tokens live an hour; renew a few minutes early so none expires mid-request.
TOKEN_RENEW_MARGIN = 300.0
# How long what a workflow file declares is believed before it is read again (by ETag).
WORKFLOW_FILE_TTL = 60.0


class GitHubUnavailable(Exception):
    """GitHub could not be reached, or kept failing, after retries."""


class GraphQLRefused(Exception):
    """GitHub's GraphQL API answered an error, or there is none (the REST way remains)."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        # No GraphQL API at all (404, or an answer that is not JSON).
        self.missing = missing


class LogsNotReady(Exception):
    """GitHub has no log for the job yet (404 right after it completes)."""


class LogUnavailable(Exception):
    """GitHub will not give the job's log (no permission, deleted, expired for good)."""


class GitHubClient:
    """The GitHub calls of one App, with its caches; one per process."""

    def __init__(
        self,
        session: aiohttp.ClientSession | LazySession,
        *,
        app_id: str,
        private_key: str,
        api_url: str,
        retry_base: float = 1.0,
        fallback_keys: Sequence[str] = (),
    ) -> None:
        # A LazySession opens (and loads aiohttp) at the first call GitHub is sent.
        self._session = session
        self.app_id = app_id
        self.api_url = api_url.rstrip("/")
        self.origin = origin_of(self.api_url)
        self._private_key = private_key
        # PRIVATE_KEY_PATH's other keys (rotation): the next one is used when GitHub answers
        # 401 to a JWT signed with the current one.
        self._keys = [private_key, *fallback_keys]
        self._key_index = 0
        self._retry_base = retry_base
        self._app_api: _GitHubAPI | None = None
        self._tokens: TLRUCache[int, tuple[str, float]] = TLRUCache(
            maxsize=4096, ttu=lambda _k, v, _now: v[1] - TOKEN_RENEW_MARGIN, timer=time.time
        )
        self._installations: TTLCache[str, int] = TTLCache(maxsize=4096, ttl=3600)
        self._default_branches: TTLCache[str, str] = TTLCache(maxsize=4096, ttl=600)
        # Whether a workflow on a ref declares an input: read again (a 304 when unchanged)
        # at most this often, so a burst of deploys reads the file once.
        self._declared: TTLCache[tuple[str, str, str, str], bool] = TTLCache(
            maxsize=4096, ttl=WORKFLOW_FILE_TTL
        )
        # ETags of GET answers, so a repeated poll is a 304 that costs no rate limit.
        self._etags: LRUCache[str, Any] = LRUCache(maxsize=2048)
        self._locks: LRUCache[str, asyncio.Lock] = LRUCache(maxsize=8192)
        self.calls = 0
        self.etag_hits = 0
        # Called with (url, status, headers, installation id or None for App calls).
        self.observers: list[Callable[[str, int, Mapping[str, str], int | None], None]] = []

    def _observer(self, installation_id: int | None) -> Callable[..., None]:
        def observe(method: str, url: str, status: int, headers: Mapping[str, str]) -> None:
            self.calls += 1
            if status == 304:
                self.etag_hits += 1
            for observer in self.observers:
                observer(url, status, headers, installation_id)

        return observe

    @property
    def session(self) -> aiohttp.ClientSession:
        """The HTTP session (opened now if it was lazy)."""
        if isinstance(self._session, LazySession):
            return self._session.get()
        return self._session

    @property
    def traced(self) -> bool:
        """Whether the session tells when a dispatch was written (see ghapp.github.inflight)."""
        from ghapp.github import inflight

        return inflight.is_traced(self.session)

    @property
    def _app(self) -> _GitHubAPI:
        if self._app_api is None:
            self._app_api = self._api(app_id=self.app_id, private_key=self._private_key)
        return self._app_api

    def _api(self, installation_id: int | None = None, **kwargs: Any) -> _GitHubAPI:
        from ghapp.github.api import GitHubAPI

        api = GitHubAPI(self.session, USER_AGENT, base_url=self.api_url, **kwargs)
        api.retry_base = self._retry_base
        api.observe = self._observer(installation_id)  # type: ignore[method-assign]
        return api

    async def _guard(self, call: Awaitable[T]) -> T:
        from ghapp.github.api import ClientError

        try:
            return await call
        except gidgethub.GitHubBroken as exc:
            raise GitHubUnavailable(describe(exc, self.origin)) from exc
        except (ClientError, TimeoutError) as exc:
            raise GitHubUnavailable(describe(exc, self.origin)) from exc
        except gidgethub.BadRequest as exc:
            if is_rate_limited(int(exc.status_code), exc.headers, str(exc)):
                raise GitHubUnavailable(f"GitHub rate limit: {exc}") from exc
            raise

    # --- authentication ---------------------------------------------------------------

    def remember_installation(self, repository: str, installation_id: int) -> None:
        """Note a repository's installation, as webhooks tell it, to save a lookup."""
        self._installations[repository.lower()] = installation_id

    async def installation_for(self, repository: str) -> int:
        """The App's installation on a repository (cached)."""
        key = repository.lower()
        cached = self._installations.get(key)
        if cached is not None:
            return cached
        # A burst of deploys to one repository makes one lookup, not one each.
        async with self._lock(f"installation:{key}"):
            cached = self._installations.get(key)
            if cached is not None:
                return cached
            data = await self._with_app_key(
                lambda: self._app.getitem(f"/repos/{repository}/installation")
            )
            installation_id = int(data["id"])
            self._installations[key] = installation_id
            return installation_id

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    async def token(self, installation_id: int) -> str:
        """An installation token, cached until shortly before it expires."""
        cached = self._tokens.get(installation_id)
        if cached is not None:
            return cached[0]
        async with self._lock(f"token:{installation_id}"):
            cached = self._tokens.get(installation_id)
            if cached is not None:
                return cached[0]
            # Loaded at the first token: PyJWT's RS256 brings cryptography (~8 MiB), which
            # an idle server does not need.
            from gidgethub.apps import get_installation_access_token

            data = await self._with_app_key(
                lambda: get_installation_access_token(
                    self._app,
                    installation_id=str(installation_id),
                    app_id=self.app_id,
                    private_key=self._private_key,
                )
            )
            expires = parse_github_time(data["expires_at"])
            self._tokens[installation_id] = (data["token"], expires.timestamp())
            return str(data["token"])

    def forget_token(self, installation_id: int) -> None:
        """Drop a token GitHub no longer accepts."""
        self._tokens.pop(installation_id, None)

    async def as_installation(
        self, installation_id: int, call: Callable[[_GitHubAPI], Awaitable[T]]
    ) -> T:
        """Run calls with an installation token; a 401 renews the token and retries once."""
        for attempt in (1, 2):
            api = self._api(
                installation_id, oauth_token=await self.token(installation_id), cache=self._etags
            )
            try:
                return await self._guard(call(api))
            except gidgethub.BadRequest as exc:
                if int(exc.status_code) != 401 or attempt == 2:
                    raise
                self.forget_token(installation_id)
        raise AssertionError("unreachable")

    async def as_app(self, call: Callable[[_GitHubAPI], Awaitable[T]]) -> T:
        """Run calls as the App itself (JWT), e.g. the hook-deliveries API."""
        return await self._with_app_key(lambda: call(self._app))

    async def _with_app_key(self, make: Callable[[], Awaitable[T]]) -> T:
        """A call signed with the App's JWT; on a 401, again with the next key, if any."""
        while True:
            try:
                return await self._guard(make())
            except gidgethub.BadRequest as exc:
                if int(exc.status_code) != 401 or not self._next_key():
                    raise

    def _next_key(self) -> bool:
        """Move to the next App key (False when none is left)."""
        index = self._key_index
        if index + 1 >= len(self._keys):
            return False
        self._key_index = index + 1
        self._private_key = self._keys[index + 1]
        self._app_api = None
        log.warning(
            "GitHub refused the App's key %d of %d (401): signing with the next one; remove "
            "the refused key from PRIVATE_KEY_PATH",
            index + 1,
            len(self._keys),
        )
        return True

    # --- the calls ----------------------------------------------------------------------

    async def default_branch(self, repository: str, installation_id: int) -> str:
        """The repository's default branch (cached for ten minutes)."""
        key = repository.lower()
        cached = self._default_branches.get(key)
        if cached is not None:
            return cached
        async with self._lock(f"branch:{key}"):
            cached = self._default_branches.get(key)
            if cached is not None:
                return cached
            data = await self.as_installation(
                installation_id, lambda gh: gh.getitem(f"/repos/{repository}")
            )
            branch = str(data["default_branch"])
            self._default_branches[key] = branch
            return branch

    async def post_dispatch(
        self,
        repository: str,
        installation_id: int,
        workflow: str,
        body: Mapping[str, Any],
        *,
        versioned: bool,
    ) -> dict[str, Any] | None:
        """POST a workflow dispatch; the run details when GitHub returns them (200), else None."""
        url = f"/repos/{repository}/actions/workflows/{workflow}/dispatches"
        headers = {"X-GitHub-Api-Version": DISPATCH_API_VERSION} if versioned else None
        data = await self.as_installation(
            installation_id, lambda gh: gh.post(url, data=dict(body), extra_headers=headers)
        )
        return dict(data) if isinstance(data, dict) and "workflow_run_id" in data else None

    async def workflow_file(
        self, repository: str, installation_id: int, workflow: str, ref: str
    ) -> str | None:
        """The text of a workflow file on a ref, or None if it cannot be read."""
        path = f"/repos/{repository}/contents/.github/workflows/{workflow}?ref={quote(ref)}"
        try:
            data = await self.as_installation(installation_id, lambda gh: gh.getitem(path))
        except gidgethub.BadRequest:
            return None
        if not isinstance(data, dict) or data.get("encoding") != "base64":
            return None
        return base64.b64decode(data.get("content") or "").decode("utf-8", "replace")

    async def declares_input(
        self, repository: str, installation_id: int, workflow: str, ref: str, name: str
    ) -> bool:
        """Whether the workflow file on the ref declares a workflow_dispatch input (a file
        that cannot be read declares none); read by ETag, believed WORKFLOW_FILE_TTL."""
        from ghapp.core.correlation import declares_input

        key = (repository.lower(), workflow, ref, name)
        cached = self._declared.get(key)
        if cached is not None:
            return cached
        async with self._lock(f"workflow:{key}"):
            cached = self._declared.get(key)
            if cached is not None:
                return cached
            text = await self.workflow_file(repository, installation_id, workflow, ref)
            declared = text is not None and declares_input(text, name)
            self._declared[key] = declared
            return declared

    async def dispatch_runs(
        self, repository: str, installation_id: int, workflow: str, ref: str, since: str
    ) -> list[dict[str, Any]]:
        """Runs of a workflow started by dispatches on a ref since a time (newest first)."""
        query = urlencode(
            {"event": "workflow_dispatch", "branch": ref, "created": f">={since}", "per_page": 50}
        )
        url = f"/repos/{repository}/actions/workflows/{workflow}/runs?{query}"
        data = await self.as_installation(installation_id, lambda gh: gh.getitem(url))
        return list(data.get("workflow_runs") or [])

    async def dispatch_runs_page(
        self, repository: str, installation_id: int, created: str, page: int = 1
    ) -> dict[str, Any]:
        """One page (100 runs, newest first) of a repository's dispatched runs created in a
        window (GitHub's `created` syntax); conditional, so an unchanged page is a free 304."""
        query = urlencode(
            {"event": "workflow_dispatch", "created": created, "per_page": 100, "page": page}
        )
        url = f"/repos/{repository}/actions/runs?{query}"
        data = await self.as_installation(installation_id, lambda gh: gh.getitem(url))
        return dict(data)

    async def cancel_run(self, repository: str, installation_id: int, run_id: int) -> None:
        """Ask GitHub to cancel a run (it answers 202; the run ends `cancelled`)."""
        url = f"/repos/{repository}/actions/runs/{run_id}/cancel"
        await self.as_installation(installation_id, lambda gh: gh.post(url, data={}))

    async def run(self, repository: str, installation_id: int, run_id: int) -> dict[str, Any]:
        """One workflow run (conditional: an unchanged run answers 304 from the cache)."""
        data = await self.as_installation(
            installation_id, lambda gh: gh.getitem(f"/repos/{repository}/actions/runs/{run_id}")
        )
        return dict(data)

    async def run_jobs(
        self, repository: str, installation_id: int, run_id: int
    ) -> list[dict[str, Any]]:
        """The jobs of a run's latest attempt (conditional: unchanged jobs answer 304)."""
        url = f"/repos/{repository}/actions/runs/{run_id}/jobs?per_page=100"
        data = await self.as_installation(installation_id, lambda gh: gh.getitem(url))
        return [dict(job) for job in data.get("jobs") or [] if isinstance(job, dict)]

    async def jobs(
        self, repository: str, installation_id: int, run_id: int, attempt: int
    ) -> list[dict[str, Any]]:
        """Every job of one attempt of a run."""
        url = f"/repos/{repository}/actions/runs/{run_id}/attempts/{attempt}/jobs?per_page=100"

        async def collect(gh: _GitHubAPI) -> list[dict[str, Any]]:
            return [job async for job in gh.getiter(url, iterable_key="jobs")]

        return await self.as_installation(installation_id, collect)

    async def environment_url(
        self,
        repository: str,
        installation_id: int,
        head_sha: str,
        run_id: int,
        environment: str | None = None,
    ) -> str | None:
        """The environment URL of a successful deployment the run made, if any (the one in
        `environment` if it deployed to several): the REST way, two requests or more."""
        lookup = UrlLookup(repository, run_id, head_sha, environment, _EPOCH, _EPOCH)

        async def find(gh: _GitHubAPI) -> str | None:
            deployments = await gh.getitem(f"/repos/{repository}/deployments?sha={head_sha}")
            seen: list[DeploymentSeen] = []
            for deployment in deployments:
                statuses = await gh.getitem(deployment["statuses_url"])
                seen.append(_rest_deployment(deployment, statuses))
                found = choose_url(seen[-1:], lookup)
                # Newest first: the first found is the answer unless another environment
                # was asked for, which an older deployment may still have.
                if found and (environment is None or seen[-1].environment == environment):
                    return found
            return choose_url(seen, lookup)

        return await self.as_installation(installation_id, find)

    async def deployment_pages(
        self, installation_id: int, pages: Sequence[PageWanted]
    ) -> list[Page | None]:
        """A page of deployments (newest first) of each repository, in one GraphQL request;
        None for a repository GitHub gave no page for. Raises GraphQLRefused when GitHub
        answers the query with an error, or has no GraphQL API (the REST way remains)."""
        from gidgethub import (
            GitHubException,
            GraphQLAuthorizationFailure,
            GraphQLResponseTypeError,
            QueryError,
        )

        from ghapp.github import graphql

        query, variables = graphql.deployments_query(pages)
        endpoint = graphql.graphql_url(self.api_url)

        async def ask(gh: _GitHubAPI) -> Any:
            try:
                return await gh.graphql(query, endpoint=endpoint, **variables)
            except QueryError as exc:
                # Errors beside data (a repository not found): the data that came is used.
                data = exc.response.get("data") if isinstance(exc.response, dict) else None
                if not isinstance(data, dict):
                    raise GraphQLRefused(f"GitHub's GraphQL API answered: {exc}") from exc
                return data

        for attempt in (1, 2):
            api = self._api(installation_id, oauth_token=await self.token(installation_id))
            try:
                data = await self._guard(ask(api))
            except GraphQLAuthorizationFailure as exc:
                self.forget_token(installation_id)
                if attempt == 2:
                    raise GraphQLRefused(f"GitHub's GraphQL API refused the token: {exc}") from exc
                continue
            except (GitHubException, ValueError) as exc:
                status = getattr(exc, "status_code", None)
                missing = isinstance(exc, GraphQLResponseTypeError) or status in (404, 410)
                raise GraphQLRefused(
                    f"GitHub's GraphQL API answered: {exc}", missing=missing
                ) from exc
            return graphql.read_pages(data, len(pages))
        raise AssertionError("unreachable")

    async def job_log_url(self, repository: str, installation_id: int, job_id: int) -> str:
        """The signed, short-lived URL of a job's log: GitHub's 302, not followed here."""
        url = f"{self.api_url}/repos/{repository}/actions/jobs/{job_id}/logs"
        from ghapp.github.api import ClientError

        for attempt in (1, 2):
            headers = {
                "Authorization": f"token {await self.token(installation_id)}",
                "Accept": "application/vnd.github+json",
                "User-Agent": USER_AGENT,
            }
            try:
                async with self.session.get(
                    url, headers=headers, allow_redirects=False
                ) as response:
                    await response.read()
            except (ClientError, TimeoutError) as exc:
                raise GitHubUnavailable(describe(exc, self.origin)) from exc
            status = response.status
            self._observer(installation_id)("GET", url, status, response.headers)
            if status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                return urljoin(url, response.headers["Location"])
            if status == 401 and attempt == 1:
                self.forget_token(installation_id)
                continue
            if status == 404:
                raise LogsNotReady(f"no log yet for job {job_id}")
            if status >= 500 or is_rate_limited(status, response.headers):
                raise GitHubUnavailable(f"GitHub answered {status} for job {job_id}'s log")
            raise LogUnavailable(f"GitHub answered {status} for job {job_id}'s log")
        raise AssertionError("unreachable")

    async def annotations(
        self, repository: str, installation_id: int, check_run_id: int
    ) -> list[dict[str, Any]]:
        """The annotations of a job's check run."""
        url = f"/repos/{repository}/check-runs/{check_run_id}/annotations?per_page=100"

        async def collect(gh: _GitHubAPI) -> list[dict[str, Any]]:
            return [item async for item in gh.getiter(url, iterable_key=None)]

        return await self.as_installation(installation_id, collect)


# A lookup's window does not matter to the REST way: it reads the run's commit.
_EPOCH = datetime.fromtimestamp(0, UTC)


def _rest_deployment(deployment: Mapping[str, Any], statuses: Any) -> DeploymentSeen:
    seen = []
    for status in statuses if isinstance(statuses, list) else []:
        if isinstance(status, Mapping):
            seen.append(StatusSeen(
                state=str(status.get("state") or ""),
                environment_url=status.get("environment_url") or None,
                # target_url is log_url's older name.
                log_url=status.get("log_url") or status.get("target_url") or None,
            ))
    return DeploymentSeen(
        commit=str(deployment.get("sha") or ""),
        environment=deployment.get("environment"),
        created_at=None,
        statuses=tuple(seen),
    )
