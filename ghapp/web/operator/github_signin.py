"""Sign in with GitHub (PAGE_AUTH=github): `GET /auth/github` starts the OAuth web flow with
`state` and PKCE, `GET /auth/github/callback` finishes it, and every later request of such a
session is checked against the person's team memberships (again every RECHECK_SECONDS, and at
once when GitHub refuses their token).

The person's GitHub token stays in this process's memory, keyed by the session id: never in a
cookie. A session whose token this replica does not hold (another replica signed it in, or a
restart) has to sign in again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ghapp.core import signin
from ghapp.web.authz import audit
from ghapp.web.operator.render import render
from ghapp.web.operator.sessions import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    Session,
    make_session_cookie,
    revoke_session,
)

if TYPE_CHECKING:
    import aiohttp

    from ghapp.config import Settings
    from ghapp.web.services import Services

log = logging.getLogger("ghapp.operator")
FLOW_COOKIE = "ghapp_signin"
# Seconds for each call to GitHub (aiohttp is imported at the first sign-in: idle memory).
TIMEOUT_SECONDS = 15
ACCEPT = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


class Refused(Exception):
    """GitHub refused the person's token (401): the session ends."""


@dataclass
class Person:
    """A signed-in person as this replica knows them: their token stays here, server-side."""

    login: str
    token: str
    role: signin.Role
    checked_at: float


def _client() -> aiohttp.ClientSession:
    """A session for GitHub's sign-in calls (aiohttp loads here, at the first sign-in)."""
    import aiohttp

    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS))


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _people(request: Request) -> dict[str, Person]:
    people: dict[str, Person] | None = getattr(request.app.state, "github_people", None)
    if people is None:
        people = request.app.state.github_people = {}
    return people


def _key(settings: Settings) -> bytes:
    token = (settings.orchestrator_token or "").encode()
    return hmac.new(token, b"ghapp github sign-in flow v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _seal(settings: Settings, data: dict[str, object]) -> str:
    payload = _b64(json.dumps(data).encode())
    return f"{payload}.{_b64(hmac.new(_key(settings), payload.encode(), 'sha256').digest())}"


def _open(settings: Settings, value: str | None) -> dict[str, str] | None:
    if not value or len(value) > 2048:
        return None
    payload, _, signature = value.partition(".")
    expected = _b64(hmac.new(_key(settings), payload.encode(), "sha256").digest())
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        if float(data["exp"]) < time.time():
            return None
        return {k: str(v) for k, v in data.items()}
    except (ValueError, KeyError, TypeError):
        return None


def _secure(request: Request) -> bool:
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    return proto.split(",")[0].strip() == "https"


def _after(target: str | None) -> str:
    ok = target and target.startswith("/") and not target.startswith("//") and "\\" not in target
    return target if ok and target else "/"


async def start(request: Request) -> Response:
    """GET /auth/github: send the browser to GitHub's authorize page with state and PKCE."""
    settings = _services(request).settings
    if settings.page_auth != "github":
        return Response("sign-in with GitHub is off (PAGE_AUTH=token)\n", 404)
    state, verifier = signin.new_state(), signin.new_verifier()
    query = urlencode({
        "client_id": settings.github_client_id or "",
        "redirect_uri": f"{settings.public_url}{signin.CALLBACK_PATH}",
        "state": state,
        "code_challenge": signin.challenge(verifier),
        "code_challenge_method": "S256",
    })
    response = RedirectResponse(f"{settings.web_url()}/login/oauth/authorize?{query}", 303)
    flow = {"state": state, "verifier": verifier, "next": _after(request.query_params.get("next")),
            "exp": time.time() + signin.STATE_SECONDS}
    # SameSite=Lax: the cookie must come back on GitHub's top-level redirect to the callback.
    response.set_cookie(FLOW_COOKIE, _seal(settings, flow), max_age=signin.STATE_SECONDS,
                        path=signin.CALLBACK_PATH, httponly=True, samesite="lax",
                        secure=_secure(request))
    return response


async def _get(http: aiohttp.ClientSession, url: str, token: str) -> tuple[int, object]:
    async with http.get(url, headers={**ACCEPT, "Authorization": f"Bearer {token}"}) as answer:
        if answer.status == 401:
            raise Refused("GitHub refused the token")
        data = await answer.json(content_type=None) if answer.status == 200 else None
        return answer.status, data


async def memberships(settings: Settings, token: str, login: str) -> dict[str, bool]:
    """Which of PAGE_TEAMS and PAGE_ADMIN_TEAMS the person is an active member of."""

    api = settings.github_api_url.rstrip("/")
    found: dict[str, bool] = {}
    async with _client() as http:
        for team in dict.fromkeys([*settings.page_admin_teams, *settings.page_teams]):
            org, _, slug = team.partition("/")
            status, data = await _get(http, f"{api}/orgs/{org}/teams/{slug}/memberships/{login}",
                                      token)
            found[team] = status == 200 and isinstance(data, dict) and (
                data.get("state") == "active")
    return found


def _refused_page(request: Request, reason: str, status: int = 403) -> Response:
    return render(request, "signin_refused.html", {"reason": reason}, status)


async def callback(request: Request) -> Response:
    """GET /auth/github/callback: check state, exchange the code with the verifier, decide."""
    import aiohttp

    services = _services(request)
    settings = services.settings
    if settings.page_auth != "github":
        return Response("sign-in with GitHub is off (PAGE_AUTH=token)\n", 404)
    flow = _open(settings, request.cookies.get(FLOW_COOKIE))
    state, code = request.query_params.get("state"), request.query_params.get("code")
    if flow is None or not signin.state_matches(state, flow.get("state")) or not code:
        await audit(request, "signin.failed", target="operator page", outcome=400,
                    who="anonymous", reason="state")
        return _refused_page(request, "This sign-in was not started here, or it expired "
                             "(the state does not match). Start again.", 400)
    api = settings.github_api_url.rstrip("/")
    form = {"client_id": settings.github_client_id or "",
            "client_secret": settings.github_client_secret or "", "code": code,
            "code_verifier": flow["verifier"],
            "redirect_uri": f"{settings.public_url}{signin.CALLBACK_PATH}"}
    try:
        async with _client() as http:
            async with http.post(f"{settings.web_url()}/login/oauth/access_token", data=form,
                                 headers={"Accept": "application/json"}) as answer:
                data = await answer.json(content_type=None)
            token = data.get("access_token") if isinstance(data, dict) else None
            if not isinstance(token, str) or not token:
                error = data.get("error") if isinstance(data, dict) else None
                await audit(request, "signin.failed", target="operator page", outcome=400,
                            who="anonymous", reason=str(error or "code"))
                return _refused_page(request, "GitHub did not accept this sign-in "
                                     f"({error or 'no token'}). Start again.", 400)
            _, me = await _get(http, f"{api}/user", token)
        login = str(me.get("login", "")) if isinstance(me, dict) else ""
        teams = await memberships(settings, token, login)
    except (aiohttp.ClientError, TimeoutError, Refused) as exc:
        log.warning("github sign-in failed", extra={"error": type(exc).__name__})
        return _refused_page(request, "GitHub could not be reached to sign you in. Try again.",
                             502)
    decision = signin.decide(teams, settings.page_teams, settings.page_admin_teams)
    actor = signin.actor(login)
    if decision.role == "refused":
        await audit(request, "signin.failed", target="operator page", outcome=403, who=actor,
                    reason=decision.reason)
        return _refused_page(request, f"{login}: {decision.reason}.")
    value, session = make_session_cookie(settings, actor=actor)
    _people(request)[session.id] = Person(login, token, decision.role, time.time())
    await audit(request, "signin", target="operator page", outcome=303, who=actor,
                reason=decision.role)
    response = RedirectResponse(flow.get("next") or "/", status_code=303)
    response.set_cookie(SESSION_COOKIE, value, max_age=SESSION_SECONDS, path="/", httponly=True,
                        samesite="strict", secure=_secure(request))
    response.delete_cookie(FLOW_COOKIE, path=signin.CALLBACK_PATH)
    log.info("operator signed in with GitHub", extra={"role": decision.role})
    return response


async def checked(request: Request, session: Session) -> Person | None:
    """The person behind a GitHub session, rechecked when due; None ends the session."""
    import aiohttp

    people = _people(request)
    person = people.get(session.id)
    if person is None:
        return None
    if not signin.recheck_due(person.checked_at, time.time(), signin.RECHECK_SECONDS):
        return person
    settings = _services(request).settings
    try:
        teams = await memberships(settings, person.token, person.login)
    except Refused:
        teams = None
    except (aiohttp.ClientError, TimeoutError):
        # GitHub away: keep the last answer rather than lock everyone out; checked next time.
        return person
    role = "refused" if teams is None else signin.decide(
        teams, settings.page_teams, settings.page_admin_teams).role
    if role == "refused":
        people.pop(session.id, None)
        await revoke_session(_services(request).store, session)
        await audit(request, "signout", target="operator page", outcome=401,
                    who=signin.actor(person.login),
                    reason="token refused" if teams is None else "no longer a team member")
        return None
    person.role, person.checked_at = role, time.time()
    return person


async def forget(request: Request, session: Session) -> None:
    """Drop a signed-out session's token from this replica and revoke it at GitHub."""
    import aiohttp

    person = _people(request).pop(session.id, None)
    if person is None:
        return
    settings = _services(request).settings
    url = f"{settings.github_api_url.rstrip('/')}/applications/{settings.github_client_id}/token"
    pair = f"{settings.github_client_id}:{settings.github_client_secret}".encode()
    auth = base64.b64encode(pair).decode()
    try:
        headers = {**ACCEPT, "Authorization": f"Basic {auth}"}
        async with (
            _client() as http,
            http.delete(url, json={"access_token": person.token}, headers=headers) as answer,
        ):
            if answer.status not in (204, 404):
                log.warning("github token not revoked", extra={"status": answer.status})
    except (aiohttp.ClientError, TimeoutError) as exc:
        # The session is ended anyway; the token expires on its own (8 hours).
        log.warning("github token not revoked", extra={"error": type(exc).__name__})


routes = [
    Route(signin.START_PATH, start, methods=["GET"]),
    Route(signin.CALLBACK_PATH, callback, methods=["GET"]),
]
