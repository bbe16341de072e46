"""The set-up checks, run: ask GitHub and the orchestrator what `ghapp.core.setup_checks`
judges. Used by `ghapp check` and by `GET /api/v1/check/{owner}/{repo}` alike.

What each check asks (docs/github-setup.md, "Check the set-up"):
- app_key: `GET /app` with the App's JWT;
- installation, permissions: `GET /repos/{o}/{r}/installation` with the JWT;
- workflow: `GET /repos/{o}/{r}/contents/.github/workflows/{file}` (no `ref`: the default
  branch), with an installation token;
- deploy_key: `GET /repos/{o}/{r}/actions/secrets/DEPLOY_SSH_KEY` (with an environment, also
  `GET /repos/{o}/{r}/environments/{e}/secrets/DEPLOY_SSH_KEY`), with an installation token;
- webhooks: `GET /app/hook/deliveries?per_page=100` with the JWT;
- callback: `POST ORCHESTRATOR_CALLBACK_URL`, a signed `X-Ghapp-Event: ping`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import errno
import json
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

import gidgethub

from ghapp.config import Settings
from ghapp.core import setup_checks as judge
from ghapp.core.setup_checks import Answer, SetupCheck, SetupReport
from ghapp.core.times import utcnow
from ghapp.core.untrusted import one_line
from ghapp.github.client import GitHubClient, GitHubUnavailable
from ghapp.work.callbacks import CALLBACK_TIMEOUT, request_headers

if TYPE_CHECKING:
    import aiohttp

    from ghapp.github.api import GitHubAPI

PING_EVENT = "ping"


@dataclass(frozen=True)
class CheckTarget:
    """What to check: a repository, its deploy workflow's file, and optionally an environment."""

    repository: str
    workflow: str = "deploy.yml"
    environment: str | None = None

    @property
    def workflow_path(self) -> str:
        """The workflow's path in the repository."""
        return f".github/workflows/{self.workflow}"


async def ask(call: Awaitable[Any]) -> Answer:
    """GitHub's answer to one call: its status and body, or why there was none."""
    try:
        return Answer(200, await call)
    except gidgethub.HTTPException as exc:
        return Answer(int(exc.status_code), None, str(exc) or exc.status_code.phrase)
    except GitHubUnavailable as exc:
        return Answer(None, None, str(exc))


async def run_checks(
    target: CheckTarget,
    settings: Settings,
    *,
    github: GitHubClient | None,
    session: aiohttp.ClientSession,
    permissions: Mapping[str, str],
    key_problem: str | None = None,
) -> SetupReport:
    """Every check, in the contract's order. `github` is None when the App's credentials are
    not usable (`key_problem` says why); the checks that need GitHub then say so."""
    ping = asyncio.ensure_future(check_callback(settings, session))
    try:
        found = await _github_checks(
            target, settings, github, permissions=permissions, key_problem=key_problem
        )
        return judge.report([*found, await ping])
    finally:
        if not ping.done():
            ping.cancel()
            await asyncio.gather(ping, return_exceptions=True)


async def _github_checks(
    target: CheckTarget,
    settings: Settings,
    github: GitHubClient | None,
    *,
    permissions: Mapping[str, str],
    key_problem: str | None,
) -> list[SetupCheck]:
    api_url = settings.github_api_url
    app_answer: Answer | None = None
    if github is not None and key_problem is None:
        try:
            app_answer = await ask(github.as_app(lambda gh: gh.getitem("/app")))
        except Exception as exc:
            # Only the JWT is made before a request leaves: a PEM that passed the first look
            # at start-up but that PyJWT or cryptography cannot sign with ends here.
            key_problem = f"the private key does not sign a JWT ({type(exc).__name__}: {exc})"
    app_check = judge.judge_app_key(key_problem, app_answer, api_url)
    if github is None or app_answer is None or not app_check.ok:
        because, fix = "it needs app_key, which failed", "fix app_key first"
        return [app_check] + [
            judge.not_checked(name, because, fix) for name in judge.CHECK_IDS[1:6]
        ]
    app = app_answer.body if isinstance(app_answer.body, Mapping) else None
    repository = target.repository
    installation_answer, deliveries_answer = await asyncio.gather(
        ask(github.as_app(lambda gh: gh.getitem(f"/repos/{repository}/installation"))),
        ask(github.as_app(lambda gh: gh.getitem("/app/hook/deliveries?per_page=100"))),
    )
    installation = judge.judge_installation(installation_answer, repository, app, api_url)
    webhooks = judge.judge_deliveries(deliveries_answer, api_url)
    if not installation.ok or not isinstance(installation_answer.body, Mapping):
        because, fix = "it needs installation, which failed", "fix installation first"
        return [
            app_check,
            installation,
            *(judge.not_checked(name, because, fix) for name in judge.CHECK_IDS[2:5]),
            webhooks,
        ]
    body = installation_answer.body
    github.remember_installation(repository, int(body["id"]))
    granted = judge.judge_permissions(permissions, body, app)
    workflow, deploy_key = await asyncio.gather(
        _check_workflow(github, target, int(body["id"]), api_url),
        _check_deploy_key(github, target, int(body["id"]), api_url),
    )
    return [app_check, installation, granted, workflow, deploy_key, webhooks]


async def _check_workflow(
    github: GitHubClient, target: CheckTarget, installation_id: int, api_url: str
) -> SetupCheck:
    # Without `ref`, GitHub reads the default branch, and names it in the answer's `url`.
    url = f"/repos/{target.repository}/contents/{quote(target.workflow_path)}"
    answer = await ask(github.as_installation(installation_id, lambda gh: gh.getitem(url)))
    return judge.judge_workflow(
        _file_text(answer.body),
        answer,
        path=target.workflow_path,
        branch=_branch_of(answer.body),
        environment=target.environment,
        api_url=api_url,
    )


def _branch_of(body: object) -> str:
    """The branch a contents answer was read from (its `url`'s `ref`), as the checks name it."""
    url = body.get("url") if isinstance(body, Mapping) else None
    refs = parse_qs(urlsplit(str(url or "")).query).get("ref")
    return one_line(refs[0], 100) if refs else "(the default branch)"


def _file_text(body: object) -> str | None:
    """The text of a `GET .../contents/{path}` answer for a file, or None."""
    if not isinstance(body, Mapping) or body.get("encoding") != "base64":
        return None
    try:
        return base64.b64decode(str(body.get("content") or "")).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None


async def _check_deploy_key(
    github: GitHubClient, target: CheckTarget, installation_id: int, api_url: str
) -> SetupCheck:
    repository, name = target.repository, judge.SECRET_NAME

    def get(path: str) -> Callable[[GitHubAPI], Awaitable[Any]]:
        return lambda gh: gh.getitem(path)

    in_repository = await ask(
        github.as_installation(installation_id, get(f"/repos/{repository}/actions/secrets/{name}"))
    )
    in_environment = None
    if not in_repository.ok and target.environment:
        environment = quote(target.environment, safe="")
        path = f"/repos/{repository}/environments/{environment}/secrets/{name}"
        in_environment = await ask(github.as_installation(installation_id, get(path)))
    return judge.judge_deploy_key(
        repository, in_repository, in_environment, target.environment, api_url
    )


async def check_callback(settings: Settings, session: aiohttp.ClientSession) -> SetupCheck:
    """Send ORCHESTRATOR_CALLBACK_URL a signed ping and judge its answer."""
    url, allowed = settings.orchestrator_callback_url, settings.callback_allowed_hosts
    if not settings.callback_secret:
        return judge.judge_callback(url, allowed, None, signed=False)
    if url is None:
        return judge.judge_callback(None, allowed, None)
    return judge.judge_callback(url, allowed, await send_ping(session, url, settings))


def ping_body() -> bytes:
    """The body of a ping: `{"event": "ping", "sent_at": "<now, ISO 8601>"}`."""
    sent_at = utcnow().isoformat(timespec="seconds").replace("+00:00", "Z")
    return json.dumps({"event": PING_EVENT, "sent_at": sent_at}).encode()


async def send_ping(session: aiohttp.ClientSession, url: str, settings: Settings) -> Answer:
    """POST a ping to `url`, signed as every callback is; its status, or why none came."""
    import aiohttp

    body = ping_body()
    delivery_id = "ping_" + secrets.token_hex(12)
    if not settings.callback_secret:
        return Answer(None, None, "CALLBACK_SECRET is not set, so nothing can be signed")
    signing = [settings.callback_secret]
    if settings.callback_secret_previous:
        signing.append(settings.callback_secret_previous)
    headers = request_headers(signing, PING_EVENT, delivery_id, body)
    try:
        async with session.post(
            url,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT),
            allow_redirects=False,
        ) as response:
            await response.read()
            return Answer(response.status)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return Answer(None, None, _request_error(exc))


def _request_error(exc: BaseException) -> str:
    """Why a request got no answer, in a few words (never a Python repr)."""
    import aiohttp

    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "its host name could not be resolved"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if exc.os_error.errno == errno.ECONNREFUSED:
            return "connection refused"
        return f"could not connect: {exc.strerror or 'connection failed'}"
    if isinstance(exc, TimeoutError):
        return f"no answer within {CALLBACK_TIMEOUT:g} s"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the connection was closed without an answer"
    return exc.__class__.__name__
