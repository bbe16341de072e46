"""The webhook endpoint: verify, deduplicate, and move the deployment the event is about."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

from gidgethub import ValidationFailure
from gidgethub.sansio import validate_event
from pydantic import Field, TypeAdapter, ValidationError
from pydantic_core import from_json, to_json
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from typing_extensions import TypedDict

from ghapp.core import correlation
from ghapp.core.deploys import DeploymentRecord, EnvironmentObserved
from ghapp.core.progress import JobObserved, job_of
from ghapp.logsetup import bind
from ghapp.work.delivery_log import record_webhook
from ghapp.work.engine import utcnow
from ghapp.work.poller import run_event

if TYPE_CHECKING:
    from ghapp.web.services import Services

log = logging.getLogger("ghapp.webhooks")
MAX_WEBHOOK_BODY = 25 * 1024 * 1024


def verify_signature(body: bytes, signature: str | None, secrets: list[str]) -> bool:
    """Whether X-Hub-Signature-256 matches the body under any configured secret."""
    if not signature or not signature.startswith("sha256="):
        return False
    for secret in secrets:
        try:
            validate_event(body, signature=signature, secret=secret)
        except ValidationFailure:
            continue
        return True
    return False


def early_run_fields(run: dict[str, Any]) -> dict[str, Any]:
    """What a run event needs of a workflow_run payload, to keep for a deployment not stored yet."""
    keys = (
        "id",
        "run_attempt",
        "status",
        "conclusion",
        "html_url",
        "head_sha",
        "run_started_at",
        "updated_at",
    )
    return {key: run.get(key) for key in keys}


EARLY_RUN_WINDOW = timedelta(seconds=60)


def _just_created(created: Any) -> bool:
    if not isinstance(created, str):
        return False
    try:
        when = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return False
    return utcnow() - when < EARLY_RUN_WINDOW


class Answer(JSONResponse):
    """A webhook answer that remembers its outcome, for metrics and the delivery log."""

    def __init__(self, status: int, outcome: str, **extra: Any) -> None:
        super().__init__({"outcome": outcome, **extra}, status)
        self.outcome = outcome
        self.event: str | None = None
        self.action: str | None = None

    def render(self, content: Any) -> bytes:
        """The JSON body; a bare `{"outcome": ...}` (most answers) is encoded once per outcome."""
        if len(content) == 1:
            outcome = content["outcome"]
            body = _BARE_BODIES.get(outcome)
            if body is None:
                body = _BARE_BODIES[outcome] = super().render(content)
            return body
        return super().render(content)


# Keyed by ghapp's own outcome names (a closed set).
_BARE_BODIES: dict[str, bytes] = {}


_answer = Answer


# A run id, attempt, installation id...: GitHub's are positive and fit a signed 64-bit integer
# (what PostgreSQL's BIGINT holds); anything else is not GitHub's.
_Id = Annotated[int, Field(strict=True, ge=0, lt=2**63)]
_Text = Annotated[str | None, Field(strict=True)]


class _Run(TypedDict, total=False):
    """What the handlers read of a `workflow_run` object; other fields are not looked at."""

    id: _Id
    run_attempt: _Id | None
    workflow_id: _Id | None
    status: _Text
    conclusion: _Text
    html_url: _Text
    head_sha: _Text
    head_branch: _Text
    event: _Text
    display_title: _Text
    created_at: _Text
    path: _Text


class _RunFields(TypedDict, total=False):
    id: _Id
    event: Any
    display_title: Any
    created_at: Any


class _PayloadHead(TypedDict, total=False):
    action: Any
    workflow_run: _RunFields


# Most of an organisation's workflow_run stream is CI runs ghapp did not dispatch; to see that,
# a few fields suffice. Validating against this shape skips the rest of the 20 KiB body without
# building it into Python objects (about a third of the cost of parsing it all). A run id that
# is not GitHub's sends the body to the closer look (and its 400); a run found to be one of
# ghapp's has all its fields checked there (`_PAYLOAD`).
_HEAD = TypeAdapter(_PayloadHead)


class _Installation(TypedDict, total=False):
    id: _Id


class _Repository(TypedDict, total=False):
    full_name: _Text


class _DeploymentStatus(TypedDict, total=False):
    state: _Text
    environment_url: _Text


class _Payload(TypedDict, total=False):
    """The fields of a delivery the handlers read, with the types GitHub sends."""

    action: _Text
    workflow_run: _Run | None
    installation: _Installation | None
    repository: _Repository | None
    deployment_status: _DeploymentStatus | None


# A signed delivery whose fields have impossible types or values is answered 400, not 500.
_PAYLOAD = TypeAdapter(_Payload)


class RunHead(NamedTuple):
    """What the webhook path reads of a workflow_run body before deciding to parse it all."""

    action: str | None
    run_id: int | None  # None: not a dispatched run, so not one of ghapp's
    title: str
    created_at: Any


def _is_run_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def run_head(raw: bytes) -> RunHead | None:
    """The few fields of a workflow_run body that say whether it can be ghapp's; None: look closer.

    None when the body is not the usual shape (not JSON, not an object, `workflow_run` not an
    object...): the caller parses it whole, to answer 400 or handle it as usual.
    """
    try:
        head = _HEAD.validate_json(raw)
    except ValidationError:
        return None
    run = head.get("workflow_run")
    if run is None:
        return None
    action = head.get("action")
    run_id = run.get("id")
    dispatched = run.get("event") == "workflow_dispatch" and _is_run_id(run_id)
    title = run.get("display_title")
    return RunHead(
        action=action if isinstance(action, str) else None,
        run_id=run_id if dispatched else None,
        title=title if isinstance(title, str) else "",
        created_at=run.get("created_at"),
    )


class _JobFields(TypedDict, total=False):
    run_id: Any


class _JobPayloadHead(TypedDict, total=False):
    action: Any
    workflow_job: _JobFields


# Several workflow_job deliveries come per workflow_run one, nearly all of runs ghapp did not
# dispatch: the run id says so, from a 10 KB body read no further than that.
_JOB_HEAD = TypeAdapter(_JobPayloadHead)


def job_head(raw: bytes) -> tuple[str | None, int | None] | None:
    """(action, run id or None) of a workflow_job body; None: not the usual shape, look closer."""
    try:
        head = _JOB_HEAD.validate_json(raw)
    except ValidationError:
        return None
    job = head.get("workflow_job")
    if job is None:
        return None
    action = head.get("action")
    run_id = job.get("run_id")
    return (action if isinstance(action, str) else None, run_id if _is_run_id(run_id) else None)


def _worth_a_closer_look(head: RunHead) -> bool:
    """Whether a dispatched run no deployment watches may yet be one's (see `_workflow_run`)."""
    return correlation.may_name_deployment(head.title) or _just_created(head.created_at)


async def receive(request: Request) -> Response:
    """POST $WEBHOOK_PATH: verify, parse, handle; every delivery is counted."""
    services: Services = request.app.state.services
    started = time.perf_counter()
    try:
        answer = await _receive(request, services)
    except Exception:
        # Say 500 so GitHub lists the delivery as failed (and redeliver-failed sends it
        # again); the poller recovers the verdict meanwhile.
        log.exception("webhook handling failed")
        answer = _answer(500, "error", message="ghapp could not handle this delivery")
    services.metrics.webhook_received(answer.event, answer.action, answer.outcome)
    services.metrics.webhook_handling_seconds.observe(time.perf_counter() - started)
    if services.delivery_log is not None:
        record_webhook(
            services.delivery_log,
            request.headers,
            getattr(request.state, "webhook_body", None),
            outcome=answer.outcome,
            action=answer.action,
            status=answer.status_code,
            started=started,
        )
    return answer


async def _receive(request: Request, services: Services) -> Answer:
    """DESIGN.md's checks, in DESIGN.md's order."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_WEBHOOK_BODY:
        return _answer(413, "too_large", message="webhook bodies are limited to 25 MiB")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_WEBHOOK_BODY:
                return _answer(413, "too_large", message="webhook bodies are limited to 25 MiB")
    except ClientDisconnect:
        # Gone, or cut by the body deadline (the protocol answered 408).
        return _answer(408, "timeout", message="the body did not arrive in time")
    # A body usually comes in one piece: no copy then.
    raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    request.state.webhook_body = raw  # for the delivery log
    if not verify_signature(
        raw, request.headers.get("x-hub-signature-256"), services.settings.webhook_secret
    ):
        services.metrics.webhook_signature_failures.inc()
        log.warning("webhook signature rejected")
        return _answer(401, "bad_signature", message="X-Hub-Signature-256 missing or wrong")
    event = request.headers.get("x-github-event")
    delivery_id = request.headers.get("x-github-delivery")
    if not event or not delivery_id:
        return _answer(400, "bad_request", message="X-GitHub-Event and X-GitHub-Delivery needed")
    if len(delivery_id) > 100 or len(event) > 100:
        return _answer(400, "bad_request", message="X-GitHub-Event or X-GitHub-Delivery too long")
    found: DeploymentRecord | None = None
    if event == "workflow_run" and (head := run_head(raw)) is not None:
        # ghapp only ever dispatches, so runs started by pushes and PRs are not ours; nor is a
        # dispatched run no deployment watches, unless it may yet become one's.
        if head.run_id is not None:
            found = await services.store.by_run(head.run_id)
        if found is None and (head.run_id is None or not _worth_a_closer_look(head)):
            answer = _answer(200, "not_ours")
            answer.event, answer.action = event, head.action
            return answer
    elif event == "workflow_job" and (job := job_head(raw)) is not None:
        action, run_id = job
        # A job's run is ours only once its deployment is stored: one indexed lookup decides.
        if run_id is not None:
            found = await services.store.by_run(run_id)
        if found is None:
            answer = _answer(200, "not_ours")
            answer.event, answer.action = event, action
            return answer
    try:
        payload = from_json(raw)
    except ValueError:
        return _answer(400, "bad_request", message="the body is not JSON")
    if not isinstance(payload, dict):
        return _answer(400, "bad_request", message="the body is not a JSON object")
    handler = HANDLERS.get(event)
    if handler is not None:
        try:
            _PAYLOAD.validate_python(payload)
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"])
            return _answer(
                400, "bad_request", message=f"impossible field {where}: {problem['msg']}"
            )
    if handler is None:
        answer = _answer(202, "ignored", event=event)
    else:
        with bind(delivery_id=delivery_id):
            if found is not None and event == "workflow_job":
                answer = await _workflow_job_of(services, payload, delivery_id, found)
            elif found is not None:
                answer = await _workflow_run_of(services, payload, delivery_id, found)
            else:
                answer = await handler(services, payload, delivery_id)
    answer.event = event
    answer.action = payload.get("action") if isinstance(payload.get("action"), str) else None
    return answer


async def _ping(services: Services, payload: dict[str, Any], delivery_id: str) -> Answer:
    log.info("ping received", extra={"delivery_id": delivery_id, "hook_id": payload.get("hook_id")})
    return _answer(200, "pong", zen=payload.get("zen"))


def _remember_installation(services: Services, payload: dict[str, Any]) -> None:
    installation = payload.get("installation") or {}
    repository = (payload.get("repository") or {}).get("full_name")
    if installation.get("id") and repository:
        services.github.remember_installation(repository, int(installation["id"]))


async def _workflow_run(services: Services, payload: dict[str, Any], delivery_id: str) -> Answer:
    run = payload.get("workflow_run") or {}
    if run.get("event") != "workflow_dispatch" or not _is_run_id(run.get("id")):
        return _answer(200, "not_ours")
    record = await services.store.by_run(run["id"])
    if record is None:
        repository = (payload.get("repository") or {}).get("full_name")
        # A dispatch whose run GitHub did not name (GHES): this may be it.
        if repository and await services.poller.on_unknown_run(run, repository):
            return _answer(200, "run_identified")
        # Or a run so fast that its webhook beat the storing of its deployment: note it, and
        # look again, so that whichever of the two comes second applies it. Only a run
        # created moments ago can be in that race.
        if not _just_created(run.get("created_at")):
            return _answer(200, "not_ours")
        await services.store.note_early_run(run["id"], to_json(early_run_fields(run)).decode())
        record = await services.store.by_run(run["id"])
        if record is None:
            return _answer(200, "not_ours")
    return await _workflow_run_of(services, payload, delivery_id, record)


async def _workflow_run_of(
    services: Services, payload: dict[str, Any], delivery_id: str, record: DeploymentRecord
) -> Answer:
    """A workflow_run delivery about the run `record` watches."""
    run = payload["workflow_run"]
    _remember_installation(services, payload)
    if delivery_id in services.recent_deliveries:
        return _answer(200, "duplicate")
    event = run_event(
        {**run, "status": run.get("status") or payload.get("action") or ""}, utcnow()
    )
    transition = await services.engine.apply(record, event, delivery_id=delivery_id)
    services.recent_deliveries[delivery_id] = True
    if transition is None:
        return _answer(200, "duplicate")
    log.info(
        "workflow_run %s handled",
        payload.get("action"),
        extra={
            "delivery_id": delivery_id,
            "deployment_id": record.id,
            "run_id": run["id"],
            "repository": record.repository,
            "state": transition.record.state,
        },
    )
    return _answer(200, "handled", deployment_id=record.id, state=transition.record.state)


async def _deployment_status(
    services: Services, payload: dict[str, Any], delivery_id: str
) -> Answer:
    run = payload.get("workflow_run") or {}
    status = payload.get("deployment_status") or {}
    if not _is_run_id(run.get("id")):
        return _answer(200, "not_ours")
    record = await services.store.by_run(run["id"])
    if record is None:
        return _answer(200, "not_ours")
    if delivery_id in services.recent_deliveries:
        return _answer(200, "duplicate")
    event = EnvironmentObserved(
        run_id=run["id"],
        state=str(status.get("state") or ""),
        environment_url=status.get("environment_url") or None,
        at=utcnow(),
    )
    transition = await services.engine.apply(record, event, delivery_id=delivery_id)
    services.recent_deliveries[delivery_id] = True
    if transition is None:
        return _answer(200, "duplicate")
    return _answer(200, "handled", deployment_id=record.id, state=transition.record.state)


async def _workflow_job(services: Services, payload: dict[str, Any], delivery_id: str) -> Answer:
    job = payload.get("workflow_job")
    if not isinstance(job, dict) or not _is_run_id(job.get("run_id")):
        return _answer(200, "not_ours")
    record = await services.store.by_run(job["run_id"])
    if record is None:
        return _answer(200, "not_ours")
    return await _workflow_job_of(services, payload, delivery_id, record)


async def _workflow_job_of(
    services: Services, payload: dict[str, Any], delivery_id: str, record: DeploymentRecord
) -> Answer:
    """A workflow_job delivery about a job of the run `record` watches."""
    job = payload.get("workflow_job")
    parsed = job_of(job) if isinstance(job, dict) else None
    attempt = job.get("run_attempt", 1) if isinstance(job, dict) else None
    if parsed is None or not isinstance(attempt, int) or isinstance(attempt, bool):
        return _answer(400, "bad_request", message="workflow_job has fields of impossible types")
    _remember_installation(services, payload)
    if delivery_id in services.recent_deliveries:
        return _answer(200, "duplicate")
    assert isinstance(job, dict)
    event = JobObserved(run_id=job["run_id"], attempt=attempt, jobs=(parsed,), at=utcnow())
    transition = await services.engine.apply(record, event, delivery_id=delivery_id)
    services.recent_deliveries[delivery_id] = True
    if transition is None:
        return _answer(200, "duplicate")
    return _answer(200, "handled", deployment_id=record.id, state=transition.record.state)


async def _noted(services: Services, payload: dict[str, Any], delivery_id: str) -> Answer:
    _remember_installation(services, payload)
    return _answer(200, "noted")


HANDLERS = {
    "ping": _ping,
    "workflow_run": _workflow_run,
    "deployment_status": _deployment_status,
    "workflow_job": _workflow_job,
    "installation": _noted,
    "installation_repositories": _noted,
}
