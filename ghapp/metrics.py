"""Prometheus metrics, each `Metrics()` in its own registry so app instances and tests don't clash.

Every label takes values from a closed set (or one bounded by the installations), so a caller or a
sender of forged webhooks cannot grow the number of series: GitHub paths become templates, unknown
events and actions become `other`.
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import urlsplit

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

__all__ = ["ENDPOINT_TEMPLATES", "OTHER", "Metrics", "endpoint_template"]

OTHER = "other"

# The GitHub REST paths ghapp calls (those of github-reference/openapi-subset.json) and a few
# neighbours; the order matters only where one template is a prefix of another (first wins).
ENDPOINT_TEMPLATES: tuple[str, ...] = (
    "/app",
    "/app/installations",
    "/app/installations/{installation_id}",
    "/app/installations/{installation_id}/access_tokens",
    "/app/hook/config",
    "/app/hook/deliveries",
    "/app/hook/deliveries/{delivery_id}",
    "/app/hook/deliveries/{delivery_id}/attempts",
    "/app-manifests/{code}/conversions",
    "/installation/repositories",
    "/rate_limit",
    "/meta",
    "/repos/{owner}/{repo}",
    "/repos/{owner}/{repo}/installation",
    "/repos/{owner}/{repo}/contents/{path}",
    "/repos/{owner}/{repo}/actions/workflows",
    "/repos/{owner}/{repo}/actions/workflows/{workflow_id}",
    "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches",
    "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs",
    "/repos/{owner}/{repo}/actions/runs",
    "/repos/{owner}/{repo}/actions/runs/{run_id}",
    "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs",
    "/repos/{owner}/{repo}/actions/runs/{run_id}/logs",
    "/repos/{owner}/{repo}/actions/runs/{run_id}/cancel",
    "/repos/{owner}/{repo}/actions/runs/{run_id}/force-cancel",
    "/repos/{owner}/{repo}/actions/runs/{run_id}/rerun",
    "/repos/{owner}/{repo}/actions/runs/{run_id}/rerun-failed-jobs",
    "/repos/{owner}/{repo}/actions/runs/{run_id}/attempts/{attempt_number}",
    "/repos/{owner}/{repo}/actions/runs/{run_id}/attempts/{attempt_number}/jobs",
    "/repos/{owner}/{repo}/actions/runs/{run_id}/attempts/{attempt_number}/logs",
    "/repos/{owner}/{repo}/actions/jobs/{job_id}",
    "/repos/{owner}/{repo}/actions/jobs/{job_id}/logs",
    "/repos/{owner}/{repo}/actions/secrets",
    "/repos/{owner}/{repo}/actions/secrets/public-key",
    "/repos/{owner}/{repo}/actions/secrets/{secret_name}",
    "/repos/{owner}/{repo}/check-runs/{check_run_id}",
    "/repos/{owner}/{repo}/check-runs/{check_run_id}/annotations",
    "/repos/{owner}/{repo}/commits/{ref}/check-runs",
    "/repos/{owner}/{repo}/deployments",
    "/repos/{owner}/{repo}/deployments/{deployment_id}",
    "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses",
    "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses/{status_id}",
    # GitHub's GraphQL API (GitHub Enterprise Server's is /api/graphql, see endpoint_template).
    "/graphql",
)

# A literal path segment must match exactly; `{x}` is one segment; `{path}` and `{ref}` may hold
# slashes (a file in a folder, a branch such as `release/1.2`).
_MULTI_SEGMENT = {"path", "ref"}


def _compile(template: str) -> re.Pattern[str]:
    parts = []
    for segment in template.strip("/").split("/"):
        if segment.startswith("{") and segment.endswith("}"):
            parts.append(".+" if segment[1:-1] in _MULTI_SEGMENT else "[^/]+")
        else:
            parts.append(re.escape(segment))
    return re.compile("/" + "/".join(parts) if parts != [""] else "/")


# Literal templates (no placeholder) first, so `/actions/secrets/public-key` is never taken for
# `/actions/secrets/{secret_name}`; then the rest in declaration order.
_COMPILED: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (_compile(t), t) for t in sorted(ENDPOINT_TEMPLATES, key=lambda t: "{" in t)
)
_GHES_PREFIX = "/api/v3"


def endpoint_template(path: str) -> str:
    """The templated GitHub REST path of a URL or path (`/repos/{owner}/{repo}/...`), or `other`."""
    try:
        parts = urlsplit(path)
    except ValueError:
        return OTHER
    route = parts.path or "/"
    # GitHub Enterprise Server serves the same API under /api/v3.
    if route.startswith(_GHES_PREFIX + "/"):
        route = route[len(_GHES_PREFIX) :]
    elif route == "/api/graphql":
        route = "/graphql"
    if len(route) > 1:
        route = route.rstrip("/")
    for pattern, template in _COMPILED:
        if pattern.fullmatch(route):
            return template
    return OTHER


# Webhook label values kept as they are; anything else is `other` (the headers are the sender's).
_KNOWN_EVENTS = frozenset(
    {
        "ping",
        "workflow_run",
        "workflow_job",
        "workflow_dispatch",
        "deployment",
        "deployment_status",
        "deployment_protection_rule",
        "deployment_review",
        "installation",
        "installation_repositories",
        "installation_target",
        "github_app_authorization",
        "check_run",
        "check_suite",
        "push",
        "meta",
    }
)
_KNOWN_ACTIONS = frozenset(
    {
        "",
        "requested",
        "in_progress",
        "completed",
        "queued",
        "waiting",
        "created",
        "deleted",
        "suspend",
        "unsuspend",
        "new_permissions_accepted",
        "added",
        "removed",
        "renamed",
        "revoked",
        "rerequested",
        "requested_action",
        "approved",
        "rejected",
    }
)
_STATUS = re.compile(r"^[1-5][0-9][0-9]$")

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# From the completed webhook to the callback: log download and, on bad days, callback retries.
_VERDICT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0)
# Webhook handlers answer within milliseconds (slow work runs after the answer).
# A deploy takes minutes: dispatch to verdict.
_DURATION_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
_HANDLING_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _task_count() -> float:
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:  # no running loop (a scrape outside the app)
        return 0.0


def _label(value: str | None, known: frozenset[str]) -> str:
    value = value or ""
    return value if value in known else OTHER


class Metrics:
    """ghapp's metrics, registered in a registry of their own (`self.registry`)."""

    def __init__(self, *, process: bool = False) -> None:
        """Create every metric; `process=True` adds the standard process_/python_ collectors."""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        if process:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

        self._received: dict[tuple[str, str, str], Counter] = {}
        self.webhooks_received = Counter(
            "ghapp_webhooks_received",
            "Webhook deliveries received, by event, action and outcome "
            "(handled, ignored, duplicate, bad_signature, bad_request, too_large, error).",
            ["event", "action", "outcome"],
            registry=r,
        )
        self.webhook_signature_failures = Counter(
            "ghapp_webhook_signature_failures",
            "Webhook deliveries refused for a bad or missing X-Hub-Signature-256.",
            registry=r,
        )
        self.webhook_handling_seconds = Histogram(
            "ghapp_webhook_handling_seconds",
            "Time from receiving a webhook to answering it.",
            buckets=_HANDLING_BUCKETS,
            registry=r,
        )
        # A gauge rather than a counter: the server sets it from the store at start-up and moves
        # it on each transition (see `transition`), so it shows deployments per state now.
        self.deployments = Gauge(
            "ghapp_deployments",
            "Deployments known to this process, by state (dispatched, in_progress, completed).",
            ["state"],
            registry=r,
        )
        self.verdicts = Counter(
            "ghapp_verdicts",
            "Verdicts reached, by status (success, failure) and reason (none when success).",
            ["status", "reason"],
            registry=r,
        )
        self.dispatch_latency = Histogram(
            "ghapp_dispatch_latency_seconds",
            "Time to get a dispatch accepted (or refused) by GitHub, retries included.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.verdict_latency = Histogram(
            "ghapp_verdict_latency_seconds",
            "Time from the run's completed webhook (or poll) to the callback being delivered.",
            buckets=_VERDICT_BUCKETS,
            registry=r,
        )
        self.callback_attempts = Counter(
            "ghapp_callback_attempts",
            "Callback POSTs, by outcome (delivered, http_error, timeout, connection_error).",
            ["outcome"],
            registry=r,
        )
        self.callback_failures = Counter(
            "ghapp_callback_failures",
            "Callbacks given up after the retry budget (callback.state = failed).",
            registry=r,
        )
        self.outbox_depth = Gauge(
            "ghapp_outbox_depth",
            "Callbacks waiting to be delivered.",
            registry=r,
        )
        self.github_api_calls = Counter(
            "ghapp_github_api_calls",
            "GitHub REST calls, by templated endpoint and HTTP status (error: no answer).",
            ["endpoint", "status"],
            registry=r,
        )
        self.rate_limit_remaining = Gauge(
            "ghapp_rate_limit_remaining",
            "X-RateLimit-Remaining of the latest GitHub answer, by installation (app: the JWT).",
            ["installation"],
            registry=r,
        )
        # Read at scrape time (in the event loop): a leak of tasks shows as growth over hours.
        self.asyncio_tasks = Gauge(
            "ghapp_asyncio_tasks",
            "asyncio tasks alive in this process (its event loop) at scrape time.",
            registry=r,
        )
        self.asyncio_tasks.set_function(_task_count)
        self.polls = Counter(
            "ghapp_polls",
            "Fallback polls of a run, by outcome (changed, not_modified, error).",
            ["outcome"],
            registry=r,
        )

        # Releases and statistics: no repository or environment label (unbounded sets); the
        # per-environment figures are GET /api/v1/stats.
        self.deployment_duration = Histogram(
            "ghapp_deployment_duration_seconds",
            "Time from dispatch to verdict of deployments that had a run, by kind (deploy, "
            "rollback) and verdict status.",
            ["kind", "status"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.rollbacks = Counter(
            "ghapp_rollbacks",
            "Rollback deployments dispatched (by hand or on_failure: rollback).",
            registry=r,
        )
        self.concurrency_rejected = Counter(
            "ghapp_concurrency_rejected",
            "Deployment requests refused (409) by concurrency: reject.",
            registry=r,
        )
        self.superseded = Counter(
            "ghapp_superseded_cancels",
            "Unfinished deployments cancelled by a newer one (concurrency: cancel_previous).",
            registry=r,
        )

        self.gate_decisions = Counter(
            "ghapp_gate_decisions",
            "Deployment protection rule requests the gate decided, by origin (ghapp, foreign) "
            "and decision (approved, rejected, held).",
            ["origin", "decision"],
            registry=r,
        )

    def webhook_received(self, event: str | None, action: str | None, outcome: str) -> None:
        """Count one delivery; unknown event or action names are counted as `other`."""
        key = (_label(event, _KNOWN_EVENTS), _label(action, _KNOWN_ACTIONS), outcome)
        # Every delivery passes here: skip `labels()`'s checks and lock once a series exists.
        child = self._received.get(key)
        if child is None:
            child = self._received[key] = self.webhooks_received.labels(*key)
        child.inc()

    def github_call(self, path: str, status: int | str | None) -> None:
        """Count one GitHub call by its URL or path (templated) and status (None: no answer)."""
        code = str(status) if status is not None else "error"
        self.github_api_calls.labels(
            endpoint_template(path), code if _STATUS.match(code) else "error"
        ).inc()

    def transition(self, old_state: str | None, new_state: str) -> None:
        """Move one deployment from `old_state` (None: new) to `new_state` in `deployments`."""
        if old_state == new_state:
            return
        if old_state is not None:
            self.deployments.labels(old_state).dec()
        self.deployments.labels(new_state).inc()

    def verdict(self, status: str, reason: str | None) -> None:
        """Count one verdict; a success has reason `none`."""
        self.verdicts.labels(status, reason or "none").inc()

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of this registry and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
