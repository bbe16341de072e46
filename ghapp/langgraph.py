"""The seed's Deploy Node for LangGraph (extra `ghapp[langgraph]`): deploy, wait, give a verdict.

    from ghapp.langgraph import deploy_node, resume_from_callback

    builder.add_node("deploy", deploy_node(url=GHAPP_URL, token=TOKEN, repository="acme/shop"))

The node returns `{"deploy": AgentVerdict}`. It waits in process (`durable=False`), or, with
`durable=True`, dispatches idempotently and `interrupt()`s; the graph's thread is resumed by
`await resume_from_callback(graph, body, headers, CALLBACK_SECRET)` in the handler of ghapp's
callback, in this process or another one after a restart (the checkpointer keeps the thread).
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import hashlib
import json
import sys
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Literal, TypeAlias, TypedDict, TypeVar

from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.types import Command, interrupt
from pydantic import BaseModel

from ghapp.client import (
    Client,
    callback_event,
    check_callback_signature,
    verify_callback,
)
from ghapp.core.models import Deployment

__all__ = ["AgentVerdict", "agent_verdict", "deploy_node", "resume_from_callback"]

T = TypeVar("T")
# A node parameter given as a value or as a function of the graph's state.
StateValue: TypeAlias = T | Callable[[Any], T]
# The in-process wait has no deadline of its own: ghapp always reaches a verdict (RUN_TIMEOUT,
# 6 h by default, reports a run still going as timed_out), so this only guards against a server
# that is gone for good.
WAIT_TIMEOUT = 8 * 3600.0
WAIT_INTERVAL = 1.0


class AgentVerdict(TypedDict):
    """What the Deploy Node puts under `deploy` in the graph's state."""

    status: Literal["success", "failure"]
    deployed_url: str | None
    summary: str
    cause: dict[str, Any] | None
    report: str | None
    deployment_id: str
    run_url: str | None
    outputs: dict[str, str]


def _plain(value: Any) -> Any:
    """A verdict field as plain JSON data (a model from a newer client becomes a dict)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def agent_verdict(deployment: Deployment | Mapping[str, Any]) -> AgentVerdict:
    """The AgentVerdict of a completed Deployment (model or callback JSON)."""
    data: Mapping[str, Any] = (
        deployment.model_dump(mode="json") if isinstance(deployment, BaseModel) else deployment
    )
    verdict = data.get("verdict") or {}
    run = data.get("run") or {}
    status: Literal["success", "failure"] = (
        "success" if verdict.get("status") == "success" else "failure"
    )
    return AgentVerdict(
        status=status,
        deployed_url=verdict.get("deployed_url"),
        summary=str(verdict.get("summary") or f"deployment {data.get('id')} has no verdict"),
        # Second-round fields: read when the server (and client) send them, else None.
        cause=_plain(verdict.get("cause")),
        report=verdict.get("report"),
        deployment_id=str(data.get("id")),
        run_url=run.get("html_url"),
        # Third round: the run's outputs the node asked for ({} from an older server).
        outputs=dict(verdict.get("outputs") or {}),
    )


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current OpenTelemetry span, when the process uses
    OpenTelemetry (never imported here for it) and a span is recording; else None."""
    if "opentelemetry.trace" not in sys.modules:
        return None
    from opentelemetry import trace
    from opentelemetry.propagate import inject

    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent")


def _resolve(value: StateValue[T], state: Any) -> T:
    return value(state) if callable(value) else value


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from sync code, even where a loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _idempotency_key(thread_id: str, config: RunnableConfig) -> str:
    """One key per thread, node and visit: the re-run of a visit on resume repeats it."""
    metadata = config.get("metadata") or {}
    # The namespace ends with this task's id, which LangGraph derives from the checkpoint the
    # task was planned from: the same when the visit is re-run on resume (even in another
    # process), new for a later visit, and new again if the thread is started over from
    # scratch under the same thread id (where the step numbers would repeat).
    visit = "\x00".join(
        str(part)
        for part in (
            thread_id,
            metadata.get("langgraph_checkpoint_ns", ""),
            metadata.get("langgraph_node"),
            metadata.get("langgraph_step"),
        )
    )
    return "langgraph-" + hashlib.sha256(visit.encode()).hexdigest()[:40]


class _DeployNode:
    """The node's two faces (sync and async) over one implementation."""

    def __init__(
        self,
        *,
        url: str,
        token: str,
        repository: StateValue[str],
        workflow: str,
        ref: StateValue[str | None],
        inputs: StateValue[Mapping[str, str | int | float | bool] | None],
        durable: bool,
        callback_url: str | None,
        outputs: Sequence[str] | None = None,
    ) -> None:
        self.url = url
        self.token = token
        self.repository = repository
        self.workflow = workflow
        self.ref = ref
        self.inputs = inputs
        self.durable = durable
        self.callback_url = callback_url
        self.outputs = list(outputs or [])

    async def _dispatch(self, state: Any, config: RunnableConfig) -> Deployment:
        configurable = config.get("configurable") or {}
        thread_id = configurable.get("thread_id")
        if self.durable and not thread_id:
            raise ValueError(
                "deploy_node(durable=True) needs a checkpointer and configurable.thread_id"
            )
        key = _idempotency_key(str(thread_id), config) if thread_id else str(uuid.uuid4())
        async with Client(self.url, self.token) as client:
            return await client.deploy(
                _resolve(self.repository, state),
                workflow=self.workflow,
                ref=_resolve(self.ref, state),
                inputs=_resolve(self.inputs, state),
                callback_url=self.callback_url,
                idempotency_key=key,
                metadata={"thread_id": str(thread_id)} if thread_id else None,
                outputs=self.outputs or None,
                traceparent=current_traceparent(),
            )

    async def _deploy_and_wait(self, state: Any, config: RunnableConfig) -> Deployment:
        deployment = await self._dispatch(state, config)
        if deployment.state == "completed":
            return deployment
        async with Client(self.url, self.token) as client:
            return await client.wait(
                deployment.id, timeout=WAIT_TIMEOUT, interval=WAIT_INTERVAL
            )

    def _after_dispatch(self, deployment: Deployment) -> dict[str, AgentVerdict]:
        if deployment.state == "completed":
            # Refused at once (or, on resume, already finished): nothing to wait for.
            return {"deploy": agent_verdict(deployment)}
        answer = interrupt(
            {
                "deployment_id": deployment.id,
                "repository": deployment.repository,
                "run_url": deployment.run.html_url if deployment.run else None,
                "waiting_for": "ghapp's deployment.completed callback",
            }
        )
        return {"deploy": agent_verdict(answer)}

    def invoke(self, state: Any, config: RunnableConfig) -> dict[str, AgentVerdict]:
        """The node in a sync graph (`graph.invoke`)."""
        if self.durable:
            return self._after_dispatch(_run_sync(self._dispatch(state, config)))
        return {"deploy": agent_verdict(_run_sync(self._deploy_and_wait(state, config)))}

    async def ainvoke(self, state: Any, config: RunnableConfig) -> dict[str, AgentVerdict]:
        """The node in an async graph (`graph.ainvoke`)."""
        if self.durable:
            return self._after_dispatch(await self._dispatch(state, config))
        return {"deploy": agent_verdict(await self._deploy_and_wait(state, config))}


def deploy_node(
    *,
    url: str,
    token: str,
    repository: StateValue[str],
    workflow: str = "deploy.yml",
    ref: StateValue[str | None] = None,
    inputs: StateValue[Mapping[str, str | int | float | bool] | None] = None,
    durable: bool = False,
    callback_url: str | None = None,
    outputs: Sequence[str] | None = None,
) -> RunnableLambda[Any, dict[str, AgentVerdict]]:
    """A LangGraph node that deploys through ghapp and returns `{"deploy": AgentVerdict}`.

    `repository`, `ref` and `inputs` may be functions of the state. `durable=False` waits in
    process; `durable=True` interrupts after an idempotent dispatch (needs a checkpointer and a
    thread id) until `resume_from_callback` resumes the thread with the verdict. `outputs`
    names the run's outputs wanted in `AgentVerdict["outputs"]`. When OpenTelemetry is active
    in the graph's process, the deploy's trace is a child of the node's current span.
    """
    node = _DeployNode(
        url=url,
        token=token,
        repository=repository,
        workflow=workflow,
        ref=ref,
        inputs=inputs,
        durable=durable,
        callback_url=callback_url,
        outputs=outputs,
    )
    return RunnableLambda(node.invoke, afunc=node.ainvoke, name="ghapp_deploy")


# One resume at a time per thread in this process: a callback retried while the first delivery
# is still resuming must find the interrupt answered, not answer it twice.
_thread_locks: dict[str, asyncio.Lock] = {}


async def _graph_call(graph: Any, name: str, *args: Any) -> Any:
    """`graph.a<name>(...)`, or the sync method in a thread when the checkpointer is sync-only."""
    try:
        call: Callable[..., Awaitable[Any]] = getattr(graph, "a" + name)
        return await call(*args)
    except NotImplementedError:
        # e.g. SqliteSaver: its async methods refuse; its sync ones work from a thread.
        return await asyncio.to_thread(getattr(graph, name), *args)


async def resume_from_callback(
    graph: Any,
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    require_timestamp: bool = True,
) -> Any:
    """Verify a ghapp callback and resume the thread named by its `metadata.thread_id`.

    Returns what the graph returns, or None when the callback resumes nothing (a
    `deployment.started` callback, a rollback's, one with no thread, or one whose interrupt was
    already answered). Raises `CallbackVerificationError` for a bad signature or a callback
    older than 5 minutes (a replay): answer it 401. `require_timestamp=False` accepts
    callbacks of a ghapp older than the third round (see `verify_callback`).
    """
    if callback_event(headers) != "deployment.completed":
        check_callback_signature(body, headers, secret, require_timestamp=require_timestamp)
        return None
    deployment = verify_callback(body, headers, secret, require_timestamp=require_timestamp)
    data = json.loads(body)
    if data.get("kind") == "rollback" or deployment.state != "completed":
        return None
    thread_id = deployment.metadata.get("thread_id")
    if not thread_id:
        return None
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    lock = _thread_locks.setdefault(thread_id, asyncio.Lock())
    try:
        async with lock:
            return await _resume(graph, config, deployment.id, data)
    finally:
        if not lock.locked():
            _thread_locks.pop(thread_id, None)


async def _resume(
    graph: Any, config: RunnableConfig, deployment_id: str, data: dict[str, Any]
) -> Any:
    """Answer the thread's interrupt that waits for this deployment, if one does."""
    snapshot = await _graph_call(graph, "get_state", config)
    waiting = builtins.list(snapshot.interrupts) + [
        i for task in snapshot.tasks for i in task.interrupts
    ]
    for pending in waiting:
        value = pending.value
        if isinstance(value, dict) and value.get("deployment_id") == deployment_id:
            command: Command[Any] = Command(resume={pending.id: data})
            return await _graph_call(graph, "invoke", command, config)
    return None
