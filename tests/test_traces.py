"""OpenTelemetry traces of a deployment, over real HTTP: an OTLP/HTTP receiver (decoding the
protobuf `ExportTraceServiceRequest`) collects one deployment's spans; the tree, GitHub's times,
the attributes, the caller's parent, and the `traceparent` on the callback and in the dispatch
inputs. With the variables unset, nothing of OpenTelemetry is imported."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from trace_waterfall import waterfall_svg

from ghapp.core.tracecontext import begin, parse_traceparent, pipeline_result
from ghapp.simulator import Job, Step, Workflow
from ghapp.simulator.stack import Stack, free_port, settings_env
from ghapp.work.tracing import wanted

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


@dataclass
class Collector:
    """An OTLP/HTTP receiver: POST /v1/traces, protobuf bodies, spans kept decoded."""

    spans: list[dict[str, Any]] = field(default_factory=list)
    runner: web.AppRunner | None = None
    url: str = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", self._export)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def _export(self, request: web.Request) -> web.Response:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        assert request.content_type == "application/x-protobuf"
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        for resource_spans in message.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append({
                        "name": span.name,
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent": span.parent_span_id.hex() or None,
                        "start": span.start_time_unix_nano,
                        "end": span.end_time_unix_nano,
                        "attributes": {a.key: _value(a.value) for a in span.attributes},
                        "status": span.status.code,
                        "service": resource.get("service.name"),
                    })
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    async def wait_for(self, name: str, timeout: float = 10.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                found = [s for s in self.spans if s["name"] == name]
                if found:
                    return found[0]
                await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


def traced_workflow() -> Workflow:
    inputs = {
        "environment": {"type": "string", "default": "production", "required": False},
        "ghapp_id": {"type": "string", "required": False},
        "traceparent": {"type": "string", "required": False},
    }
    steps = [Step("Build", command="make build"), Step("Deploy", command="./deploy.sh")]
    job = Job(name="deploy", steps=steps, environment="production",
              environment_url="https://traced.example.com")
    return Workflow(file="deploy.yml", name="Deploy", jobs=[job], inputs=inputs)


@pytest.fixture
async def traced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Stack, Collector]]:
    collector = Collector()
    await collector.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    stack = await Stack.start(f"sqlite:///{tmp_path / 'ghapp.db'}")
    stack.sim.add_repository("acme/traced", default_branch="main").add_workflow(
        traced_workflow()
    )
    yield stack, collector
    await stack.close()
    await collector.stop()


async def test_one_deployment_is_one_trace_under_the_callers_span(
    traced: tuple[Stack, Collector],
) -> None:
    stack, collector = traced
    if os.environ.get("GHAPP_WRITE_DOCS_ASSETS"):
        stack.sim.step_delay = 1.0  # steps of whole seconds, for the docs' picture
    status, body = await stack.deploy(
        "acme/traced", headers={"traceparent": TRACEPARENT, "tracestate": "vendor=1"}
    )
    assert status == 202, body
    callback = await stack.receiver.wait_for(body["id"])
    root = await collector.wait_for("deploy acme/traced production")
    await collector.wait_for("callback")
    # The root: a child of the caller's span, in the caller's trace, with the CI/CD attributes.
    assert root["trace_id"] == CALLER_TRACE and root["parent"] == CALLER_SPAN
    assert root["service"] == "ghapp"
    run_id = body["run"]["id"]
    assert root["attributes"] == {
        "cicd.pipeline.name": "deploy.yml",
        "cicd.pipeline.run.id": run_id,
        "cicd.pipeline.run.url.full": f"https://github.com/acme/traced/actions/runs/{run_id}",
        "cicd.pipeline.result": "success",
        "deployment.id": body["id"],
        "deployment.environment.name": "production",
        "vcs.ref.head.name": "main",
        "vcs.ref.head.revision": stack.sim.runs[run_id].head_sha,
    }
    # The callback and the dispatch carry the root's context.
    ours = f"00-{CALLER_TRACE}-{root['span_id']}-01"
    assert callback.headers["traceparent"] == ours
    assert callback.headers["tracestate"] == "vendor=1"
    assert stack.sim.runs[run_id].inputs["traceparent"] == ours
    # The tree: every span in the trace; dispatch, wait, the job, report and callback under
    # the root, each step under its job.
    spans = {s["name"]: s for s in collector.spans}
    assert {s["trace_id"] for s in collector.spans} == {CALLER_TRACE}
    for name in ("dispatch", "wait", "deploy", "report", "callback"):
        assert spans[name]["parent"] == root["span_id"], name
    job = spans["deploy"]
    sim_job = stack.sim.runs[run_id].jobs[0]
    assert job["attributes"]["cicd.pipeline.task.name"] == "deploy"
    assert job["attributes"]["cicd.pipeline.task.run.id"] == sim_job.id
    assert job["attributes"]["cicd.pipeline.task.run.result"] == "success"
    assert job["attributes"]["cicd.pipeline.task.run.url.full"].endswith(f"/job/{sim_job.id}")
    # Steps timed by GitHub's own started_at / completed_at (whole seconds there).
    for sim_step in sim_job.steps:
        span = spans[sim_step.name]
        assert span["parent"] == job["span_id"]
        assert span["start"] == sim_step.started * 10**9, sim_step.name
        assert span["end"] == sim_step.completed * 10**9, sim_step.name
    assert spans["callback"]["attributes"]["http.response.status_code"] == 204
    # The picture in the docs: one bar per span, names escaped.
    svg = waterfall_svg(collector.spans)
    assert svg.count("<rect x=") == len(collector.spans)
    assert "deploy acme/traced production" in svg
    if os.environ.get("GHAPP_WRITE_DOCS_ASSETS"):
        (Path(__file__).parents[1] / "docs" / "trace-waterfall.svg").write_text(svg + "\n")
    assert root["start"] <= spans["dispatch"]["start"] <= spans["dispatch"]["end"] <= root["end"]


async def test_without_a_traceparent_the_root_starts_a_trace_and_failures_say_so(
    traced: tuple[Stack, Collector],
) -> None:
    stack, collector = traced
    _, body = await stack.deploy("acme/traced", workflow="nope.yml")
    assert body["verdict"]["reason"] == "dispatch_rejected"
    root = await collector.wait_for("deploy acme/traced production")
    assert root["parent"] is None
    assert root["attributes"]["cicd.pipeline.result"] == "failure"
    assert root["status"] == 2  # ERROR
    callback = await stack.receiver.wait_for(body["id"])
    assert callback.headers["traceparent"] == f"00-{root['trace_id']}-{root['span_id']}-01"


def test_results_contexts_and_switches() -> None:
    assert pipeline_result("success", None) == "success"
    for reason, result in {
        "failure": "failure", "policy_rejected": "failure", "dispatch_rejected": "failure",
        "timed_out": "timeout", "cancelled": "cancellation", "superseded": "cancellation",
        "run_not_found": "error", "stale": "error", "action_required": "error",
        "skipped": "skip", "neutral": "skip",
    }.items():
        assert pipeline_result("failure", reason) == result
    assert parse_traceparent("00-" + "0" * 32 + "-00f067aa0ba902b7-01") is None
    assert parse_traceparent("garbage") is None
    assert begin("nonsense", None).parent_span_id is None
    unsampled = begin(f"00-{CALLER_TRACE}-{CALLER_SPAN}-00", None)
    assert not unsampled.sampled and unsampled.traceparent().endswith("-00")
    assert not wanted({})
    assert wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"})
    assert wanted({"OTEL_TRACES_EXPORTER": "otlp"})
    assert not wanted({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"})
    assert not wanted({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"})


async def test_serving_with_the_variables_set_loads_opentelemetry(tmp_path: Path) -> None:
    """The other half of test_serving's check that idle ghapp loads no `opentelemetry`:
    the same child, with an endpoint set, does (so that check can fail)."""
    from test_serving import SERVE_AND_LIST_MODULES

    stack = await Stack.start(f"sqlite:///{tmp_path / 'ghapp.db'}")
    await stack.stop_ghapp()
    try:
        port = free_port()
        env = settings_env(stack.settings, port)
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:9"
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SERVE_AND_LIST_MODULES, f"http://127.0.0.1:{port}/readyz",
            env=env, stdout=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            out, _ = await child.communicate()
        assert child.returncode in (0, -signal.SIGTERM)
        assert "opentelemetry" in set(json.loads(out))
    finally:
        await stack.close()


@pytest.fixture
async def otel_collector(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Collector]:
    """A collector, and the OTEL_* variables pointing at it (before a sandbox starts)."""
    collector = Collector()
    await collector.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    yield collector
    await collector.stop()


async def test_the_deploy_node_makes_the_agents_run_and_its_deploy_one_trace(
    otel_collector: Collector, ghapp_sandbox: Any
) -> None:
    from langgraph.graph import END, START, StateGraph
    from opentelemetry.sdk.trace import TracerProvider
    from typing_extensions import TypedDict

    from ghapp.langgraph import deploy_node

    class State(TypedDict, total=False):
        deploy: Any

    ghapp_sandbox.scenario("acme/agent", after_seconds=0.2)
    builder = StateGraph(State)
    builder.add_node("deploy", deploy_node(
        url=ghapp_sandbox.url, token=ghapp_sandbox.token, repository="acme/agent"
    ))
    builder.add_edge(START, "deploy")
    builder.add_edge("deploy", END)
    graph = builder.compile()
    # The agent's own span (its process uses OpenTelemetry; no global provider is needed).
    tracer = TracerProvider().get_tracer("agent")
    with tracer.start_as_current_span("agent run") as span:
        result = await graph.ainvoke({})
    assert result["deploy"]["status"] == "success"
    context = span.get_span_context()
    root = await otel_collector.wait_for("deploy acme/agent production")
    assert root["trace_id"] == format(context.trace_id, "032x")
    assert root["parent"] == format(context.span_id, "016x")
    # The sandbox's workflow is the template's: it declares `traceparent` and gets it.
    runs = ghapp_sandbox.sandbox.stack.sim.runs.values()
    [run] = [r for r in runs if r.repo.full_name == "acme/agent"]
    assert run.inputs["traceparent"] == f"00-{root['trace_id']}-{root['span_id']}-01"


async def test_two_replicas_on_postgresql_add_to_the_same_trace(
    postgres_url: str, otel_collector: Collector
) -> None:
    """Replica A takes the request and dispatches; every webhook goes to replica B, which
    saves the verdict: one trace, whose root (its id stored at the request) B exports."""
    from ghapp.runner import BackgroundServer
    from ghapp.web.app import create_app

    stack = await Stack.start(postgres_url)
    replica_b = BackgroundServer(create_app(stack.settings, retry_base=0.05))
    try:
        stack.sim.add_repository("acme/traced", default_branch="main").add_workflow(
            traced_workflow()
        )
        stack.sim.webhook_url = await replica_b.start() + stack.settings.webhook_path
        stack.sim.step_delay = 0.05
        status, body = await stack.deploy("acme/traced", headers={"traceparent": TRACEPARENT})
        assert status == 202
        callback = await stack.receiver.wait_for(body["id"])
        root = await otel_collector.wait_for("deploy acme/traced production")
        await otel_collector.wait_for("callback")
        await otel_collector.wait_for("Deploy")
        assert root["parent"] == CALLER_SPAN
        assert {s["trace_id"] for s in otel_collector.spans} == {CALLER_TRACE}
        names = [s["name"] for s in otel_collector.spans]
        assert names.count("deploy acme/traced production") == 1
        assert names.count("dispatch") == 1
        by_name = {s["name"]: s for s in otel_collector.spans}
        assert by_name["dispatch"]["parent"] == root["span_id"]  # exported by A
        assert by_name["deploy"]["parent"] == root["span_id"]  # exported by B
        assert callback.headers["traceparent"] == f"00-{CALLER_TRACE}-{root['span_id']}-01"
    finally:
        await replica_b.stop()
        await stack.close()
