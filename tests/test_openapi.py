"""`/openapi.json`: a valid OpenAPI 3.1 document, and the live API keeps to it (schemathesis)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from starlette.routing import Route

from ghapp.core.models import DeploymentRequest
from ghapp.simulator.stack import Stack
from ghapp.web.http import callback_allowed
from ghapp.web.openapi import build_spec, has_route
from ghapp.web.openapi.schemas import callback_pattern

# Bounded fuzzing: enough to find a 5xx on an odd body, short enough for every CI run
# (about 10 s a database alone; ten times that beside the rest of the suite on two slow cores).
MAX_EXAMPLES = 15
REQUEST_TIMEOUT = 10.0
FUZZ_TIMEOUT = 180.0

DESIGN_OPERATIONS = {
    ("post", "/api/v1/deployments"),
    ("get", "/api/v1/deployments"),
    ("get", "/api/v1/deployments/{deployment_id}"),
    ("get", "/api/v1/deployments/{deployment_id}/events"),
    ("post", "/api/v1/deployments/{deployment_id}/cancel"),
    ("post", "/api/v1/deployments/{deployment_id}/callback"),
    ("post", "/api/v1/repos/{owner}/{repo}/deploy-key"),
    ("get", "/api/v1/check/{owner}/{repo}"),
    ("get", "/api/v1/repos/{owner}/{repo}/environments"),
    ("get", "/api/v1/repos/{owner}/{repo}/environments/{environment}/releases"),
    ("post", "/api/v1/repos/{owner}/{repo}/environments/{environment}/rollback"),
    ("get", "/api/v1/stats"),
    ("get", "/api/v1/gate/decisions"),
    ("post", "/api/v1/gate/decisions/{id}/approve"),
    ("post", "/api/v1/gate/decisions/{id}/reject"),
    ("get", "/api/v1/gate/preview"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/v1/deployments/{deployment_id}/report"),
    ("post", "/api/github/webhooks"),
    # Who may do what (docs/access.md): admin only.
    ("get", "/api/v1/tokens"),
    ("post", "/api/v1/tokens"),
    ("get", "/api/v1/tokens/{name}"),
    ("delete", "/api/v1/tokens/{name}"),
    ("get", "/api/v1/audit"),
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
    assert set(create["responses"]) == {
        "200",
        "202",
        "400",
        "401",
        "408",
        "409",
        "413",
        "422",
        "503",
    }
    assert "Retry-After" in create["responses"]["503"]["headers"]
    assert create["parameters"][0]["name"] == "Idempotency-Key"
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/DeploymentRequest"}
    listing = paths["/api/v1/deployments"]["get"]
    params = {p["name"]: p["schema"] for p in listing["parameters"]}
    assert params["state"]["enum"] == ["dispatched", "in_progress", "completed"]
    assert (params["limit"]["minimum"], params["limit"]["maximum"]) == (1, 200)
    assert re.fullmatch(params["repository"]["pattern"], "acme/shop")
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


# A deployment's report is 404 until it failed (documented): schemathesis' check that a resource
# it just created can be read does not apply to it.
# Every check is on through the file, not `--checks all`: a check named on the command line
# overrides an operation's `enabled = false`, and a deployment without a failure report is a
# documented 404, not a created resource gone missing.
SCHEMATHESIS_CONFIG = """
[checks]
enabled = true

[[operations]]
include-path = "/api/v1/deployments/{deployment_id}/report"
checks.ensure_resource_availability.enabled = false
"""


@pytest.mark.timeout(FUZZ_TIMEOUT + 60)
async def test_schemathesis_finds_nothing(stack: Stack, tmp_path: Path) -> None:
    """`schemathesis run --checks all`: positive and negative cases, the stateful phase too."""
    pytest.importorskip("schemathesis")
    assert stack.session is not None
    async with stack.session.get(f"{stack.base_url}/openapi.json") as response:
        spec = await response.json()
    routes = _app_routes(stack)
    # Operations the contract fixes but this build does not route yet are reported, not fuzzed.
    skip = sorted(
        path
        for method, path in _operations(spec)
        if path.startswith("/api/v1/") and not has_route(routes, path, method.upper())
    )
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{stack.base_url}/openapi.json",
        "--mode",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "1",
        "--workers",
        "1",
        "--request-timeout",
        str(REQUEST_TIMEOUT),
        "--suppress-health-check",
        "all",
        "--include-path-regex",
        "^/api/v1/",
        "-H",
        f"Authorization: Bearer {stack.settings.orchestrator_token}",
        "--no-color",
    ]
    # A stream of a running deployment does not end by itself; tests/test_events.py covers it.
    for path in [*skip, "/api/v1/deployments/{deployment_id}/events"]:
        command += ["--exclude-path", path]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    async with asyncio.timeout(FUZZ_TIMEOUT):
        output, _ = await process.communicate()
    report = output.decode(errors="replace")
    if skip:
        print("not routed in this build, not fuzzed:", ", ".join(skip))
    assert process.returncode == 0, report[-8000:]
    # Every phase ran, the stateful one included.
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in report, report[-4000:]


def _accepted(**fields: object) -> bool:
    try:
        DeploymentRequest.model_validate({"repository": "acme/shop", **fields})
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("repository", value)
        for value in ("acme/shop", "a.b/c_d-e", "../..", "acme/..", "./x", "a/b/c", "a" * 101 + "/")
    ]
    + [("workflow", v) for v in ("deploy.yml", "d.yaml", "123", "9" * 19, "../x.yml", "x")]
    + [("ref", v) for v in ("main", "feature/x", "v1.0", "", "a b", "a\x85b", "a\u3000", "\x00")]
    + [
        ("callback_url", v)
        for v in (
            "https://orch.example/cb",
            "http://orch.example:8080/cb?x=1",
            "http://u:p@orch.example/cb",
            "http://orch.example:99999/",
            "http://orch.example/c b",
            "ftp://orch.example/",
        )
    ],
)
def test_the_published_patterns_are_the_servers_rules(field: str, value: str) -> None:
    properties = build_spec()["components"]["schemas"]["DeploymentRequest"]["properties"]
    schema = properties[field].get("anyOf", [properties[field]])[0]
    published = re.fullmatch(schema["pattern"], value) is not None
    published = published and len(value) <= schema.get("maxLength", len(value))
    assert published == _accepted(**{field: value}), (field, value)


def test_the_served_callback_pattern_is_this_servers_rule() -> None:
    default = "https://orch.example/cb"
    pattern = callback_pattern((), default)
    for url in ("https://orch.example/x", "https://ORCH.example:443/cb", "https://orch.example"):
        assert re.fullmatch(pattern, url) and callback_allowed(url, [], default), url
    for url in ("http://orch.example/cb", "https://orch.example:8443/", "https://u@orch.example/"):
        assert not re.fullmatch(pattern, url), url
    hosts = ("orch.example", "other.example:8443")
    pattern = callback_pattern(hosts, default)
    for url in ("http://orch.example:1234/", "https://other.example:8443/cb"):
        assert re.fullmatch(pattern, url) and callback_allowed(url, list(hosts), default), url
    assert not re.fullmatch(pattern, "https://other.example/cb")


def test_the_verdict_describes_its_cause_and_report() -> None:
    spec = build_spec(deliveries=False)
    schemas = spec["components"]["schemas"]
    verdict = schemas["Verdict"]["properties"]
    assert {"cause", "report"} <= set(verdict)
    cause = schemas["Cause"]
    assert set(cause["required"]) >= {"category", "retryable", "rule", "hint"}
    assert cause["properties"]["category"]["enum"] == [
        "code", "configuration", "infrastructure", "transient", "cancelled", "unknown", "policy"
    ]
    report = spec["paths"]["/api/v1/deployments/{deployment_id}/report"]["get"]
    assert "text/markdown" in report["responses"]["200"]["content"]
    assert set(report["responses"]) == {"200", "401", "404"}
