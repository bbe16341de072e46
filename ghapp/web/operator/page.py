"""The operator page at `/`: recent deployments and webhook deliveries, resend and redeliver.

Server-rendered HTML (Jinja2, autoescaped), no external assets; one inline script (allowed by the
CSP nonce) moves the rows of running deployments from their event streams. Each deployment has
its own page (`deployment_page`). Access needs the
orchestrator's bearer token, either as an `Authorization` header or through a session: the login
form trades the token for a signed, HttpOnly, SameSite=Strict cookie (`sessions` beside this).
Actions, sign-out included, are POST forms that also carry a per-session CSRF token; no form is
read before the request is known to be authorised (the sign-in form aside, 16 KiB at most).
"""

from __future__ import annotations

import logging
import math
import re
import secrets
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import gidgethub
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ghapp.core import signin
from ghapp.github.client import GitHubUnavailable
from ghapp.github.deliveries import HookDeliveries
from ghapp.store import IdempotencyConflict
from ghapp.store.gate import public_decision
from ghapp.web.authz import audit
from ghapp.web.http import stored
from ghapp.web.operator import deployment_page, releases_section
from ghapp.web.operator.access import (
    authorized_action,
    back,
    bearer_ok,
    login,
    login_page,
    logout,
    page_actor,
    services_of,
    signed_in,
)
from ghapp.web.operator.render import render
from ghapp.work import launch

if TYPE_CHECKING:
    from ghapp.web.services import Services

log = logging.getLogger("ghapp.operator")

STATES = ("dispatched", "in_progress", "completed")
# The rollback form's idempotency key, as the page makes it (`secrets.token_urlsafe`).
FORM_KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")
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


async def index(request: Request) -> Response:
    """GET /: the operator page, or the login form without a session or token."""
    services = services_of(request)
    settings = services.settings
    session = await signed_in(request)
    if session is None and not bearer_ok(request, settings):
        return login_page(request)
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
        deployment_page.scrubbed(record)
        for record in await services.store.recent(repository=repository, state=state, limit=limit)
    ]
    # A browser opens few connections to one server at a time: the newest running ones only.
    live = [d.id for d in deployments if d.state != "completed"][:LIVE_STREAMS]
    deliveries = await _recent_deliveries(services, _bounded(params.get("deliveries"), 20))
    notice = NOTICES.get(params.get("notice", ""))
    here = request.url.path + (("?" + request.url.query) if request.url.query else "")
    releases = await releases_section.context(services, repository)
    gate_decisions = [
        public_decision(doc)
        for doc in await services.store.gate_decisions(repository=repository, limit=20)
    ]
    return render(
        request,
        "index.html",
        {
            **releases,
            "gate_decisions": gate_decisions,
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
            # Each drawing of the page gives its rollback forms a fresh key.
            "rollback_key": secrets.token_urlsafe(16),
            "back": here,
            "session": session is not None,
            "now": datetime.now(UTC),
            "live": live,
        },
        script=True,
    )


async def resend(request: Request) -> Response:
    """POST /ui/deployments/{id}/resend: queue a completed deployment's callback again."""
    form = await authorized_action(request)
    if isinstance(form, Response):
        return form
    services = services_of(request)
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
    await audit(request, "deployment.callback_resend", target=deployment_id, outcome=notice,
                who=page_actor(request))
    return RedirectResponse(back(form.get("back"), notice), status_code=303)


async def redeliver(request: Request) -> Response:
    """POST /ui/deliveries/{guid}/redeliver: ask GitHub to send that webhook again."""
    form = await authorized_action(request)
    if isinstance(form, Response):
        return form
    services = services_of(request)
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
    await audit(request, "delivery.redeliver", target=guid, outcome=notice,
                who=page_actor(request))
    return RedirectResponse(back(form.get("back"), notice), status_code=303)


async def rollback(request: Request) -> Response:
    """POST /ui/repos/{owner}/{repo}/environments/{environment}/rollback: the release before."""
    form = await authorized_action(request)
    if isinstance(form, Response):
        return form
    services = services_of(request)
    repository = f"{request.path_params['owner']}/{request.path_params['repo']}"
    environment = request.path_params["environment"]
    callback_url = services.settings.orchestrator_callback_url
    notice = "rollback_started"
    if "\x00" in repository + environment or callback_url is None:
        notice = "rollback_failed"
    else:

        async def plan() -> launch.Plan:
            made = await launch.rollback_plan(
                services, repository, environment, None, callback_url=callback_url, metadata={}
            )
            made.requested_by = page_actor(request).removeprefix("token:")
            return made

        # The form's own key (made when the page was drawn): a double submit is one rollback.
        form_key = form.get("idempotency_key") or ""
        key = f"ui-rollback:{form_key}" if FORM_KEY.fullmatch(form_key) else None
        body_hash = launch.request_hash("ui-rollback", repository, environment)
        try:
            started = await launch.start(services, key, body_hash, plan)
            log.info(
                "operator started a rollback",
                extra={"deployment_id": started.record.id, "repository": repository},
            )
        except launch.NoRelease:
            notice = "no_release"
        except (launch.InProgress, IdempotencyConflict):
            notice = "rollback_started"  # the first submit's rollback is the one
        except GitHubUnavailable as exc:
            log.warning("rollback not dispatched", extra={"error": str(exc)})
            notice = "rollback_failed"
    await audit(request, "rollback.create", target=f"{repository} {environment}",
                outcome=notice, who=page_actor(request))
    return RedirectResponse(back(form.get("back"), notice), status_code=303)


async def _github_start(request: Request) -> Response:
    """GET /auth/github: to GitHub's sign-in (its code loads at the first sign-in)."""
    from ghapp.web.operator import github_signin

    return await github_signin.start(request)


async def _github_callback(request: Request) -> Response:
    """GET /auth/github/callback: GitHub's answer to the sign-in."""
    from ghapp.web.operator import github_signin

    return await github_signin.callback(request)


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
    *deployment_page.routes,
    Route(signin.START_PATH, _github_start, methods=["GET"]),
    Route(signin.CALLBACK_PATH, _github_callback, methods=["GET"]),
]
