"""The webhook endpoint: verify, deduplicate, and move the deployment the event is about."""

from __future__ import annotations

import hmac
import logging
import time
from typing import TYPE_CHECKING

from pydantic import ValidationError
from pydantic_core import from_json
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ghapp.core import correlation
from ghapp.core.deploys import DeploymentRecord
from ghapp.core.signatures import hub_signature
from ghapp.logsetup import bind
from ghapp.store.base import StoreUnavailable
from ghapp.web.webhook_handlers import (
    HANDLERS,
    Answer,
    just_created,
    workflow_job_of,
    workflow_run_of,
)
from ghapp.web.webhook_payloads import PAYLOAD, RunHead, job_head, run_head
from ghapp.work.delivery_log import record_webhook

if TYPE_CHECKING:
    from ghapp.web.services import Services

log = logging.getLogger("ghapp.webhooks")
MAX_WEBHOOK_BODY = 25 * 1024 * 1024


def verify_signature(body: bytes, signature: str | None, secrets: list[str]) -> bool:
    """Whether X-Hub-Signature-256 matches the body under any configured secret."""
    if not signature or not signature.startswith("sha256="):
        return False
    # As gidgethub's validate_event checks it, without its per-call parsing of the header and
    # digest name: every delivery passes here. compare_digest: no timing hint.
    given = signature.encode("ascii", "replace")
    return any(
        hmac.compare_digest(hub_signature(body, secret).encode(), given) for secret in secrets
    )


def _worth_a_closer_look(head: RunHead) -> bool:
    """Whether a dispatched run no deployment watches may yet be one's (see `_workflow_run`)."""
    return correlation.may_name_deployment(head.title) or just_created(head.created_at)


async def receive(request: Request) -> Response:
    """POST $WEBHOOK_PATH: verify, parse, handle; every delivery is counted."""
    services: Services = request.app.state.services
    started = time.perf_counter()
    # The body as read, for the delivery log (kept here: an exception may end `_receive`).
    received: list[bytes] = []
    try:
        answer = await _receive(request, services, received)
    except Exception as exc:
        # GitHub then lists the delivery as failed (and redeliver-failed sends it again); the
        # poller recovers the verdict meanwhile.
        if StoreUnavailable.covers(exc):
            log.warning("webhook not stored: the database is unavailable",
                        extra={"error": str(exc) or type(exc).__name__})
            answer = Answer(503, "store_unavailable",
                             message="ghapp's database is unavailable; deliver again later")
        else:
            log.exception("webhook handling failed")
            answer = Answer(500, "error", message="ghapp could not handle this delivery")
    services.metrics.webhook_received(answer.event, answer.action, answer.outcome)
    services.metrics.webhook_handling_seconds.observe(time.perf_counter() - started)
    if services.delivery_log is not None:
        record_webhook(
            services.delivery_log,
            request.headers,
            received[0] if received else None,
            outcome=answer.outcome,
            action=answer.action,
            status=answer.status_code,
            started=started,
        )
    return answer


async def _receive(request: Request, services: Services, received: list[bytes]) -> Answer:
    """The checks of docs/reference/http-api.md ("GitHub's webhooks"), in its order."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_WEBHOOK_BODY:
        return Answer(413, "too_large", message="webhook bodies are limited to 25 MiB")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_WEBHOOK_BODY:
                return Answer(413, "too_large", message="webhook bodies are limited to 25 MiB")
    except ClientDisconnect:
        # Gone, or cut by the body deadline (the protocol answered 408).
        return Answer(408, "timeout", message="the body did not arrive in time")
    # A body usually comes in one piece: no copy then.
    raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    received.append(raw)  # for the delivery log
    if not verify_signature(
        raw, request.headers.get("x-hub-signature-256"), services.settings.webhook_secret
    ):
        services.metrics.webhook_signature_failures.inc()
        log.warning("webhook signature rejected")
        return Answer(401, "bad_signature", message="X-Hub-Signature-256 missing or wrong")
    event = request.headers.get("x-github-event")
    delivery_id = request.headers.get("x-github-delivery")
    if not event or not delivery_id:
        return Answer(400, "bad_request", message="X-GitHub-Event and X-GitHub-Delivery needed")
    if len(delivery_id) > 100 or len(event) > 100:
        return Answer(400, "bad_request", message="X-GitHub-Event or X-GitHub-Delivery too long")
    found: DeploymentRecord | None = None
    if event == "workflow_run" and (head := run_head(raw)) is not None:
        # ghapp only ever dispatches, so runs started by pushes and PRs are not ours; nor is a
        # dispatched run no deployment watches, unless it may yet become one's.
        if head.run_id is not None:
            found = await services.store.by_run(head.run_id)
        if found is None and (head.run_id is None or not _worth_a_closer_look(head)):
            answer = Answer(200, "not_ours")
            answer.event, answer.action = event, head.action
            return answer
    elif event == "workflow_job" and (job := job_head(raw)) is not None:
        action, run_id = job
        # A job's run is ours only once its deployment is stored: one indexed lookup decides.
        if run_id is not None:
            found = await services.store.by_run(run_id)
        if found is None:
            answer = Answer(200, "not_ours")
            answer.event, answer.action = event, action
            return answer
    try:
        payload = from_json(raw)
    except ValueError:
        return Answer(400, "bad_request", message="the body is not JSON")
    if not isinstance(payload, dict):
        return Answer(400, "bad_request", message="the body is not a JSON object")
    handler = HANDLERS.get(event)
    if handler is not None:
        try:
            PAYLOAD.validate_python(payload)
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"])
            return Answer(
                400, "bad_request", message=f"impossible field {where}: {problem['msg']}"
            )
    if handler is None:
        answer = Answer(202, "ignored", event=event)
    else:
        with bind(delivery_id=delivery_id):
            if found is not None and event == "workflow_job":
                answer = await workflow_job_of(services, payload, delivery_id, found)
            elif found is not None:
                answer = await workflow_run_of(services, payload, delivery_id, found)
            else:
                answer = await handler(services, payload, delivery_id)
    answer.event = event
    answer.action = payload.get("action") if isinstance(payload.get("action"), str) else None
    return answer


