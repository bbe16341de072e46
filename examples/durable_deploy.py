"""The Deploy Node waiting durably: the graph stops at an interrupt, ghapp's callback resumes it.

    python examples/durable_deploy.py

Runs an orchestrator web app (Starlette) whose `/ghapp/callback` route hands every callback to
`resume_from_callback`, a LangGraph graph checkpointed in SQLite on disk (`checkpoints.db` in a
temporary directory), and a sandbox whose callbacks go to that route. Nothing waits in process
between the dispatch and the verdict: the process could stop and start again in between (the
tests do exactly that).
Needs the `langgraph` extra (from a checkout: `pip install -e '.[langgraph]'`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import tempfile
from typing import Any, TypedDict

import uvicorn
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ghapp.client import CallbackVerificationError
from ghapp.langgraph import AgentVerdict, deploy_node, resume_from_callback
from ghapp.simulator.sandbox import Sandbox


class State(TypedDict, total=False):
    """What this orchestrator keeps per thread."""

    repository: str
    deploy: AgentVerdict


def build_graph(ghapp_url: str, token: str, checkpointer: Any) -> Any:
    """One durable deploy; a real orchestrator routes the verdict on from here."""
    builder = StateGraph(State)
    builder.add_node(
        "deploy",
        deploy_node(url=ghapp_url, token=token, repository=lambda s: s["repository"], durable=True),
    )
    builder.add_edge(START, "deploy")
    builder.add_edge("deploy", END)
    return builder.compile(checkpointer=checkpointer)


def callback_app(graph: Any, secret: str, finished: asyncio.Queue[Any]) -> Starlette:
    """The orchestrator's callback endpoint: verify, resume the thread, answer 2xx."""

    async def callback(request: Request) -> Response:
        try:
            result = await resume_from_callback(
                graph, await request.body(), request.headers, secret
            )
        except CallbackVerificationError:
            return Response(status_code=401)  # not from ghapp: resume nothing
        if result is not None:
            await finished.put(result)
        return Response(status_code=204)

    return Starlette(routes=[Route("/ghapp/callback", callback, methods=["POST"])])


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def main() -> int:
    """Deploy acme/shop durably and print the verdict the callback resumed the graph with."""
    port = free_port()
    callback_url = f"http://127.0.0.1:{port}/ghapp/callback"
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = await Sandbox.start(callback_url=callback_url)
        async with AsyncSqliteSaver.from_conn_string(f"{tmp}/checkpoints.db") as saver:
            graph = build_graph(sandbox.url, sandbox.token, saver)
            finished: asyncio.Queue[Any] = asyncio.Queue()
            app = callback_app(graph, sandbox.callback_secret, finished)
            config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
            server = uvicorn.Server(config)
            serving = asyncio.create_task(server.serve())
            try:
                thread = {"configurable": {"thread_id": "release-42"}}
                paused = await graph.ainvoke({"repository": "acme/shop"}, thread)
                waiting = paused["__interrupt__"][0].value
                print(f"dispatched {waiting['deployment_id']}; the graph waits for the callback")
                result = await asyncio.wait_for(finished.get(), 60)
                verdict = result["deploy"]
                print(f"resumed by the callback: {verdict['status']} {verdict['deployed_url']}")
            finally:
                server.should_exit = True
                with contextlib.suppress(Exception):
                    await serving
                await sandbox.close()
    return 0 if verdict["status"] == "success" else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
