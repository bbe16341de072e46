"""A deployment's trace context (W3C Trace Context), stored with it so that any replica adds
its spans to the same trace: parsing the caller's `traceparent` and writing ours (pure)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping

from pydantic import BaseModel

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def tracing_wanted(environ: Mapping[str, str]) -> bool:
    """Whether the OTEL_* variables ask for traces."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(exporter) or any(environ.get(name, "").strip() for name in _ENDPOINTS)
TRACESTATE_MAX = 512


class TraceContext(BaseModel):
    """The deployment's root span: its trace, its own id, and the caller's span (if any)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None = None
    sampled: bool = True
    tracestate: str | None = None

    def traceparent(self) -> str:
        """The `traceparent` header naming the deployment's root span."""
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


def parse_traceparent(value: str | None) -> tuple[str, str, bool] | None:
    """(trace id, span id, sampled) of a valid `traceparent` header, else None."""
    if not value:
        return None
    match = _TRACEPARENT.fullmatch(value.strip().lower()[:55])
    if match is None:
        return None
    version, trace_id, span_id, flags = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id, bool(int(flags, 16) & 1)


def new_span_id() -> str:
    """A random, non-zero 64-bit span id in hex."""
    while True:
        value = secrets.token_hex(8)
        if value != _ZERO_SPAN:
            return value


def begin(traceparent: str | None, tracestate: str | None) -> TraceContext:
    """The root of a new deployment's trace: a child of the caller's span when its
    `traceparent` is valid, else a new trace."""
    parent = parse_traceparent(traceparent)
    if parent is None:
        trace_id = secrets.token_hex(16)
        return TraceContext(trace_id=trace_id, span_id=new_span_id())
    trace_id, parent_span, sampled = parent
    state = (tracestate or "").strip()[:TRACESTATE_MAX] or None
    return TraceContext(
        trace_id=trace_id,
        span_id=new_span_id(),
        parent_span_id=parent_span,
        sampled=sampled,
        tracestate=state,
    )


# The verdict's reason -> `cicd.pipeline.result` (OpenTelemetry's CI/CD conventions).
_RESULTS = {
    "failure": "failure",
    "startup_failure": "failure",
    "policy_rejected": "failure",
    "review_rejected": "failure",
    "dispatch_rejected": "failure",
    "timed_out": "timeout",
    "cancelled": "cancellation",
    "superseded": "cancellation",
    "run_not_found": "error",
    "stale": "error",
    "action_required": "error",
    "skipped": "skip",
    "neutral": "skip",
}


def pipeline_result(status: str, reason: str | None) -> str:
    """`cicd.pipeline.result` of a verdict."""
    if status == "success":
        return "success"
    return _RESULTS.get(reason or "failure", "failure")
