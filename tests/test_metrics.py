"""Prometheus metrics: names, labels, separate registries, bounded label values."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ghapp.metrics import ENDPOINT_TEMPLATES, OTHER, Metrics, endpoint_template

EXPECTED = {
    "ghapp_webhooks_received": "counter",
    "ghapp_webhook_signature_failures": "counter",
    "ghapp_webhook_handling_seconds": "histogram",
    "ghapp_deployments": "gauge",
    "ghapp_verdicts": "counter",
    "ghapp_dispatch_latency_seconds": "histogram",
    "ghapp_verdict_latency_seconds": "histogram",
    "ghapp_callback_attempts": "counter",
    "ghapp_callback_failures": "counter",
    "ghapp_outbox_depth": "gauge",
    "ghapp_github_api_calls": "counter",
    "ghapp_rate_limit_remaining": "gauge",
    "ghapp_polls": "counter",
}


def _families(metrics: Metrics) -> dict[str, object]:
    body, _ = metrics.render()
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def _samples(metrics: Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    body, _ = metrics.render()
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_render_has_every_metric_with_its_type() -> None:
    """All metrics are exposed, prefixed ghapp_, with the declared types."""
    metrics = Metrics()
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    assert "version=" in content_type
    families = {f.name: f.type for f in text_string_to_metric_families(body.decode())}
    for name, kind in EXPECTED.items():
        assert families.get(name) == kind, name
    assert all(name.startswith("ghapp_") for name in families)


def test_process_collectors_are_opt_in() -> None:
    """process_/python_ metrics only when asked for."""
    assert not any(n.startswith("python_") for n in _families(Metrics()))
    assert any(n.startswith("python_") for n in _families(Metrics(process=True)))


def test_instances_do_not_share_registries() -> None:
    """Two app instances (or tests) count separately and can both be created."""
    a, b = Metrics(), Metrics()
    a.webhook_signature_failures.inc()
    assert _samples(a, "ghapp_webhook_signature_failures_total") == {(): 1.0}
    assert _samples(b, "ghapp_webhook_signature_failures_total") == {(): 0.0}


def test_labels_and_helpers() -> None:
    """The helpers fill the declared labels."""
    m = Metrics()
    m.webhook_received("workflow_run", "completed", "handled")
    m.webhook_received("workflow_run", "completed", "handled")
    m.webhook_received("ping", None, "handled")
    m.verdict("success", None)
    m.verdict("failure", "timed_out")
    m.github_call("https://api.github.com/repos/acme/shop/actions/runs/5", 200)
    m.github_call("/repos/acme/shop/actions/runs/5/jobs?per_page=100", 304)
    m.github_call("/repos/acme/shop/actions/runs/5/jobs", None)
    m.callback_attempts.labels("delivered").inc()
    m.polls.labels("not_modified").inc()
    m.rate_limit_remaining.labels("42").set(4999)
    m.outbox_depth.set(3)
    m.dispatch_latency.observe(0.3)
    m.verdict_latency.observe(12)
    m.webhook_handling_seconds.observe(0.002)

    received = _samples(m, "ghapp_webhooks_received_total")
    assert received[(("action", "completed"), ("event", "workflow_run"), ("outcome", "handled"))]
    assert received[(("action", ""), ("event", "ping"), ("outcome", "handled"))] == 1
    verdicts = _samples(m, "ghapp_verdicts_total")
    assert verdicts[(("reason", "none"), ("status", "success"))] == 1
    assert verdicts[(("reason", "timed_out"), ("status", "failure"))] == 1
    calls = _samples(m, "ghapp_github_api_calls_total")
    assert calls == {
        (("endpoint", "/repos/{owner}/{repo}/actions/runs/{run_id}"), ("status", "200")): 1,
        (("endpoint", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs"), ("status", "304")): 1,
        (("endpoint", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs"), ("status", "error")): 1,
    }
    assert _samples(m, "ghapp_rate_limit_remaining") == {(("installation", "42"),): 4999}
    assert _samples(m, "ghapp_outbox_depth") == {(): 3}
    assert _samples(m, "ghapp_dispatch_latency_seconds_count") == {(): 1}
    assert _samples(m, "ghapp_verdict_latency_seconds_sum") == {(): 12}


def test_transition_moves_the_gauge() -> None:
    """transition() counts a deployment in exactly one state at a time."""
    m = Metrics()
    m.transition(None, "dispatched")
    m.transition("dispatched", "in_progress")
    m.transition(None, "dispatched")
    m.transition("in_progress", "completed")
    m.transition("completed", "completed")
    assert _samples(m, "ghapp_deployments") == {
        (("state", "dispatched"),): 1,
        (("state", "in_progress"),): 0,
        (("state", "completed"),): 1,
    }


@pytest.mark.parametrize(
    ("path", "template"),
    [
        (
            "/repos/acme/shop/actions/runs/123/jobs",
            "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs",
        ),
        ("/repos/acme/shop/actions/runs/123", "/repos/{owner}/{repo}/actions/runs/{run_id}"),
        ("/repos/acme/shop/actions/runs", "/repos/{owner}/{repo}/actions/runs"),
        (
            "/repos/acme/shop/actions/runs?event=workflow_dispatch&created=%3E2024",
            "/repos/{owner}/{repo}/actions/runs",
        ),
        (
            "/repos/acme/shop/actions/runs/9/logs",
            "/repos/{owner}/{repo}/actions/runs/{run_id}/logs",
        ),
        (
            "/repos/acme/shop/actions/runs/9/cancel",
            "/repos/{owner}/{repo}/actions/runs/{run_id}/cancel",
        ),
        (
            "/repos/acme/shop/actions/runs/9/attempts/2/jobs?per_page=100",
            "/repos/{owner}/{repo}/actions/runs/{run_id}/attempts/{attempt_number}/jobs",
        ),
        ("/repos/acme/shop/actions/jobs/77", "/repos/{owner}/{repo}/actions/jobs/{job_id}"),
        (
            "/repos/acme/shop/actions/jobs/77/logs",
            "/repos/{owner}/{repo}/actions/jobs/{job_id}/logs",
        ),
        (
            "/repos/acme/shop/actions/workflows/deploy.yml/dispatches",
            "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches",
        ),
        (
            "/repos/acme/shop/actions/workflows/161335/runs",
            "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs",
        ),
        (
            "/repos/acme/shop/actions/workflows/deploy.yml",
            "/repos/{owner}/{repo}/actions/workflows/{workflow_id}",
        ),
        (
            "/repos/acme/shop/actions/secrets/public-key",
            "/repos/{owner}/{repo}/actions/secrets/public-key",
        ),
        (
            "/repos/acme/shop/actions/secrets/DEPLOY_SSH_KEY",
            "/repos/{owner}/{repo}/actions/secrets/{secret_name}",
        ),
        (
            "/repos/acme/shop/check-runs/5/annotations",
            "/repos/{owner}/{repo}/check-runs/{check_run_id}/annotations",
        ),
        ("/repos/acme/shop/deployments?sha=abc123", "/repos/{owner}/{repo}/deployments"),
        (
            "https://api.github.com/repos/acme/shop/deployments/42/statuses",
            "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses",
        ),
        (
            "/repos/acme/shop/contents/.github/workflows/deploy.yml?ref=main",
            "/repos/{owner}/{repo}/contents/{path}",
        ),
        (
            "/repos/acme/shop/commits/release/1.2/check-runs",
            "/repos/{owner}/{repo}/commits/{ref}/check-runs",
        ),
        ("/repos/acme/shop/installation", "/repos/{owner}/{repo}/installation"),
        ("/repos/acme/shop", "/repos/{owner}/{repo}"),
        ("/repos/acme/shop/", "/repos/{owner}/{repo}"),
        ("/app", "/app"),
        (
            "/app/installations/99/access_tokens",
            "/app/installations/{installation_id}/access_tokens",
        ),
        ("/app/hook/deliveries?per_page=100&cursor=v1_x", "/app/hook/deliveries"),
        ("/app/hook/deliveries/123456", "/app/hook/deliveries/{delivery_id}"),
        ("/app/hook/deliveries/123456/attempts", "/app/hook/deliveries/{delivery_id}/attempts"),
        ("/app-manifests/abc123/conversions", "/app-manifests/{code}/conversions"),
        ("/rate_limit", "/rate_limit"),
        ("/installation/repositories", "/installation/repositories"),
        # GitHub Enterprise Server: the same API under /api/v3.
        (
            "https://ghe.example.com/api/v3/repos/acme/shop/actions/runs/1/jobs",
            "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs",
        ),
        (
            "http://127.0.0.1:8123/api/v3/app/installations/3/access_tokens",
            "/app/installations/{installation_id}/access_tokens",
        ),
        # GraphQL: github.com's endpoint, and GitHub Enterprise Server's (not under /api/v3).
        ("https://api.github.com/graphql", "/graphql"),
        ("https://ghe.example.com/api/graphql", "/graphql"),
    ],
)
def test_endpoint_template(path: str, template: str) -> None:
    """Concrete paths and URLs map onto their REST templates."""
    assert endpoint_template(path) == template


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/",
        "/repos",
        "/repos/acme",
        "/repos/acme/shop/issues/1",
        "/repos/acme/shop/actions/runs/1/jobs/extra",
        "/users/octocat",
        "/graphql/extra",
        "https://results-receiver.actions.githubusercontent.com/logs/abc?sig=xyz",
        "/../../etc/passwd",
        "http://[::1",  # not even a URL
        "/repos/acme/shop/actions/runs/1/" + "x" * 5000,
    ],
)
def test_unknown_paths_are_other(path: str) -> None:
    """Anything that is not a known REST path is `other`, never the raw path."""
    assert endpoint_template(path) == OTHER


def test_openapi_subset_paths_are_all_templated(reference: Path) -> None:
    """Every path of the reference OpenAPI subset has its template (an example of each maps)."""
    paths = json.loads((reference / "openapi-subset.json").read_text())["paths"]
    for templ in paths:
        assert templ in ENDPOINT_TEMPLATES, templ
        concrete = re.sub(r"\{[^}]+\}", "x1", templ)
        assert endpoint_template(concrete) == templ


def test_label_cardinality_stays_bounded() -> None:
    """Thousands of distinct paths, events and actions make a handful of series."""
    m = Metrics()
    for i in range(2000):
        m.github_call(f"/repos/o{i}/r{i}/actions/runs/{i}/jobs", 200)
        m.github_call(f"/nonsense/{i}/path", 404)
        m.github_call(f"/repos/o/r/actions/runs/{i}", f"weird-{i}")
        m.webhook_received(f"event_{i}", f"action_{i}", "bad_signature")
    calls = _samples(m, "ghapp_github_api_calls_total")
    assert len(calls) == 3
    assert calls[(("endpoint", OTHER), ("status", "404"))] == 2000
    assert calls[(("endpoint", "/repos/{owner}/{repo}/actions/runs/{run_id}"), ("status", "error"))]
    received = _samples(m, "ghapp_webhooks_received_total")
    assert received == {(("action", OTHER), ("event", OTHER), ("outcome", "bad_signature")): 2000}
