"""The OpenAPI description of the orchestrator's deployment routes (see ghapp.web.api) and
the deploy-key route."""

from __future__ import annotations

from typing import Any

from ghapp.core import validation
from ghapp.store.metadata_filter import MAX_FILTERS as MAX_METADATA_FILTERS
from ghapp.web import api, http
from ghapp.web.openapi.parts import (
    DEPLOYMENT_ID,
    DEPLOYMENT_LINKS,
    LATE,
    NOT_FOUND,
    RETRY_AFTER,
    UNAUTHORIZED,
    describe,
    json_answer,
    ref,
)


def orchestrator_paths() -> dict[str, Any]:
    """The deployment routes and the deploy-key route."""
    create = describe(
        "createDeployment",
        "Deploy a repository: dispatch its workflow; the verdict comes as a callback",
        {
            "202": {
                **json_answer(
                    "Deployment",
                    "GitHub accepted the dispatch (state dispatched), or refused it (state "
                    "completed, verdict reason dispatch_rejected; its callback is sent too), or "
                    "its answer is late (state dispatched, run null: recorded, followed in the "
                    "background, never dispatched twice); always within 5 s",
                ),
                "links": DEPLOYMENT_LINKS,
            },
            "200": json_answer(
                "Deployment",
                "replay: this Idempotency-Key was used with the same body; nothing dispatched",
            ),
            "400": json_answer("ErrorBody", "the body is not JSON"),
            "401": UNAUTHORIZED,
            "408": LATE,
            "409": json_answer(
                "ErrorBody",
                "this Idempotency-Key was used with another body (error "
                "idempotency_conflict), or the first request with it is still being answered "
                "(error in_progress: send it again), or concurrency reject found an "
                "unfinished deployment of the environment (error conflict, deployment_id "
                "names it; nothing dispatched)",
            ),
            "413": json_answer("ErrorBody", "the body is over 1 MiB"),
            "422": json_answer(
                "ErrorBody",
                "the body breaks the schema, or callback_url's host is not allowed; "
                "`errors` lists the fields",
            ),
            "503": json_answer(
                "ErrorBody",
                "no dispatch can have reached GitHub (connection refused, 5xx answers to "
                "the lookups, lookups unanswered within 5 s; error github_unavailable, "
                "`message` names what failed and which host), or ghapp's database is "
                "unavailable (error store_unavailable); nothing was dispatched: retry with "
                "the same Idempotency-Key. A 5xx answer to the dispatch itself is a 202",
                headers=RETRY_AFTER,
            ),
        },
        tag="deployments",
        parameters=[
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "the same key with the same body returns the same deployment",
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 200,
                    "pattern": http.IDEMPOTENCY_KEY_PATTERN,
                },
            },
            {
                "name": "traceparent",
                "in": "header",
                "required": False,
                "description": "W3C Trace Context: when tracing is on, the deployment's trace "
                "is a child of this span (an invalid value starts a new trace)",
                # Any value is accepted: one that is not `00-<32 hex>-<16 hex>-<2 hex>` is
                # ignored, as W3C Trace Context asks.
                "schema": {"type": "string"},
            },
        ],
        requestBody={
            "required": True,
            "content": {"application/json": {"schema": ref("DeploymentRequest")}},
        },
    )
    listing = describe(
        "listDeployments",
        "List deployments, newest first",
        {
            "200": json_answer("DeploymentList", "the deployments"),
            "401": UNAUTHORIZED,
            "422": json_answer(
                "ErrorBody",
                "a query parameter is out of range, or more than "
                f"{MAX_METADATA_FILTERS} metadata filters",
            ),
        },
        tag="deployments",
        description="`metadata.KEY=VALUE` query parameters (at most "
        f"{MAX_METADATA_FILTERS} in one request; more answer 422) keep the deployments whose "
        "metadata has KEY set to VALUE.",
        parameters=[
            {
                "name": "repository",
                "in": "query",
                "schema": {
                    "type": "string",
                    "pattern": validation.REPOSITORY_PATTERN,
                    "maxLength": 201,
                },
            },
            {
                "name": "state",
                "in": "query",
                "schema": {"type": "string", "enum": ["dispatched", "in_progress", "completed"]},
            },
            {
                "name": "limit",
                "in": "query",
                "schema": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": api.LIST_MAX,
                    "default": 50,
                },
            },
        ],
    )
    read = describe(
        "getDeployment",
        "Read one deployment",
        {"200": json_answer("Deployment", "the deployment"), "401": UNAUTHORIZED, "404": NOT_FOUND},
        tag="deployments",
        parameters=[DEPLOYMENT_ID],
    )
    report = describe(
        "getDeploymentReport",
        "The failure report (verdict.report) as Markdown, to hand to a developer or an agent",
        {
            "200": {
                "description": "the report: at most 16 KiB of Markdown",
                "content": {"text/markdown": {"schema": {"type": "string", "maxLength": 16384}}},
            },
            "401": UNAUTHORIZED,
            "404": json_answer(
                "ErrorBody",
                "no such deployment (error not_found), or no failure report: not completed, "
                "or a success (error no_report)",
            ),
        },
        tag="deployments",
        parameters=[DEPLOYMENT_ID],
    )
    cancel = describe(
        "cancelDeployment",
        "Cancel the deployment's run on GitHub; the verdict (cancelled) follows as usual",
        {
            "202": json_answer("Deployment", "GitHub took the cancellation"),
            "401": UNAUTHORIZED,
            "404": NOT_FOUND,
            "409": json_answer(
                "ErrorBody",
                "already completed (error already_completed), or the run is not known yet "
                "(error run_unknown: try again in a few seconds)",
            ),
            "502": json_answer("ErrorBody", "GitHub refused the cancellation"),
            "503": json_answer("ErrorBody", "GitHub could not be reached", headers=RETRY_AFTER),
        },
        tag="deployments",
        parameters=[DEPLOYMENT_ID],
    )
    resend = describe(
        "resendCallback",
        "Send the verdict's callback again (same X-Ghapp-Delivery)",
        {
            "202": json_answer("Deployment", "the callback is queued again"),
            "401": UNAUTHORIZED,
            "404": NOT_FOUND,
            "409": json_answer("ErrorBody", "the deployment has no verdict yet"),
        },
        tag="deployments",
        parameters=[DEPLOYMENT_ID],
    )
    stream = describe(
        "streamDeploymentEvents",
        "Follow a deployment live: Server-Sent Events, each the whole Deployment",
        {
            "200": {
                "description": "an event stream: the first event is a snapshot (`state`, or "
                "`completed` for a finished deployment); then `state` (state or run changed), "
                "`progress` (a job or step changed), `completed` (the verdict; the stream "
                "ends). Each event's `data` is the Deployment as one JSON line, its `id` "
                "increases for the deployment, also across reconnects. `: keep-alive` comment "
                "lines come at least every 15 s.",
                "content": {
                    "text/event-stream": {
                        "schema": {"type": "string"},
                        "example": 'retry: 2000\nid: 3\nevent: progress\ndata: {"id": '
                        '"dep_0123456789abcdef01234567", "state": "in_progress", ...}\n\n',
                    }
                },
            },
            "401": UNAUTHORIZED,
            "404": NOT_FOUND,
            "503": json_answer(
                "ErrorBody",
                "this process has MAX_STREAMS event streams open (error too_many_streams)",
                headers=RETRY_AFTER,
            ),
        },
        tag="deployments",
        description="Authorised by the bearer token or by the operator page's session "
        "cookie. A client that reconnects sends `Last-Event-ID`; it gets a snapshot with a "
        "higher id, so nothing is lost by missing events. Each process serves at most "
        "MAX_STREAMS streams at once (default 1,000).",
        parameters=[
            DEPLOYMENT_ID,
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "description": "the id of the last event received (EventSource sends it); "
                "anything but ASCII digits is ignored",
                "schema": {"type": "string"},
            },
        ],
    )
    deploy_key = describe(
        "createDeployKey",
        "Generate an SSH deploy key: the private half becomes the Actions secret "
        "DEPLOY_SSH_KEY, the public half is returned",
        {
            "201": json_answer(
                "DeployKeyCreated", "the key pair exists; the private key is not kept"
            ),
            "401": UNAUTHORIZED,
            "404": json_answer(
                "ErrorBody", "no such repository, or the App is not installed on it"
            ),
            "422": json_answer("ErrorBody", "owner or repo is not a valid name"),
            "502": json_answer(
                "ErrorBody",
                "GitHub refused to store the secret (often: the installation lacks the "
                "secrets: write permission); `github_status` says what GitHub answered",
            ),
            "503": json_answer("ErrorBody", "GitHub could not be reached", headers=RETRY_AFTER),
        },
        tag="repositories",
        parameters=[
            {
                "name": name,
                "in": "path",
                "required": True,
                # GitHub's own rule for owner and repository names.
                "schema": {"type": "string", "pattern": validation.NAME_PATTERN, "maxLength": 100},
                "example": example,
            }
            for name, example in (("owner", "acme"), ("repo", "shop"))
        ],
    )
    return {
        "/api/v1/deployments": {"post": create, "get": listing},
        "/api/v1/deployments/{deployment_id}": {"get": read},
        "/api/v1/deployments/{deployment_id}/events": {"get": stream},
        "/api/v1/deployments/{deployment_id}/report": {"get": report},
        "/api/v1/deployments/{deployment_id}/cancel": {"post": cancel},
        "/api/v1/deployments/{deployment_id}/callback": {"post": resend},
        "/api/v1/repos/{owner}/{repo}/deploy-key": {"post": deploy_key},
    }
