"""The operator page of one deployment, `/deployments/{id}`: what was asked and by whom, its
jobs and steps on a time line, the verdict and its report, the failing step's excerpt, the
callback's attempts; live while it runs.

The live part is one fragment (`/deployments/{id}/live`, the same template the page includes):
the page's one script follows the deployment's event stream and, on each event, puts the
fragment drawn afresh by the server in place, so the time line, the report and the excerpt are
rendered in one place only. Same sign-in as `/` (see `access`)."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ghapp.core.deploy_record import DeploymentRecord
from ghapp.core.models import Deployment
from ghapp.core.times import utcnow
from ghapp.core.untrusted import clean
from ghapp.web.http import stored
from ghapp.web.operator import timeline
from ghapp.web.operator.access import bearer_ok, login_page, services_of, signed_in
from ghapp.web.operator.render import render, safe_url, security_headers

if TYPE_CHECKING:
    from ghapp.store.callbacks import CallbackRecord
    from ghapp.web.operator.sessions import Session
    from ghapp.web.services import Services

NOTICES = {
    "resent": ("ok", "Callback queued again; it goes out with the same X-Ghapp-Delivery."),
    "not_completed": ("error", "That deployment has no verdict yet: nothing to resend."),
    "csrf": ("error", "The form was stale; try again."),
}


def scrubbed(record: DeploymentRecord) -> Deployment:
    """The public resource with every text cleaned (names, logs, messages come from GitHub)."""
    return Deployment.model_validate(_clean_all(record.public().model_dump()))


def _clean_all(value: Any) -> Any:
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {key: _clean_all(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clean_all(item) for item in value]
    return value


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def _run_started(record: DeploymentRecord) -> datetime | None:
    """GitHub's start of the run, else its first job's."""
    if record.run_started_at is not None:
        return record.run_started_at
    jobs = record.progress.jobs if record.progress else []
    return min((job.started_at for job in jobs if job.started_at is not None), default=None)


def durations(record: DeploymentRecord, now: datetime) -> list[dict[str, Any]]:
    """Queued (asked to run started), running (GitHub's run), verdict and total, in seconds."""
    started = _run_started(record)
    ran = record.run_completed_at
    done = record.completed_at
    open_end = None if done is not None else now
    return [
        {
            "name": "queued",
            "what": "from the request to the run's start",
            "seconds": _seconds(record.created_at, started or open_end),
            "going": started is None and done is None,
        },
        {
            "name": "running",
            "what": "GitHub's run, start to completion",
            "seconds": _seconds(started, ran or open_end),
            "going": started is not None and ran is None and done is None,
        },
        {
            "name": "verdict",
            "what": "from the run's completion to the verdict",
            "seconds": _seconds(ran, done or open_end),
            "going": ran is not None and done is None,
        },
        {
            "name": "total",
            "what": "from the request to the verdict",
            "seconds": _seconds(record.created_at, done or now),
            "going": done is None,
        },
    ]


def timestamps(
    record: DeploymentRecord, callbacks: list[CallbackRecord]
) -> list[tuple[str, Any]]:
    """The moments of the deployment, in order, those not reached yet left out."""
    delivered = [c.delivered_at for c in callbacks if c.delivered_at is not None]
    moments: list[tuple[str, Any]] = [
        ("requested", record.created_at),
        ("dispatched", record.dispatched_at),
        ("run started", _run_started(record)),
        ("run completed", record.run_completed_at),
        ("verdict", record.completed_at),
        ("callback delivered", max(delivered) if delivered else None),
        ("last change", record.updated_at),
    ]
    return [(name, moment) for name, moment in moments if moment is not None]


def commit_url(record: DeploymentRecord) -> str | None:
    """The commit's page on GitHub, from the run's own address (the same host, GHES too)."""
    html_url = record.run.html_url if record.run else None
    marker = f"/{record.repository}/actions/runs/"
    if not record.head_sha or not html_url or marker not in html_url:
        return None
    base = html_url.split(marker, 1)[0]
    return safe_url(f"{base}/{record.repository}/commit/{record.head_sha}")


async def _context(
    request: Request, services: Services, record: DeploymentRecord, session: Session | None
) -> dict[str, Any]:
    now = utcnow()
    deployment = scrubbed(record)
    # The last error may quote the orchestrator's answer: remote text like GitHub's.
    callbacks = [
        replace(c, last_error=clean(c.last_error)) if c.last_error else c
        for c in await services.store.callbacks_of(record.id)
    ]
    jobs = deployment.progress.jobs if deployment.progress else []
    here = f"/deployments/{record.id}"
    return {
        "d": deployment,
        "head_sha": clean(record.head_sha) if record.head_sha else None,
        "commit_url": commit_url(record),
        # The token's name (or `github:LOGIN`); null for automatic rollbacks and old rows.
        "requested_by": record.requested_by,
        "superseded_by": record.superseded_by,
        "durations": durations(record, now),
        "timestamps": timestamps(record, callbacks),
        "timeline_svg": timeline.draw(jobs, now),
        "callbacks": callbacks,
        "csrf": session.csrf if session else "",
        "back": here,
        "session": session is not None,
        "now": now,
        "live": record.state != "completed",
        "notice": NOTICES.get(request.query_params.get("notice", "")),
    }


async def deployment(request: Request) -> Response:
    """GET /deployments/{id}: the page of one deployment (the sign-in form without access)."""
    services = services_of(request)
    session = await signed_in(request)
    if session is None and not bearer_ok(request, services.settings):
        return login_page(request, status=401, after=request.url.path)
    record = await stored(services, request.path_params["deployment_id"])
    if record is None:
        return render(
            request,
            "not_found.html",
            {"what": "deployment", "session": session is not None,
             "csrf": session.csrf if session else ""},
            404,
        )
    context = await _context(request, services, record, session)
    return render(request, "deployment.html", context, script=context["live"])


async def deployment_live(request: Request) -> Response:
    """GET /deployments/{id}/live: the page's changing part alone, for its script."""
    services = services_of(request)
    session = await signed_in(request)
    if session is None and not bearer_ok(request, services.settings):
        return _plain("sign in first\n", 401)
    record = await stored(services, request.path_params["deployment_id"])
    if record is None:
        return _plain("no such deployment\n", 404)
    context = await _context(request, services, record, session)
    return render(request, "deployment_live.html", context)


def _plain(text: str, status: int) -> Response:
    headers = security_headers(secrets.token_urlsafe(16))
    return Response(text, status, media_type="text/plain", headers=headers)


routes = [
    Route("/deployments/{deployment_id}", deployment, methods=["GET"]),
    Route("/deployments/{deployment_id}/live", deployment_live, methods=["GET"]),
]
