"""ghapp.langgraph: the Deploy Node in both waiting modes, sync and async, across a restart."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from ghapp.client import CallbackVerificationError, sign_callback_headers
from ghapp.langgraph import AgentVerdict, deploy_node, resume_from_callback

if TYPE_CHECKING:
    from ghapp.testing import GhappSandbox


SSH_REFUSED = "ssh: connect to host 203.0.113.7 port 22: Connection refused"


class State(TypedDict, total=False):
    repository: str
    deploy: AgentVerdict
    fixes: int


def one_deploy_graph(sandbox: GhappSandbox, *, durable: bool, checkpointer: Any = None) -> Any:
    builder = StateGraph(State)
    builder.add_node(
        "deploy",
        deploy_node(
            url=sandbox.url,
            token=sandbox.token,
            repository=lambda state: state["repository"],
            inputs={"environment": "staging"},
            durable=durable,
        ),
    )
    builder.add_edge(START, "deploy")
    builder.add_edge("deploy", END)
    return builder.compile(checkpointer=checkpointer)


async def test_in_process_wait_async_graph(ghapp_sandbox: GhappSandbox) -> None:
    ghapp_sandbox.scenario(
        "acme/api", outcome="failure", step="Deploy over SSH", log=[SSH_REFUSED], after_seconds=0.2
    )
    graph = one_deploy_graph(ghapp_sandbox, durable=False)
    result = await graph.ainvoke({"repository": "acme/api"})
    verdict = result["deploy"]
    assert verdict["status"] == "failure"
    assert "Deploy over SSH" in verdict["summary"]
    assert verdict["deployed_url"] is None
    assert verdict["run_url"] and "/actions/runs/" in verdict["run_url"]
    # The second-round fields come through as plain data, ready for the engineering subgraph.
    assert verdict["cause"] is not None and verdict["cause"]["category"] == "infrastructure"
    assert verdict["report"] is not None and SSH_REFUSED in verdict["report"]
    async with ghapp_sandbox.client() as client:
        deployment = await client.get(verdict["deployment_id"])
    assert deployment.inputs == {"environment": "staging"}
    assert set(verdict) == {
        "status",
        "deployed_url",
        "summary",
        "cause",
        "report",
        "deployment_id",
        "run_url",
        "outputs",
    }
    assert verdict["outputs"] == {}


def test_in_process_wait_sync_graph(ghapp_sandbox: GhappSandbox) -> None:
    ghapp_sandbox.scenario("acme/shop", url="https://shop.example.com", after_seconds=0.2)
    graph = one_deploy_graph(ghapp_sandbox, durable=False)
    verdict = graph.invoke({"repository": "acme/shop"})["deploy"]
    assert verdict["status"] == "success"
    assert verdict["deployed_url"] == "https://shop.example.com"
    assert verdict["cause"] is None and verdict["report"] is None


def loop_graph(sandbox: GhappSandbox, checkpointer: Any) -> Any:
    """Deploy; on failure a fix node makes the next deploy succeed; deploy again."""

    def fix(state: State) -> State:
        sandbox.scenario(state["repository"], after_seconds=0.2)
        return {"fixes": state.get("fixes", 0) + 1}

    builder = StateGraph(State)
    builder.add_node(
        "deploy",
        deploy_node(
            url=sandbox.url,
            token=sandbox.token,
            repository=lambda state: state["repository"],
            durable=True,
        ),
    )
    builder.add_node("fix", fix)
    builder.add_edge(START, "deploy")
    builder.add_conditional_edges(
        "deploy", lambda s: END if s["deploy"]["status"] == "success" else "fix", ["fix", END]
    )
    builder.add_edge("fix", "deploy")
    return builder.compile(checkpointer=checkpointer)


async def test_durable_wait_resumes_from_callbacks_and_redeploys(
    ghapp_sandbox: GhappSandbox,
) -> None:
    """Each visit of the node dispatches once; the callback resumes the thread it names."""
    ghapp_sandbox.scenario("acme/loop", outcome="failure", log=[SSH_REFUSED], after_seconds=0.2)
    graph = loop_graph(ghapp_sandbox, InMemorySaver())
    config = {"configurable": {"thread_id": "thread-loop"}}

    paused = await graph.ainvoke({"repository": "acme/loop"}, config)
    first_id = paused["__interrupt__"][0].value["deployment_id"]
    first = await ghapp_sandbox.wait_for_callback(first_id)
    assert first.deployment.metadata == {"thread_id": "thread-loop"}

    with pytest.raises(CallbackVerificationError):
        await resume_from_callback(graph, first.body + b" ", first.headers, ghapp_sandbox.token)
    # The failure goes to the fix node, and the redeploy interrupts on a new deployment.
    paused = await resume_from_callback(
        graph, first.body, first.headers, ghapp_sandbox.callback_secret
    )
    assert paused["deploy"]["status"] == "failure" and paused["fixes"] == 1
    second_id = paused["__interrupt__"][0].value["deployment_id"]
    assert second_id != first_id
    # The same callback again (a retry) resumes nothing.
    assert (
        await resume_from_callback(graph, first.body, first.headers, ghapp_sandbox.callback_secret)
        is None
    )

    second = await ghapp_sandbox.wait_for_callback(second_id)
    done = await resume_from_callback(
        graph, second.body, second.headers, ghapp_sandbox.callback_secret
    )
    assert done["deploy"]["status"] == "success"
    assert done["deploy"]["deployment_id"] == second_id
    assert "__interrupt__" not in done
    async with ghapp_sandbox.client() as client:
        listed = await client.list(repository="acme/loop")
    # Two visits, two dispatches: the re-runs on resume dispatched nothing new.
    assert sorted(d.id for d in listed) == sorted([first_id, second_id])


async def test_started_callbacks_resume_nothing(ghapp_sandbox: GhappSandbox) -> None:
    graph = loop_graph(ghapp_sandbox, InMemorySaver())
    config = {"configurable": {"thread_id": "thread-started"}}
    paused = await graph.ainvoke({"repository": "acme/started"}, config)
    deployment_id = paused["__interrupt__"][0].value["deployment_id"]
    completed = await ghapp_sandbox.wait_for_callback(deployment_id)
    body = completed.body
    secret = ghapp_sandbox.callback_secret
    started = sign_callback_headers(body, secret, event="deployment.started")
    assert await resume_from_callback(graph, body, started, secret) is None
    rollback = json.dumps({**json.loads(body), "kind": "rollback"}).encode()
    headers = sign_callback_headers(rollback, secret)
    assert await resume_from_callback(graph, rollback, headers, secret) is None
    # Still waiting: the real callback resumes it.
    assert (await graph.aget_state(config)).interrupts
    done = await resume_from_callback(graph, body, completed.headers, secret)
    assert done["deploy"]["status"] == "success"


RESTART_SCRIPT = textwrap.dedent(
    '''
    """One process dispatches and stops at the interrupt; another resumes from the callback."""
    import asyncio, json, sys
    from typing import TypedDict
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import END, START, StateGraph
    from ghapp.langgraph import AgentVerdict, deploy_node, resume_from_callback

    class State(TypedDict, total=False):
        repository: str
        deploy: AgentVerdict

    step, db, url, token, secret = sys.argv[1:6]
    builder = StateGraph(State)
    builder.add_node("deploy", deploy_node(url=url, token=token, repository="acme/restart",
                                           durable=True))
    builder.add_edge(START, "deploy")
    builder.add_edge("deploy", END)
    with SqliteSaver.from_conn_string(db) as saver:
        graph = builder.compile(checkpointer=saver)
        config = {"configurable": {"thread_id": "thread-restart"}}
        if step == "dispatch":
            paused = graph.invoke({"repository": "acme/restart"}, config)
            print(paused["__interrupt__"][0].value["deployment_id"])
        else:
            saved = json.loads(open(sys.argv[6]).read())
            body = saved["body"].encode()
            result = asyncio.run(resume_from_callback(graph, body, saved["headers"], secret))
            print(json.dumps(result["deploy"]))
    '''
)


async def test_durable_wait_survives_a_restart(ghapp_sandbox: GhappSandbox, tmp_path: Path) -> None:
    """Dispatch in one process, which exits; resume from the callback in a new one."""
    ghapp_sandbox.scenario("acme/restart", outcome="failure", log=[SSH_REFUSED], after_seconds=0.5)
    script = tmp_path / "graph.py"
    script.write_text(RESTART_SCRIPT)
    args = [
        str(tmp_path / "checkpoints.db"),
        ghapp_sandbox.url,
        ghapp_sandbox.token,
        ghapp_sandbox.callback_secret,
    ]

    def run(*argv: str) -> str:
        done = subprocess.run(
            [sys.executable, str(script), *argv], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    deployment_id = await asyncio.to_thread(run, "dispatch", *args)
    callback = await ghapp_sandbox.wait_for_callback(deployment_id)
    saved = tmp_path / "callback.json"
    saved.write_text(json.dumps({"body": callback.body.decode(), "headers": callback.headers}))
    verdict = json.loads(await asyncio.to_thread(run, "resume", *args, str(saved)))
    assert verdict["status"] == "failure"
    assert verdict["deployment_id"] == deployment_id
    assert "Deploy on the server" in verdict["summary"]


async def test_a_thread_started_over_dispatches_anew(ghapp_sandbox: GhappSandbox) -> None:
    """Same thread id, fresh checkpoints (steps repeat): a new deploy, not the old one's answer."""
    config = {"configurable": {"thread_id": "thread-reused"}}
    first = await one_deploy_graph(
        ghapp_sandbox, durable=True, checkpointer=InMemorySaver()
    ).ainvoke({"repository": "acme/again"}, config)
    again = await one_deploy_graph(
        ghapp_sandbox, durable=True, checkpointer=InMemorySaver()
    ).ainvoke({"repository": "acme/again"}, config)
    ids = {paused["__interrupt__"][0].value["deployment_id"] for paused in (first, again)}
    assert len(ids) == 2
