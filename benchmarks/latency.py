"""Verdict latency: from the simulator sending `workflow_run.completed` to the verdict's arrival.

Method:

* ghapp runs as `ghapp serve` in a child process (`ghapp.simulator.stack.ProcessServer`, SQLite in a
  temporary directory, JSON logs to a file); the GitHub simulator and a timestamping callback
  receiver run in this process, on 127.0.0.1, so both ends of the interval are read from the same
  clock (`time.time()`).
* Start of the interval: `attempt_time` of the simulator's `Delivery` record of the run's
  `workflow_run.completed` webhook, taken just before it is posted. End: the moment the receiver
  has read the callback's body (`ghapp.simulator.receiver.CallbackReceiver`, which notes
  `arrived_at`).
* Deployments go one after another (no load), each driven by hand (`sim.auto = False`): ghapp
  dispatches through the orchestrator API; the run is moved to `in_progress` (its webhooks sent
  and answered), then completed with its webhooks held (`faults.hold_webhooks`), which are then
  released in GitHub's order (`workflow_job.completed`, `deployment_status`, and last
  `workflow_run.completed`).
* Success: a job with `environment: production` and its URL, so the `deployment_status` webhook
  has given ghapp the deployed URL before the run completes (no API call is needed).
* Failure: one job whose failing step is preceded by a 5 MiB log (`Job(log_padding_bytes=5 MiB)`):
  ghapp lists the jobs, follows the log's 302, streams and excerpts the log, reads annotations.
  The simulator renders logs line by line in Python (200-300 ms for 5 MiB on this machine), which
  would be the simulator's time, not ghapp's: each failed job's log is rendered while its
  webhooks are held and then served from that copy, as GitHub serves a stored log. The render time
  is reported apart (`sim_log_render`) and is not part of the latency.
* One success and one failure first warm ghapp up (token cache, default branch, connections);
  then 200 of each (`--quick`: 3, with a 256 KiB log). Each kind stops early after 150 s, and
  says how many it measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks._common import CHILDREN, MIB, Rig, row, summary_ms
from ghapp.simulator import Job, Step, Workflow
from ghapp.simulator import logs as sim_logs
from ghapp.simulator.stack import ProcessServer
from ghapp.simulator.state import JobState, RunState

NAME = "latency"
SUCCESS_REPO = "acme/shop"
FAILURE_REPO = "acme/api"
TIME_CAP = 150.0
SUCCESS_TARGET_MS = 50.0
FAILURE_TARGET_MS = 250.0


def success_workflow() -> Workflow:
    """Checkout, build, deploy: succeeds and names its environment URL."""
    return Workflow(
        file="deploy.yml",
        name="Deploy",
        jobs=[
            Job(
                "deploy",
                environment="production",
                environment_url="https://shop.example.com",
                steps=[
                    Step("Run actions/checkout@v4", command="actions/checkout@v4"),
                    Step("Build image", command="docker build -t ghcr.io/acme/shop ."),
                    Step("Deploy over SSH", command="./deploy.sh"),
                ],
            )
        ],
    )


def failure_workflow(log_bytes: int, jobs: int = 1) -> Workflow:
    """`jobs` jobs whose last step fails after `log_bytes` of log."""
    return Workflow(
        file="deploy.yml",
        name="Deploy",
        jobs=[
            Job(
                "deploy" if jobs == 1 else f"deploy-{i}",
                log_padding_bytes=log_bytes,
                steps=[
                    Step("Run actions/checkout@v4", command="actions/checkout@v4"),
                    Step("Build image", command="docker build -t ghcr.io/acme/api ."),
                    Step(
                        "Deploy over SSH",
                        command="./deploy.sh",
                        fail=True,
                        output=["ssh: connect to host 203.0.113.7 port 22: Connection refused"],
                        error="Process completed with exit code 255.",
                    ),
                ],
            )
            for i in range(jobs)
        ],
    )


class StoredLogs:
    """Serve chosen jobs' logs from a copy rendered beforehand (as GitHub serves stored logs)."""

    def __init__(self) -> None:
        self.copies: dict[int, list[bytes]] = {}
        self.render_seconds: list[float] = []
        self._original = sim_logs.render

    def store(self, run: RunState, job: JobState) -> None:
        """Render one job's log now and keep it; the time it took is recorded."""
        started = time.perf_counter()
        self.copies[id(job)] = list(self._original(run, job))
        self.render_seconds.append(time.perf_counter() - started)

    def render(self, run: RunState, job: JobState) -> Iterator[bytes]:
        """What the simulator's log host calls: the stored copy, else a fresh render."""
        copy = self.copies.get(id(job))  # by object: job ids repeat across simulators
        return iter(copy) if copy is not None else self._original(run, job)

    @contextlib.contextmanager
    def installed(self) -> Iterator[StoredLogs]:
        """Patch the simulator's renderer for the duration."""
        sim_logs.render = self.render
        try:
            yield self
        finally:
            sim_logs.render = self._original


async def drive(rig: Rig, repository: str, stored: StoredLogs | None = None) -> dict[str, Any]:
    """One deployment from dispatch to verdict; its latency and its dispatch-to-verdict time."""
    sim = rig.sim
    began = time.time()
    deployment = await rig.deploy(repository)
    run_id = int(deployment["run"]["id"])
    await sim.advance(run_id)  # queued -> in_progress, webhooks answered
    sim.faults.hold_webhooks = True
    try:
        await sim.advance(run_id)  # in_progress -> completed, webhooks held
    finally:
        sim.faults.hold_webhooks = False
    run = sim.runs[run_id]
    if stored is not None:
        for job in run.jobs:
            if job.conclusion not in ("success", "skipped", None):
                stored.store(run, job)
    first = len(sim.deliveries)
    await sim.release_webhooks()
    callback = await rig.receiver.wait_for(deployment["id"])
    verdict, arrived = callback.deployment, callback.arrived_at
    completed = next(
        d for d in sim.deliveries[first:]
        if d.event == "workflow_run" and d.action == "completed"
        and d.payload["workflow_run"]["id"] == run_id
    )
    if stored is not None:
        for job in run.jobs:
            stored.copies.pop(id(job), None)
    return {
        "deployment": deployment["id"],
        "status": (verdict.get("verdict") or {}).get("status"),
        "latency": arrived - completed.attempt_time.timestamp(),
        "webhook_answer": completed.duration,
        "dispatch_to_verdict": arrived - began,
    }


async def series(
    rig: Rig, repository: str, count: int, stored: StoredLogs | None
) -> tuple[list[dict[str, Any]], bool]:
    """`count` deployments one after another (or fewer if TIME_CAP runs out)."""
    results = []
    deadline = time.monotonic() + TIME_CAP
    for _ in range(count):
        results.append(await drive(rig, repository, stored))
        if time.monotonic() > deadline:
            return results, True
    return results, False


async def run(quick: bool, tmp: Path) -> dict[str, Any]:
    """Measure both kinds of verdict against a `ghapp serve` process."""
    count = 3 if quick else 200
    log_bytes = 256 * 1024 if quick else 5 * MIB
    rig = await Rig.start(tmp / "latency.db")
    server: ProcessServer | None = None
    stored = StoredLogs()
    try:
        rig.sim.auto = False
        rig.sim.add_repository(SUCCESS_REPO).add_workflow(success_workflow())
        rig.sim.add_repository(FAILURE_REPO).add_workflow(failure_workflow(log_bytes))
        server = ProcessServer(rig.settings, log_path=str(tmp / "latency-ghapp.log"))
        try:
            rig.use(await server.start(timeout=60))
        finally:
            CHILDREN.adopt(server.process)
        with stored.installed():
            await drive(rig, SUCCESS_REPO)
            await drive(rig, FAILURE_REPO, stored)
            stored.render_seconds.clear()
            successes, success_capped = await series(rig, SUCCESS_REPO, count, None)
            failures, failure_capped = await series(rig, FAILURE_REPO, count, stored)
    finally:
        if server is not None:
            await server.stop()
        await rig.close()
    success = summary_ms([r["latency"] for r in successes])
    failure = summary_ms([r["latency"] for r in failures])
    wrong = sum(r["status"] != "success" for r in successes)
    wrong += sum(r["status"] != "failure" for r in failures)
    rows = [
        row("success: verdict latency median", success["median_ms"], "ms",
            f"<= {SUCCESS_TARGET_MS:g}", success["median_ms"] <= SUCCESS_TARGET_MS),
        row("success: verdict latency p99", success["p99_ms"], "ms"),
        row(f"failure ({log_bytes // 1024} KiB log): verdict latency median",
            failure["median_ms"], "ms", f"<= {FAILURE_TARGET_MS:g}",
            failure["median_ms"] <= FAILURE_TARGET_MS),
        row("failure: verdict latency p99", failure["p99_ms"], "ms"),
        row("simulator log render (excluded) median",
            summary_ms(stored.render_seconds).get("median_ms"), "ms"),
    ]
    if wrong:
        rows.append(row("verdicts with the wrong status", wrong, "", "0", False))
    return {
        "deployments_per_kind": count,
        "log_bytes": log_bytes,
        "success": success,
        "failure": failure,
        "success_capped": success_capped,
        "failure_capped": failure_capped,
        "wrong_status": wrong,
        "webhook_answer": {
            "success": summary_ms([r["webhook_answer"] for r in successes]),
            "failure": summary_ms([r["webhook_answer"] for r in failures]),
        },
        "dispatch_to_verdict": {
            "success": summary_ms([r["dispatch_to_verdict"] for r in successes]),
            "failure": summary_ms([r["dispatch_to_verdict"] for r in failures]),
        },
        "sim_log_render": summary_ms(stored.render_seconds),
        "rows": rows,
    }


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        print(asyncio.run(run(True, Path(folder))))
