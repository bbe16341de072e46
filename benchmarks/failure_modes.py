"""Every deployment gets its answer: each failure of GitHub or of its log host, timed.

Method: ghapp runs as a real `ghapp serve` child process (SQLite in a temporary directory,
production retry timings); the GitHub simulator, a silent host (accepts connections, never
answers) and the callback receiver run in this process on 127.0.0.1. Each scenario switches
one fault on, makes one deployment and reports what the orchestrator got and how long it took:
for the log host, the seconds from the request to the verdict's callback and the failed job's
`log_excerpt`; for the dispatch, the seconds to the API's answer (and to the verdict when one
follows). `REPORT_TIMEOUT` is set short (`--report-timeout`, default 10 s) so the deadlines
show in minutes, not hours.

    python -m benchmarks.failure_modes [--report-timeout 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from benchmarks._common import Rig
from ghapp.cli.demo import demo_workflows
from ghapp.simulator.stack import ProcessServer, free_port

Scenario = Callable[[Rig], Awaitable[dict[str, Any]]]


async def _post(rig: Rig) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    async with rig.session.post(
        f"{rig.base_url}/api/v1/deployments", json={"repository": "acme/api"}, headers=rig.auth
    ) as response:
        return response.status, await response.json(), time.monotonic() - started


async def _verdict(rig: Rig, repository: str = "acme/api") -> dict[str, Any]:
    started = time.monotonic()
    async with rig.session.post(
        f"{rig.base_url}/api/v1/deployments", json={"repository": repository}, headers=rig.auth
    ) as response:
        status, body = response.status, await response.json()
    answered = time.monotonic() - started
    if status != 202:
        return {"answer": status, "answer_s": answered, "message": body.get("message")}
    callback = await rig.receiver.wait_for(body["id"], timeout=180)
    verdict = callback.deployment["verdict"]
    jobs = verdict.get("failed_jobs") or [{}]
    return {
        "answer": status,
        "answer_s": round(answered, 2),
        "run_known_in_answer": body.get("run") is not None,
        "verdict_s": round(time.monotonic() - started, 2),
        "status": verdict["status"],
        "summary": verdict["summary"],
        "excerpt": (jobs[0].get("log_excerpt") or "")[:160],
    }


def _log_fault(**switches: Any) -> Scenario:
    async def scenario(rig: Rig) -> dict[str, Any]:
        for name, value in switches.items():
            setattr(rig.sim.faults, name, value)
        try:
            return await _verdict(rig)
        finally:
            for name in switches:
                setattr(rig.sim.faults, name, type(getattr(rig.sim.faults, name))())
    return scenario


async def _api_down_while_gathering(rig: Rig) -> dict[str, Any]:
    rig.sim.auto = False
    try:
        started = time.monotonic()
        async with rig.session.post(
            f"{rig.base_url}/api/v1/deployments", json={"repository": "acme/api"},
            headers=rig.auth,
        ) as response:
            body = await response.json()
        rig.sim.faults.server_errors = 10**6
        await rig.sim.finish(body["run"]["id"])
        callback = await rig.receiver.wait_for(body["id"], timeout=180)
        verdict = callback.deployment["verdict"]
        return {"verdict_s": round(time.monotonic() - started, 2), "status": verdict["status"],
                "summary": verdict["summary"]}
    finally:
        rig.sim.faults.server_errors = 0
        rig.sim.auto = True


def _late_answer(delay: float) -> Scenario:
    async def scenario(rig: Rig) -> dict[str, Any]:
        rig.sim.faults.dispatch_answer_delay = delay
        before = sum(1 for r in rig.sim.requests if r.path.endswith("/dispatches"))
        try:
            result = await _verdict(rig, "acme/shop")
        finally:
            rig.sim.faults.dispatch_answer_delay = 0.0
        result["dispatches"] = sum(
            1 for r in rig.sim.requests if r.path.endswith("/dispatches")
        ) - before
        return result
    return scenario


async def _five_hundreds(rig: Rig) -> dict[str, Any]:
    rig.sim.faults.server_errors = 10**6
    try:
        status, body, elapsed = await _post(rig)
    finally:
        rig.sim.faults.server_errors = 0
    return {"answer": status, "answer_s": round(elapsed, 2), "message": body.get("message")}


@asynccontextmanager
async def _silent_host() -> AsyncIterator[str]:
    held: list[asyncio.StreamWriter] = []

    async def hold(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        for writer in held:
            writer.close()
        server.close()


async def _unreachable(rig: Rig, api_url: str, logs: str) -> dict[str, Any]:
    settings = rig.settings.model_copy(update={"github_api_url": api_url})
    server = ProcessServer(settings, logs)
    base = rig.base_url
    try:
        rig.base_url = await server.start()
        status, body, elapsed = await _post(rig)
    finally:
        await server.stop()
        rig.base_url = base
    return {"answer": status, "answer_s": round(elapsed, 2), "message": body.get("message")}


async def run(report_timeout: float) -> list[dict[str, Any]]:
    """Every scenario in turn; one row each."""
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        rig = await Rig.start(Path(tmp) / "ghapp.db", report_timeout=report_timeout)
        for repository, workflow in demo_workflows().items():
            rig.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
        server = ProcessServer(rig.settings, f"{tmp}/serve.log")
        try:
            rig.use(await server.start())
            scenarios: list[tuple[str, Scenario]] = [
                ("no fault (failing run)", _log_fault()),
                ("log host stalls (1 byte/s)", _log_fault(stall_logs=True)),
                ("log host resets the connection", _log_fault(reset_logs=True)),
                ("log host cuts the body short", _log_fault(cut_logs=True)),
                ("log host redirects to another host:port",
                 _log_fault(redirect_logs=f"{rig.sim.api_url}/elsewhere")),
                ("log host redirects to file:///etc/passwd",
                 _log_fault(redirect_logs="file:///etc/passwd")),
                ("API answers 502 while the report is gathered", _api_down_while_gathering),
                ("dispatch: API answers 502", _five_hundreds),
                ("dispatch: answer 7 s late", _late_answer(7.0)),
                ("dispatch: answer never comes", _late_answer(3600.0)),
            ]
            for name, scenario in scenarios:
                outcome = await scenario(rig)
                results.append({"scenario": name, **outcome})
                print(json.dumps(results[-1]), flush=True)
            port = free_port()
            outcome = await _unreachable(rig, f"http://127.0.0.1:{port}", f"{tmp}/refused.log")
            results.append({"scenario": "dispatch: API refuses connections", **outcome})
            print(json.dumps(results[-1]), flush=True)
            async with _silent_host() as silent:
                outcome = await _unreachable(rig, silent, f"{tmp}/silent.log")
            results.append({"scenario": "dispatch: API accepts, never answers", **outcome})
            print(json.dumps(results[-1]), flush=True)
        finally:
            await server.stop()
            await rig.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report-timeout", type=float, default=10.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = asyncio.run(run(args.report_timeout))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
