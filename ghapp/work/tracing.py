"""OpenTelemetry traces of deployments (the `otel` extra), at the edge: fed with what the
engine, the dispatch and the callback sender did, never called from the pure core.

On only when the standard variables ask for it (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_TRACES_EXPORTER`; `OTEL_TRACES_EXPORTER=none` or
`OTEL_SDK_DISABLED=true` mean off); off, nothing of OpenTelemetry is imported. Every span is
made after the fact with explicit times and ids (the SDK's `ReadableSpan` handed to its batch
processor): jobs and steps keep GitHub's own times, and the root span, whose id is stored with
the deployment at the request, is exported by whichever replica saves the verdict
(docs/traces-and-outputs.md)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cachetools import LRUCache

from ghapp.core.tracecontext import TraceContext, new_span_id, pipeline_result
from ghapp.core.tracecontext import tracing_wanted as wanted

if TYPE_CHECKING:
    from ghapp.core.deploy_record import DeploymentRecord

log = logging.getLogger("ghapp.tracing")
SERVICE_NAME = "ghapp"
SCOPE = "ghapp"


def from_environment() -> Tracing | None:
    """The process's tracing when the variables ask for it, else None (nothing imported)."""
    if not wanted(os.environ):
        return None
    try:
        return Tracing()
    except ImportError as exc:
        log.warning("OTEL_* variables are set but the otel extra is not installed "
                    "(pip install 'ghapp[otel]'): no traces (%s)", exc)
        return None


def _ns(moment: datetime | None) -> int | None:
    return int(moment.timestamp() * 1e9) if moment is not None else None


def _exporter() -> Any:
    names = [n.strip().lower() for n in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    if "console" in names:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    if protocol and protocol != "http/protobuf":
        log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s: ghapp ships the http/protobuf exporter, "
                    "used instead", protocol)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


class Tracing:
    """Spans of deployments, exported in batches by the OpenTelemetry SDK."""

    def __init__(self) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        from ghapp import __version__

        attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": SERVICE_NAME}
        self.resource = Resource.create(attributes)
        self.scope = InstrumentationScope(SCOPE, __version__)
        self.processor: Any = BatchSpanProcessor(_exporter())
        # Roots this process exported (a resent callback must not export one twice).
        self._exported: LRUCache[str, bool] = LRUCache(maxsize=4096)

    def begin(self, traceparent: str | None, tracestate: str | None) -> TraceContext:
        """A new deployment's trace context (a child of the caller's span when given)."""
        from ghapp.core.tracecontext import begin

        return begin(traceparent, tracestate)

    def span(
        self,
        trace: TraceContext,
        name: str,
        start: int | None,
        end: int | None,
        attributes: Mapping[str, Any] | None = None,
        *,
        span_id: str | None = None,
        parent: str | None = None,
        error: str | None = None,
    ) -> str:
        """Export one finished span of the trace (a child of the root unless `parent` says);
        its id."""
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
        from opentelemetry.trace.span import TraceState

        span_id = span_id or new_span_id()
        flags = TraceFlags(TraceFlags.SAMPLED if trace.sampled else TraceFlags.DEFAULT)
        state = TraceState.from_header([trace.tracestate]) if trace.tracestate else None
        context = SpanContext(int(trace.trace_id, 16), int(span_id, 16), False, flags, state)
        parent_id = parent if parent is not None else trace.span_id
        parent_context = (
            SpanContext(int(trace.trace_id, 16), int(parent_id, 16), parent_id
                        == trace.parent_span_id, flags, state)
            if parent_id
            else None
        )
        end = end if end is not None else time.time_ns()
        start = min(start if start is not None else end, end)
        status = Status(StatusCode.ERROR, error) if error else Status(StatusCode.UNSET)
        clean = {k: v for k, v in (attributes or {}).items() if v is not None}
        if trace.sampled:
            self.processor.on_end(
                ReadableSpan(
                    name=name,
                    context=context,
                    parent=parent_context,
                    resource=self.resource,
                    attributes=clean,
                    kind=SpanKind.INTERNAL,
                    status=status,
                    start_time=start,
                    end_time=end,
                    instrumentation_scope=self.scope,
                )
            )
        return span_id

    def dispatched(self, record: DeploymentRecord, start_ns: int, end_ns: int) -> None:
        """The dispatch request to GitHub."""
        if record.trace is not None:
            self.span(record.trace, "dispatch", start_ns, end_ns, {
                "cicd.pipeline.name": record.workflow,
                "vcs.ref.head.name": record.ref,
            })

    def callback_attempt(
        self, record: DeploymentRecord, event: str, start_ns: int, end_ns: int,
        status: int | None, error: str | None,
    ) -> None:
        """One attempt at delivering a callback."""
        if record.trace is None:
            return
        ok = status is not None and 200 <= status < 300
        self.span(record.trace, "callback", start_ns, end_ns, {
            "url.full": record.callback.url,
            "http.request.method": "POST",
            "http.response.status_code": status,
            "ghapp.callback.event": event,
        }, error=None if ok else (error or f"answered {status}"))

    def completed(self, record: DeploymentRecord) -> None:
        """The verdict was saved: the wait, each job and step (GitHub's times), the report,
        and the root span from the request to the verdict."""
        trace, verdict = record.trace, record.verdict
        if trace is None or verdict is None or record.phase != "completed":
            return
        if self._exported.get(record.id):
            return
        self._exported[record.id] = True
        run = record.run
        if record.run_started_at is not None:
            self.span(trace, "wait", _ns(record.dispatched_at), _ns(record.run_started_at))
        for job in record.progress.jobs if record.progress else []:
            job_id = self.span(trace, job.name, _ns(job.started_at), _ns(job.completed_at), {
                "cicd.pipeline.task.name": job.name,
                "cicd.pipeline.task.run.id": job.id,
                "cicd.pipeline.task.run.url.full": job.html_url,
                "cicd.pipeline.task.run.result": job.conclusion,
            }, error=job.conclusion if job.conclusion == "failure" else None)
            for step in job.steps:
                if step.started_at is None:
                    continue
                self.span(trace, step.name, _ns(step.started_at), _ns(step.completed_at), {
                    "cicd.pipeline.task.run.result": step.conclusion,
                    "ghapp.step.number": step.number,
                }, parent=job_id, error=step.conclusion if step.conclusion == "failure" else None)
        if record.run_completed_seen_at is not None:
            self.span(trace, "report", _ns(record.run_completed_seen_at), _ns(record.completed_at))
        result = pipeline_result(verdict.status, verdict.reason)
        self.span(trace, f"deploy {record.repository} {record.environment}",
                  _ns(record.created_at), _ns(record.completed_at), {
                      "cicd.pipeline.name": record.workflow,
                      "cicd.pipeline.run.id": run.id if run else None,
                      "cicd.pipeline.run.url.full": run.html_url if run else None,
                      "cicd.pipeline.result": result,
                      "deployment.id": record.id,
                      "deployment.environment.name": record.environment,
                      "vcs.ref.head.name": record.ref,
                      "vcs.ref.head.revision": record.head_sha,
                      "ghapp.verdict.reason": verdict.reason,
                  }, span_id=trace.span_id, parent=trace.parent_span_id or "",
                  error=None if verdict.status == "success" else verdict.summary[:300])

    def shutdown(self) -> None:
        """Export what is queued, and stop."""
        self.processor.shutdown()
