"""API economy: GitHub API requests per successful and per failed deployment, warm and cold.

Method:

* ghapp runs as `ghapp serve` in a child process (`ProcessServer`, SQLite, `POLL_AFTER` 3600 s so
  no fallback poll falls inside a measurement); the simulator counts every request it gets in
  `sim.requests`, with `origin` "api" (the REST API, what GitHub's rate limit counts) or "logs"
  (the signed log URL on another origin, which is not an API request).
* A deployment's requests are those the simulator received from just before the orchestrator's
  POST /api/v1/deployments until 0.3 s after its callback arrived (so a late call would count
  too). Runs are driven as in `benchmarks.latency` (in_progress, then completed).
* Cold: the first deployment after `ghapp serve` started (empty token and default-branch
  caches). Steady: the same repository again, 3 times (`--quick`: once), reporting the largest.
  Between the two, the first failure in a repository the process has not deployed yet (tokens
  warm, default branch not cached). Cold failure: a second, fresh process whose first deployment
  fails. Failures have one failed job (a small log) except one extra run with two failed jobs.
* Targets: exactly 1 request per successful deployment in steady state (the dispatch); at most
  1 + 3 per failed job on failure.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from benchmarks._common import CHILDREN, Rig, row
from benchmarks.latency import drive, failure_workflow, success_workflow
from ghapp.simulator.stack import ProcessServer

NAME = "economy"
SETTLE = 0.3
_NUMBER = re.compile(r"/\d+")


def template(path: str) -> str:
    """A request path with its numbers replaced by `{n}`."""
    return _NUMBER.sub("/{n}", path)


async def counted(rig: Rig, repository: str) -> dict[str, Any]:
    """Deploy once; the API and log requests it cost, with the API calls listed."""
    start = len(rig.sim.requests)
    result = await drive(rig, repository)
    await asyncio.sleep(SETTLE)
    requests = rig.sim.requests[start:]
    calls = [f"{r.method} {template(r.path)}" for r in requests if r.origin == "api"]
    return {
        "api": len(calls),
        "logs": sum(r.origin == "logs" for r in requests),
        "calls": calls,
        "status": result["status"],
    }


async def start(rig: Rig, log: Path) -> ProcessServer:
    """A fresh `ghapp serve` (empty caches) that the simulator's webhooks go to."""
    server = ProcessServer(rig.settings, log_path=str(log))
    try:
        rig.use(await server.start(timeout=60))
    finally:
        CHILDREN.adopt(server.process)
    return server


async def run(quick: bool, tmp: Path) -> dict[str, Any]:
    """Count the requests of each kind of deployment."""
    repeats = 1 if quick else 3
    rig = await Rig.start(tmp / "economy.db")
    rig.sim.auto = False
    rig.sim.add_repository("acme/shop").add_workflow(success_workflow())
    rig.sim.add_repository("acme/api").add_workflow(failure_workflow(16 * 1024))
    rig.sim.add_repository("acme/web").add_workflow(failure_workflow(16 * 1024, jobs=2))
    server: ProcessServer | None = None
    out: dict[str, Any] = {}
    try:
        server = await start(rig, tmp / "economy-ghapp.log")
        out["cold_success"] = await counted(rig, "acme/shop")
        out["steady_success"] = [await counted(rig, "acme/shop") for _ in range(repeats)]
        out["first_failure_new_repo"] = await counted(rig, "acme/api")
        out["steady_failure"] = [await counted(rig, "acme/api") for _ in range(repeats)]
        await counted(rig, "acme/web")
        out["steady_failure_two_jobs"] = await counted(rig, "acme/web")
        await server.stop()
        # A new process: its first deployment fails.
        server = await start(rig, tmp / "economy-ghapp2.log")
        out["cold_failure"] = await counted(rig, "acme/api")
    finally:
        if server is not None:
            await server.stop()
        await rig.close()
    return summarize(out)


def summarize(out: dict[str, Any]) -> dict[str, Any]:
    """Rows against the targets, plus every count."""
    steady_success = max(c["api"] for c in out["steady_success"])
    steady_failure = max(c["api"] for c in out["steady_failure"])
    two_jobs = out["steady_failure_two_jobs"]["api"]
    statuses = [out["cold_success"]["status"], *(c["status"] for c in out["steady_success"])]
    failures = [out["cold_failure"], out["first_failure_new_repo"], *out["steady_failure"],
                out["steady_failure_two_jobs"]]
    wrong = sum(s != "success" for s in statuses) + sum(c["status"] != "failure" for c in failures)
    rows = [
        row("success, steady state: API requests", steady_success, "", "== 1",
            steady_success == 1),
        row("success, cold (first after start)", out["cold_success"]["api"], ""),
        row("failure (1 failed job), steady: API requests", steady_failure, "", "<= 4",
            steady_failure <= 4),
        row("failure (2 failed jobs), steady", two_jobs, "", "<= 7", two_jobs <= 7),
        row("failure, first in a new repository", out["first_failure_new_repo"]["api"], ""),
        row("failure, cold (first after start)", out["cold_failure"]["api"], ""),
    ]
    if wrong:
        rows.append(row("verdicts with the wrong status", wrong, "", "0", False))
    return {
        "steady_success_api": steady_success,
        "cold_success_api": out["cold_success"]["api"],
        "steady_failure_api": steady_failure,
        "steady_failure_two_jobs_api": two_jobs,
        "first_failure_new_repo_api": out["first_failure_new_repo"]["api"],
        "cold_failure_api": out["cold_failure"]["api"],
        "wrong_status": wrong,
        "detail": out,
        "rows": rows,
    }
