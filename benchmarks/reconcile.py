"""Reconciliation at scale: deployments whose runs all completed while ghapp was down.

Method:

* The simulator (this process) holds R repositories of one installation, each with a one-job,
  one-step `deploy.yml` whose job deploys to `production` at a URL naming the run (so every
  success has a deployment and a `deployed_url` to find). N runs are started directly in the
  simulator (no ghapp), spread evenly over the repositories, and run to completion with every
  webhook dropped: ghapp never hears of them. The simulator's clock for them is then moved
  back ten minutes (and the dispatch times written with it): they ended during an outage.
* N deployments bound to those runs are written to the database as ghapp's dispatch writes
  them (`SqlStore.create(new_deployment(...))`, state `dispatched`, the run id and the
  installation known), then `ghapp serve` is started on that existing database (pinned to
  core 0; SQLite file or PostgreSQL) with `POLL_AFTER` 3600 s, so what settles them is the
  start-up reconciliation alone.
* Measured from the spawn of `ghapp serve`: the time until the callback receiver has every
  deployment's verdict (each checked: status `success`, the run's id, the `deployed_url` of
  its run), and the API requests the simulator counts meanwhile, by kind: run listings,
  single runs, `deployed_url` detail requests the REST way (`/deployments`, statuses), GraphQL
  queries, installation tokens and the rest. Judged: all of them together (issue 23: the
  `deployed_url` of 10,000 successes in at most 200 GraphQL requests, at most 400 in all).
* The simulator's installation limit is set to 15,000 requests an hour (GitHub Enterprise
  Cloud's installation limit), as before issue 23 when each success cost two REST requests;
  GraphQL has a budget of its own.
* Targets (issues 17 and 23): 10,000 over 100 repositories within 120 s with at most 400 API
  requests in all, on SQLite and on PostgreSQL (when `GHAPP_TEST_POSTGRES_URL` names a
  database: its schema is dropped); 300 over 6 repositories within 30 s. `--quick`: 300 over
  6 on SQLite only.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks._common import CHILDREN, SERVER_CPUS, Rig, child_env, free_port, python, row
from ghapp.core.deploys import new_deployment
from ghapp.core.models import DeploymentRequest
from ghapp.simulator import Job, Step, Workflow
from ghapp.simulator.stack import settings_env
from ghapp.store import SqlStore

NAME = "reconcile"
POSTGRES_ENV = "GHAPP_TEST_POSTGRES_URL"
INSTALLATION_LIMIT = 15_000
REQUEST_TARGET = 400
# (deployments, repositories, seconds allowed)
FULL = [(10_000, 100, 120.0), (300, 6, 30.0)]
QUICK = [(300, 6, 30.0)]
GRAPHQL_TARGET = 200
# How long before ghapp starts the runs ended (the outage).
OUTAGE = 600
URL = "https://svc.example.com/run/${{ github.run_id }}"


def workflow() -> Workflow:
    """A deploy that succeeds in one step, deploying to `production` at a URL naming the run."""
    return Workflow(file="deploy.yml", name="Deploy",
                    jobs=[Job(name="deploy", steps=[Step("Deploy", command="./deploy.sh")],
                              environment="production", environment_url=URL)])


def backdate(sim: Any, seconds: int) -> None:
    """Move the simulator's runs and deployments back in time."""
    for run in sim.runs.values():
        run.created -= seconds
        run.run_started -= seconds
        run.updated -= seconds
    for deployment in sim.world.deployments.values():
        deployment.created -= seconds
        for status in deployment.statuses:
            status.created -= seconds


async def reset_postgres(url: str) -> None:
    """Drop and recreate the public schema (the database is the benchmark's own)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


async def scenario(
    tmp: Path, database_url: str, total: int, repositories: int, allowed: float
) -> dict[str, Any]:
    """One run of the method above; its figures."""
    rig = await Rig.start(tmp / "unused.db")
    rig.settings = rig.settings.model_copy(update={"database_url": database_url})
    rig.sim.rate_limit = INSTALLATION_LIMIT
    rig.sim.auto = False
    rig.sim.faults.drop_webhooks = True
    proc = None
    store = SqlStore(database_url)
    try:
        names = [f"acme/svc-{i:03d}" for i in range(repositories)]
        for name in names:
            rig.sim.add_repository(name).add_workflow(workflow())
        installation = rig.sim.repos[names[0]].installation_id
        dispatched = datetime.now(UTC) - timedelta(seconds=OUTAGE)
        runs = [await rig.sim.dispatch(names[i % repositories]) for i in range(total)]
        for run in runs:
            await rig.sim.finish(run.id)
            # Every webhook was dropped: the simulator's record of them (GBs) is not needed.
            rig.sim.webhooks.deliveries.clear()
        backdate(rig.sim, OUTAGE)
        await store.open()
        started = time.perf_counter()
        ids = []
        for i, run in enumerate(runs):
            request = DeploymentRequest(repository=names[i % repositories], ref="main")
            record = new_deployment(
                f"dep_{uuid.uuid4().hex[:24]}", request, ref="main",
                callback_url=rig.receiver.url, installation_id=installation, run_id=run.id,
                html_url=f"https://github.com/{names[i % repositories]}/actions/runs/{run.id}",
                now=dispatched,
            )
            await store.create(record)
            ids.append((record.id, run.id))
        insert_s = time.perf_counter() - started
        await store.close()
        first_request = len(rig.sim.requests)
        port = free_port()
        env = child_env(settings_env(rig.settings, port))
        began = time.monotonic()
        proc = await CHILDREN.spawn([python(), "-m", "ghapp", "serve"], env=env,
                                    cpus=SERVER_CPUS, log_path=tmp / f"reconcile-{total}.log")
        deadline = began + max(allowed * 3, 60.0)
        while len(rig.receiver.delivered()) < total and time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"ghapp serve exited with {proc.returncode}")
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # a duplicate would have come by now
        delivered = rig.receiver.delivered()
        wall_start = time.time() - (time.monotonic() - began)
        last = max((c.arrived_at for c in delivered), default=time.time()) - wall_start
        runs_of = dict(ids)
        wrong = sum(
            1 for c in delivered
            if c.deployment["verdict"]["status"] != "success"
            or c.deployment["run"]["id"] != runs_of.get(c.deployment["id"])
            or c.deployment["verdict"]["deployed_url"]
            != URL.replace("${{ github.run_id }}", str(c.deployment["run"]["id"]))
        )
        requests = [r for r in rig.sim.requests[first_request:] if r.origin == "api"]
        kinds = rig.sim.request_counts(since=first_request)
        return {
            "deployments": total,
            "repositories": repositories,
            "database": database_url.split(":")[0],
            "insert_s": round(insert_s, 1),
            "verdicts": len({c.deployment["id"] for c in delivered}),
            "duplicates": len(delivered) - len({c.deployment["id"] for c in delivered}),
            "wrong": wrong,
            "last_verdict_s": round(last, 1),
            "allowed_s": allowed,
            "api_requests": len(requests),
            "listings": kinds["listing"],
            "not_modified": sum(1 for r in requests if r.status == 304),
            "single_runs": kinds["run"],
            "detail": kinds["deployments"],
            "graphql": kinds["graphql"],
            "graphql_errors": sum(1 for r in requests if r.kind == "graphql" and r.fault),
            "tokens": kinds["token"],
            "other": len(requests) - sum(
                kinds[k] for k in ("listing", "run", "deployments", "graphql", "token")),
        }
    finally:
        if proc is not None:
            await CHILDREN.stop(proc)
        await store.close()
        await rig.close()


async def run(quick: bool, tmp: Path) -> dict[str, Any]:
    """Each size on SQLite, and on PostgreSQL where one is configured (not with --quick)."""
    databases = [("sqlite", None)]
    postgres = os.environ.get(POSTGRES_ENV)
    if postgres and not quick:
        databases.append(("postgresql", postgres))
    results = []
    for total, repositories, allowed in QUICK if quick else FULL:
        for kind, url in databases:
            folder = tmp / f"{kind}-{total}"
            folder.mkdir()
            if url is None:
                url = f"sqlite:///{folder / 'ghapp.db'}"
            else:
                await reset_postgres(url)
            results.append(await scenario(folder, url, total, repositories, allowed))
    return {"results": results, "rows": rows(results)}


def rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table rows: time to the last verdict and the requests, each against its target."""
    out = []
    for r in results:
        label = f"{r['deployments']} over {r['repositories']} repos, {r['database']}"
        complete = r["verdicts"] == r["deployments"] and not r["wrong"]
        out.append(row(f"{label}: last verdict after restart", r["last_verdict_s"], "s",
                       f"<= {r['allowed_s']:g}",
                       complete and r["last_verdict_s"] <= r["allowed_s"]))
        if not complete:
            out.append(row(f"{label}: verdicts (wrong)", f"{r['verdicts']} ({r['wrong']})",
                           "", f"== {r['deployments']}", False))
        judged = r["deployments"] == 10_000
        out.append(row(
            f"{label}: API requests (listings {r['listings']}, 304 {r['not_modified']}, "
            f"single runs {r['single_runs']}, deployed_url detail {r['detail']}, "
            f"GraphQL {r['graphql']}, tokens {r['tokens']}, other {r['other']})",
            r["api_requests"], "",
            f"<= {REQUEST_TARGET}" if judged else "",
            r["api_requests"] <= REQUEST_TARGET if judged else None,
        ))
        out.append(row(f"{label}: GraphQL requests (deployed_url)", r["graphql"], "",
                       f"<= {GRAPHQL_TARGET}" if judged else "",
                       r["graphql"] <= GRAPHQL_TARGET if judged else None))
    return out
