"""`/openapi.json`: a valid OpenAPI 3.1 document, and the live API keeps to it (schemathesis)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.routing import Route

from ghapp.simulator.stack import Stack
from ghapp.web.openapi import build_spec, has_route

# Bounded fuzzing: enough to find a 5xx on an odd body, short enough for every CI run.
MAX_EXAMPLES = 30
REQUEST_TIMEOUT = 10.0
FUZZ_TIMEOUT = 90.0

DESIGN_OPERATIONS = {
    ("post", "/api/v1/deployments"),
    ("get", "/api/v1/deployments"),
    ("get", "/api/v1/deployments/{deployment_id}"),
    ("get", "/api/v1/deployments/{deployment_id}/events"),
    ("post", "/api/v1/deployments/{deployment_id}/cancel"),
    ("post", "/api/v1/deployments/{deployment_id}/callback"),
    ("post", "/api/v1/repos/{owner}/{repo}/deploy-key"),
    ("get", "/api/v1/repos/{owner}/{repo}/environments"),
    ("get", "/api/v1/repos/{owner}/{repo}/environments/{environment}/releases"),
    ("post", "/api/v1/repos/{owner}/{repo}/environments/{environment}/rollback"),
    ("get", "/api/v1/stats"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/v1/deployments/{deployment_id}/report"),
    ("post", "/api/github/webhooks"),
}


def _operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in spec["paths"].items() for method in item}


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()


@pytest.mark.parametrize("deliveries", [False, True])
def test_the_document_is_valid_openapi_3_1(deliveries: bool) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    spec = build_spec(deliveries=deliveries)
    validator.validate(spec)
    assert spec["openapi"].startswith("3.1")
    expected = set(DESIGN_OPERATIONS)
    if deliveries:
        expected |= {("get", "/api/v1/deliveries"), ("get", "/api/v1/deliveries/{delivery_id}")}
    assert _operations(spec) == expected
    for ref in _refs(spec):
        assert ref.removeprefix("#/components/schemas/") in spec["components"]["schemas"], ref


def test_the_orchestrator_api_is_described_completely() -> None:
    spec = build_spec()
    paths = spec["paths"]
    create = paths["/api/v1/deployments"]["post"]
    assert set(create["responses"]) == {"200", "202", "400", "401", "409", "413", "422", "503"}
    assert "Retry-After" in create["responses"]["503"]["headers"]
    assert create["parameters"][0]["name"] == "Idempotency-Key"
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/DeploymentRequest"}
    listing = paths["/api/v1/deployments"]["get"]
    params = {p["name"]: p["schema"] for p in listing["parameters"]}
    assert params["state"]["enum"] == ["dispatched", "in_progress", "completed"]
    assert (params["limit"]["minimum"], params["limit"]["maximum"]) == (1, 500)
    for path, item in paths.items():
        for operation in item.values():
            secured = operation["security"] == [{"bearer": []}]
            assert secured == path.startswith("/api/v1/"), path
            if secured:
                assert "401" in operation["responses"], path
    schemas = spec["components"]["schemas"]
    request = schemas["DeploymentRequest"]
    assert request["additionalProperties"] is False
    assert re.fullmatch(request["properties"]["repository"]["pattern"], "acme/shop")
    verdict = schemas["Verdict"]["properties"]
    assert "dispatch_rejected" in verdict["reason"]["anyOf"][0]["enum"]
    assert schemas["DeployKeyCreated"]["required"] == ["secret_name", "public_key", "fingerprint"]
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_the_webhook_path_follows_the_setting() -> None:
    spec = build_spec(webhook_path="/hooks/github")
    assert "/hooks/github" in spec["paths"]
    assert "/api/github/webhooks" not in spec["paths"]
    assert spec["paths"]["/hooks/github"]["post"]["security"] == []


def _app_routes(stack: Stack) -> list[Any]:
    assert stack.server is not None
    routes: list[Any] = stack.server.server.config.app.routes
    return routes


async def test_openapi_json_describes_every_api_route(stack: Stack) -> None:
    assert stack.session is not None
    async with stack.session.get(f"{stack.base_url}/openapi.json") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        spec = await response.json()
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(spec)
    described = _operations(spec)
    for route in _app_routes(stack):
        if isinstance(route, Route) and route.path.startswith("/api/"):
            for method in route.methods or ():
                if method != "HEAD":
                    assert (method.lower(), route.path) in described, route.path
    assert (("get", "/api/v1/deliveries") in described) == has_route(
        _app_routes(stack), "/api/v1/deliveries"
    )


@dataclass
class Finding:
    """One check that failed, with the request that made it fail."""

    operation: str
    mode: str
    checks: str
    report: str

    def __str__(self) -> str:
        return f"[{self.mode}] {self.operation}: {self.checks}\n{self.report}"


def _fuzz(spec: dict[str, Any], base_url: str, token: str, skip: set[str]) -> list[Finding]:
    """Run schemathesis over every routed /api/v1 operation; the findings (sync: a thread)."""
    import requests
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.failures import FailureGroup
    from schemathesis.generation import GenerationMode
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
    ]
    schema = schemathesis.openapi.from_dict(spec)
    findings: dict[tuple[str, str, str], Finding] = {}
    auth = {"Authorization": f"Bearer {token}"}
    http = requests.Session()

    def fuzz_one(operation: Any, label: str, mode: str, strategy: Any) -> None:
        @given(case=strategy)
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            try:
                case.call_and_validate(
                    base_url=base_url,
                    session=http,
                    headers=auth,
                    checks=checks,
                    timeout=REQUEST_TIMEOUT,
                )
            except (Exception, FailureGroup) as exc:
                # Collected, not raised: one run reports every distinct problem.
                failures = exc.exceptions if isinstance(exc, FailureGroup) else (exc,)
                titles = tuple(sorted(getattr(f, "title", type(f).__name__) for f in failures))
                findings.setdefault(
                    (label, mode, titles),
                    Finding(label, mode, ", ".join(titles), str(exc).strip()[:3000]),
                )

        run()

    with http:
        for result in schema.get_all_operations():
            operation = result.ok()
            label = f"{operation.method.upper()} {operation.path}"
            if not operation.path.startswith("/api/v1/") or label in skip:
                continue
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzz_one(operation, label, mode.value, operation.as_strategy(generation_mode=mode))
    return list(findings.values())


async def test_schemathesis_finds_nothing(stack: Stack) -> None:
    pytest.importorskip("schemathesis")
    assert stack.session is not None
    async with stack.session.get(f"{stack.base_url}/openapi.json") as response:
        spec = await response.json()
    routes = _app_routes(stack)
    # Operations DESIGN.md fixes but this build does not route yet are reported, not fuzzed.
    skip = {
        f"{method.upper()} {path}"
        for method, path in _operations(spec)
        if path.startswith("/api/v1/") and not has_route(routes, path, method.upper())
    }
    # A stream of a running deployment does not end by itself; tests/test_events.py covers it.
    skip.add("GET /api/v1/deployments/{deployment_id}/events")
    token = stack.settings.orchestrator_token or ""
    async with asyncio.timeout(FUZZ_TIMEOUT):
        findings = await asyncio.to_thread(_fuzz, spec, stack.base_url, token, skip)
    if skip - {"GET /api/v1/deployments/{deployment_id}/events"}:
        print("not routed in this build, not fuzzed:", ", ".join(sorted(skip)))
    assert not findings, f"{len(findings)} schemathesis finding(s):\n\n" + "\n\n".join(
        str(f) for f in findings
    )


def test_the_verdict_describes_its_cause_and_report() -> None:
    spec = build_spec(deliveries=False)
    schemas = spec["components"]["schemas"]
    verdict = schemas["Verdict"]["properties"]
    assert {"cause", "report"} <= set(verdict)
    cause = schemas["Cause"]
    assert set(cause["required"]) >= {"category", "retryable", "rule", "hint"}
    assert cause["properties"]["category"]["enum"] == [
        "code", "configuration", "infrastructure", "transient", "cancelled", "unknown"
    ]
    report = spec["paths"]["/api/v1/deployments/{deployment_id}/report"]["get"]
    assert "text/markdown" in report["responses"]["200"]["content"]
    assert set(report["responses"]) == {"200", "401", "404"}
