"""The operator page at `/`: recent deployments and webhook deliveries, resend and redeliver.

Server-rendered HTML (Jinja2, autoescaped), no external assets; one inline script (allowed by the
CSP nonce) moves the progress bars of running deployments from their event streams. Access needs the
orchestrator's bearer token, either as an `Authorization` header or through a session: the login
form trades the token for a signed, HttpOnly, SameSite=Strict cookie (`ghapp.web.sessions`).
Actions, sign-out included, are POST forms that also carry a per-session CSRF token; no form is
read before the request is known to be authorised (the sign-in form aside, 16 KiB at most).
"""

from __future__ import annotations

import functools
import hmac
import logging
import math
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import gidgethub
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ghapp.github.client import GitHubUnavailable
from ghapp.github.deliveries import HookDeliveries
from ghapp.web import launch, releases_page
from ghapp.web.api import stored
from ghapp.web.limits import FORM_CAP, BodyRefused, read_body
from ghapp.web.sessions import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    Session,
    SignInThrottle,
    make_session_cookie,
    read_session_cookie,
    revoke_session,
    session_revoked,
)

if TYPE_CHECKING:
    from starlette.templating import Jinja2Templates

    from ghapp.config import Settings
    from ghapp.web.services import Services

log = logging.getLogger("ghapp.operator")

STATES = ("dispatched", "in_progress", "completed")
# Running deployments followed live on the page (each holds one of the browser's connections).
LIVE_STREAMS = 4
# How long before the local record the redeliver button looks for GitHub's attempt.
REDELIVER_SLACK = 600.0
NOTICES = {
    "resent": ("ok", "Callback queued again; it goes out with the same X-Ghapp-Delivery."),
    "not_completed": ("error", "That deployment has no verdict yet: nothing to resend."),
    "no_such_deployment": ("error", "No such deployment."),
    "redelivered": ("ok", "GitHub was asked to deliver the webhook again."),
    "delivery_unknown": ("error", "GitHub has no recent delivery with that GUID."),
    "github_error": ("error", "GitHub did not take the redelivery; see the server log."),
    "csrf": ("error", "The form was stale; try again."),
    "rollback_started": ("ok", "Rollback dispatched: the earlier release is being deployed."),
    "no_release": ("error", "That environment has no earlier release to put back."),
    "rollback_failed": ("error", "The rollback could not be dispatched; see the server log."),
}


@functools.cache
def _templates() -> Jinja2Templates:
    # Built on the first page view: Jinja2 is memory a server without an operator never needs.
    import jinja2
    from starlette.templating import Jinja2Templates as Templates

    templates = Templates(
        env=jinja2.Environment(
            loader=jinja2.FileSystemLoader(Path(__file__).parent / "operator"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
    )
    templates.env.filters["safe_url"] = _safe_url
    templates.env.filters["when"] = _when
    templates.env.filters["svg"] = _svg
    templates.env.filters["seconds"] = _seconds
    return templates


# --- sessions ---------------------------------------------------------------------------------


def _token_ok(settings: Settings, token: str) -> bool:
    expected = settings.orchestrator_token or ""
    return bool(expected) and hmac.compare_digest(token.encode(), expected.encode())


def _bearer(request: Request, settings: Settings) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and _token_ok(settings, token.strip())


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _secure(request: Request) -> bool:
    # Behind a TLS-terminating proxy the scheme arrives in X-Forwarded-Proto.
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    return proto.split(",")[0].strip() == "https"


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body, read as a stream; TooLarge past 16 KiB (a few short fields)."""
    raw = await read_body(request, FORM_CAP)
    fields = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


async def _session(request: Request) -> Session | None:
    """The request's signed-in session, unless it expired or was signed out."""
    services = _services(request)
    session = read_session_cookie(services.settings, request.cookies.get(SESSION_COOKIE))
    if session is None or await session_revoked(services.store, session):
        return None
    return session


def _refused(exc: BodyRefused) -> Response:
    return Response(
        f"{exc}\n",
        exc.status,
        media_type="text/plain",
        headers=_security_headers(secrets.token_urlsafe(16)),
    )


def _back(target: str | None, notice: str | None = None) -> str:
    """Where to go after an action: a path on this site only (no open redirect)."""
    path = "/"
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        path = target
    parts = urlsplit(path)
    query = [(k, v) for k, vs in parse_qs(parts.query).items() for v in vs if k != "notice"]
    if notice:
        query.append(("notice", notice))
    return parts.path + ("?" + urlencode(query) if query else "")


def _security_headers(nonce: str, *, script: bool = False) -> dict[str, str]:
    # The one inline stylesheet is allowed by its nonce; so is the deployments page's one
    # script (it follows running deployments' event streams, hence `connect-src 'self'`).
    scripts = f"script-src 'nonce-{nonce}'; connect-src 'self'; " if script else ""
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'nonce-{nonce}'; {scripts}form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"
        ),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def _render(
    request: Request,
    name: str,
    context: dict[str, Any],
    status: int = 200,
    *,
    script: bool = False,
) -> Response:
    nonce = secrets.token_urlsafe(16)
    return _templates().TemplateResponse(
        request,
        name,
        {"nonce": nonce, **context},
        status_code=status,
        headers=_security_headers(nonce, script=script),
    )


# --- view helpers ---------------------------------------------------------------------------


def _safe_url(url: object) -> str | None:
    """A link target only if it is http(s): autoescaping does not stop `javascript:` URLs."""
    if isinstance(url, str) and url.lower().startswith(("https://", "http://")):
        return url
    return None


def _svg(markup: str) -> Any:
    """A chart from `ghapp.web.charts`, which escapes every text it draws."""
    from markupsafe import Markup

    # Built by ghapp.web.charts, which escapes every text it draws.
    return Markup(markup)


def _seconds(value: object) -> str:
    """A duration in seconds, as `4m 05s` (or `—` for none)."""
    if not isinstance(value, (int, float)):
        return "—"
    minutes, seconds = divmod(round(value), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def _when(value: object) -> str:
    """A time as `YYYY-MM-DD HH:MM:SS` in UTC (datetimes, ISO strings, epoch seconds)."""
    moment: datetime | None = None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, (int, float)):
        moment = datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")



async def _recent_deliveries(services: Services, limit: int) -> list[dict[str, Any]] | None:
    """The local delivery log's newest entries, or None when this server keeps no log."""
    delivery_log = getattr(services, "delivery_log", None)
    if delivery_log is None or not delivery_log.enabled:
        return None
    return [
        {
            "guid": entry.delivery_id,
            "event": entry.event,
            "action": entry.action,
            "status": entry.status,
            "ok": 200 <= entry.status < 300,
            "outcome": entry.outcome,
            "signature": entry.signature,
            # Only a correctly signed delivery came from GitHub, so only GitHub can resend it.
            "redeliverable": bool(entry.delivery_id) and entry.signature == "ok",
            "received_at": entry.received_at,
            "duration_ms": entry.duration_ms,
        }
        for entry in await delivery_log.recent(limit=limit)
    ]


# --- routes ---------------------------------------------------------------------------------


def _bounded(value: str | None, default: int) -> int:
    """A list length from the query: 1..500, the default when absent or not a number."""
    try:
        return max(1, min(500, int(value or default)))
    except ValueError:
        return default


def _login_page(
    request: Request, *, failed: bool = False, status: int | None = None
) -> Response:
    return _render(
        request, "login.html", {"failed": failed}, status or (401 if failed else 200)
    )


async def index(request: Request) -> Response:
    """GET /: the operator page, or the login form without a session or token."""
    services = _services(request)
    settings = services.settings
    session = await _session(request)
    if session is None and not _bearer(request, settings):
        return _login_page(request)
    params = request.query_params
    repository = (params.get("repository") or "").strip() or None
    state = params.get("state") or None
    problems = []
    if repository is not None and "\x00" in repository:
        # PostgreSQL refuses NUL in text; no repository name has one anyway.
        problems.append("a repository name has no NUL character: showing every repository")
        repository = None
    if state is not None and state not in STATES:
        problems.append(f"unknown state {state!r}: showing every state")
        state = None
    limit = _bounded(params.get("limit"), 50)
    refresh = params.get("refresh", "")
    deployments = [
        record.public()
        for record in await services.store.recent(repository=repository, state=state, limit=limit)
    ]
    # A browser opens few connections to one server at a time: the newest running ones only.
    live = [d.id for d in deployments if d.state != "completed"][:LIVE_STREAMS]
    deliveries = await _recent_deliveries(services, _bounded(params.get("deliveries"), 20))
    notice = NOTICES.get(params.get("notice", ""))
    here = request.url.path + (("?" + request.url.query) if request.url.query else "")
    releases = await releases_page.context(services, repository)
    return _render(
        request,
        "index.html",
        {
            **releases,
            "deployments": deployments,
            "deliveries": deliveries,
            "repository": repository or "",
            "state": state or "",
            "states": STATES,
            "limit": limit,
            "refresh": int(refresh) if refresh.isdigit() and 2 <= int(refresh) <= 3600 else None,
            "problems": problems,
            "notice": notice,
            "csrf": session.csrf if session else "",
            "back": here,
            "session": session is not None,
            "now": datetime.now(UTC),
            "live": live,
        },
        script=True,
    )


def _throttle(request: Request) -> SignInThrottle:
    throttle: SignInThrottle | None = getattr(request.app.state, "sign_in_throttle", None)
    if throttle is None:
        throttle = request.app.state.sign_in_throttle = SignInThrottle()
    return throttle


async def login(request: Request) -> Response:
    """POST /login: check the token; set the session cookie and go to `/`.

    At most 10 failed attempts per client address a minute: the next gets 429, right or wrong.
    """
    settings = _services(request).settings
    address = request.client.host if request.client else "unknown"
    throttle = _throttle(request)
    wait = throttle.retry_after(address)
    if wait is not None:
        log.warning("operator sign-in throttled", extra={"client": address})
        response = Response(
            "too many failed sign-ins from this address: try again later\n",
            429,
            media_type="text/plain",
            headers={**_security_headers(secrets.token_urlsafe(16)), "Retry-After": str(wait)},
        )
        return response
    try:
        form = await _form(request)
    except BodyRefused as exc:
        throttle.failed(address)
        return _refused(exc)
    if not _token_ok(settings, form.get("token", "").strip()):
        throttle.failed(address)
        log.warning("operator login refused", extra={"client": address})
        return _login_page(request, failed=True)
    value, _ = make_session_cookie(settings)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    log.info("operator logged in")
    return response


async def logout(request: Request) -> Response:
    """POST /logout (with the CSRF token): end the session on the server, forget the cookie."""
    session = await _session(request)
    if session is None:
        return _login_page(request, status=401)
    try:
        form = await _form(request)
    except BodyRefused as exc:
        return _refused(exc)
    if not hmac.compare_digest(form.get("csrf", "").encode(), session.csrf.encode()):
        return RedirectResponse(_back("/", "csrf"), status_code=303)
    await revoke_session(_services(request).store, session)
    log.info("operator signed out")
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request)
    )
    return response


async def _authorized_action(request: Request) -> Response | dict[str, str]:
    """The form of a page action that may run, or the answer refusing it.

    Authorisation first (a bearer token, or a session), the body only then; with a session,
    the form must carry its CSRF token.
    """
    settings = _services(request).settings
    bearer = _bearer(request, settings)
    session = None if bearer else await _session(request)
    if not bearer and session is None:
        return _login_page(request, status=401)
    try:
        form = await _form(request)
    except BodyRefused as exc:
        return _refused(exc)
    # A browser never attaches the bearer header by itself, so a cross-site form cannot forge it.
    if session is not None and not hmac.compare_digest(
        form.get("csrf", "").encode(), session.csrf.encode()
    ):
        return RedirectResponse(_back("/", "csrf"), status_code=303)
    return form


async def resend(request: Request) -> Response:
    """POST /ui/deployments/{id}/resend: queue a completed deployment's callback again."""
    form = await _authorized_action(request)
    if isinstance(form, Response):
        return form
    services = _services(request)
    deployment_id = request.path_params["deployment_id"]
    record = await stored(services, deployment_id)
    if record is None:
        notice = "no_such_deployment"
    elif record.state != "completed" or not await services.store.resend_callback(deployment_id):
        notice = "not_completed"
    else:
        services.sender.wake()
        notice = "resent"
        log.info("operator resent a callback", extra={"deployment_id": deployment_id})
    return RedirectResponse(_back(form.get("back"), notice), status_code=303)


async def redeliver(request: Request) -> Response:
    """POST /ui/deliveries/{guid}/redeliver: ask GitHub to send that webhook again."""
    form = await _authorized_action(request)
    if isinstance(form, Response):
        return form
    services = _services(request)
    guid = request.path_params["guid"]
    # The local log knows the GUID; GitHub redelivers by its own attempt id, so look that up
    # among the attempts since shortly before the delivery arrived (a day back if unknown).
    now = time.time()
    try:
        received = float(form.get("received_at", ""))
    except ValueError:
        received = now - 86400
    # A form field, so bounded: GitHub keeps deliveries for a few days, never from the future.
    received = min(max(received, now - 7 * 86400), now) if math.isfinite(received) else now - 86400
    since = datetime.fromtimestamp(received - REDELIVER_SLACK, UTC)
    deliveries = HookDeliveries(services.github)
    try:
        attempts = [d for d in await deliveries.list(since=since) if d.get("guid") == guid]
        if not attempts:
            notice = "delivery_unknown"
        else:
            # Newest first: redeliver the latest attempt, as GitHub's own UI does.
            await deliveries.redeliver(int(attempts[0]["id"]))
            notice = "redelivered"
            log.info("operator asked GitHub to redeliver", extra={"delivery_id": guid})
    except (GitHubUnavailable, gidgethub.GitHubException) as exc:
        log.warning("redelivery failed", extra={"delivery_id": guid, "error": str(exc)})
        notice = "github_error"
    return RedirectResponse(_back(form.get("back"), notice), status_code=303)


async def rollback(request: Request) -> Response:
    """POST /ui/repos/{owner}/{repo}/environments/{environment}/rollback: the release before."""
    form = await _authorized_action(request)
    if isinstance(form, Response):
        return form
    services = _services(request)
    repository = f"{request.path_params['owner']}/{request.path_params['repo']}"
    environment = request.path_params["environment"]
    callback_url = services.settings.orchestrator_callback_url
    notice = "rollback_started"
    if "\x00" in repository + environment or callback_url is None:
        notice = "rollback_failed"
    else:

        async def plan() -> launch.Plan:
            return await launch.rollback_plan(
                services, repository, environment, None, callback_url=callback_url, metadata={}
            )

        try:
            started = await launch.start(services, None, "", plan)
            log.info(
                "operator started a rollback",
                extra={"deployment_id": started.record.id, "repository": repository},
            )
        except launch.NoRelease:
            notice = "no_release"
        except GitHubUnavailable as exc:
            log.warning("rollback not dispatched", extra={"error": str(exc)})
            notice = "rollback_failed"
    return RedirectResponse(_back(form.get("back"), notice), status_code=303)


routes = [
    Route("/", index, methods=["GET"]),
    Route(
        "/ui/repos/{owner}/{repo}/environments/{environment}/rollback",
        rollback,
        methods=["POST"],
    ),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/ui/deployments/{deployment_id}/resend", resend, methods=["POST"]),
    Route("/ui/deliveries/{guid}/redeliver", redeliver, methods=["POST"]),
]

__all__ = ["SESSION_COOKIE", "make_session_cookie", "read_session_cookie", "routes"]
