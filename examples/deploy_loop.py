"""The seed's deploy loop as a LangGraph graph, against ghapp's sandbox.

    deploy --failure--> fix ("Fix deployment failure. Logs attached.") --> deploy --success--> end

Run it: `python examples/deploy_loop.py` (starts a sandbox in this process), or point it at a
running `ghapp sandbox` by setting GHAPP_URL, ORCHESTRATOR_TOKEN and GITHUB_API_URL (the lines
`ghapp sandbox` prints).
Needs the `langgraph` extra (from a checkout: `pip install -e '.[langgraph]'`).

The fix node stands in for the engineering subgraph: it receives the failure report and "fixes"
the deploy by changing the repository's sandbox scenario, so that the redeploy succeeds.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, TypedDict

import aiohttp
from langgraph.graph import END, START, StateGraph

from ghapp.client import Client
from ghapp.langgraph import AgentVerdict, deploy_node

REPOSITORY = "acme/shop"
MAX_ATTEMPTS = 3
BROKEN = {
    "outcome": "failure",
    "step": "Deploy on the server",
    "after_seconds": 1,
    "log": [
        "Pulling ghcr.io/acme/shop:4f2a9c1 on deploy@203.0.113.7",
        "ssh: connect to host 203.0.113.7 port 22: Connection refused",
    ],
}
FIXED = {"outcome": "success", "after_seconds": 1, "url": "https://shop.example.com"}


class LoopState(TypedDict, total=False):
    """The orchestrator's state: what to deploy, the last verdict, the developer's tasks."""

    repository: str
    deploy: AgentVerdict
    attempts: int
    tasks: list[str]


async def set_scenario(github_api_url: str, repository: str, scenario: dict[str, Any]) -> None:
    """What the repository's next deploy does (the sandbox's stand-in for its code)."""
    async with aiohttp.ClientSession() as http:
        url = f"{github_api_url}/sandbox/scenarios/{repository}"
        async with http.put(url, json=scenario) as answer:
            answer.raise_for_status()


def build_graph(ghapp_url: str, token: str, github_api_url: str) -> Any:
    """deploy -> (failure) fix -> deploy -> ... -> (success or too many attempts) end."""

    async def logs(verdict: AgentVerdict) -> str:
        """The verdict's report; from a server without reports, the failing steps' logs."""
        if verdict["report"]:
            return verdict["report"]
        async with Client(ghapp_url, token) as client:
            deployment = await client.get(verdict["deployment_id"])
        parts = [verdict["summary"], verdict["run_url"] or ""]
        for job in deployment.verdict.failed_jobs if deployment.verdict else []:
            parts += [f"Job {job.name}:", "```", job.log_excerpt, "```"]
        return "\n".join(parts)

    async def fix(state: LoopState) -> LoopState:
        task = "Fix deployment failure. Logs attached.\n\n" + await logs(state["deploy"])
        print(f"fix    <- {task.splitlines()[0]}")
        for line in task.splitlines()[1:]:
            print(f"          {line}")
        await set_scenario(github_api_url, state["repository"], FIXED)  # the "fix"
        return {"tasks": [*state.get("tasks", []), task]}

    def count(state: LoopState) -> LoopState:
        verdict = state["deploy"]
        shown = verdict["deployed_url"] or verdict["summary"]
        print(f"deploy -> {verdict['status']}: {shown} ({verdict['deployment_id']})")
        return {"attempts": state.get("attempts", 0) + 1}

    def route(state: LoopState) -> str:
        if state["deploy"]["status"] == "success" or state["attempts"] >= MAX_ATTEMPTS:
            return END
        return "fix"

    builder = StateGraph(LoopState)
    builder.add_node(
        "deploy",
        deploy_node(url=ghapp_url, token=token, repository=lambda s: s["repository"]),
    )
    builder.add_node("count", count)
    builder.add_node("fix", fix)
    builder.add_edge(START, "deploy")
    builder.add_edge("deploy", "count")
    builder.add_conditional_edges("count", route, ["fix", END])
    builder.add_edge("fix", "deploy")
    return builder.compile()


async def run_loop(ghapp_url: str, token: str, github_api_url: str) -> LoopState:
    """Break the repository's deploy, then let the graph deploy, fix and redeploy."""
    await set_scenario(github_api_url, REPOSITORY, BROKEN)
    graph = build_graph(ghapp_url, token, github_api_url)
    final: LoopState = await graph.ainvoke({"repository": REPOSITORY})
    return final


async def main() -> int:
    """Against the sandbox named by the environment, or one started here."""
    if os.environ.get("GHAPP_URL"):
        final = await run_loop(
            os.environ["GHAPP_URL"], os.environ["ORCHESTRATOR_TOKEN"], os.environ["GITHUB_API_URL"]
        )
    else:
        from ghapp.simulator.sandbox import Sandbox

        sandbox = await Sandbox.start()
        try:
            final = await run_loop(sandbox.url, sandbox.token, sandbox.github_api_url)
        finally:
            await sandbox.close()
    ok = final["deploy"]["status"] == "success"
    print(f"done after {final['attempts']} deploys: {final['deploy']['status']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
