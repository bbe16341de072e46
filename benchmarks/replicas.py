"""Deployments completed per second with one and with two `ghapp serve` replicas.

Method: PostgreSQL (DATABASE_URL from --database, default the local test database, emptied
first). The GitHub simulator, a round-robin balancer and the callback receiver run in this
process; each replica is a real `ghapp serve` child process. N deployments (half succeeding,
half failing with a short log) are requested at once through the balancer, webhooks go through
it too, and the clock runs from the first request to the last verdict received. Everything
shares this machine's two cores, so the numbers say how ghapp scales here, not on a fleet.

    python -m benchmarks.replicas [--deployments 200] [--database postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ghapp.cli.demo import demo_workflows
from ghapp.simulator.balancer import RoundRobinBalancer
from ghapp.simulator.stack import ProcessServer, Stack

DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/test"


async def _reset(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


async def measure(database: str, replicas: int, deployments: int) -> dict[str, Any]:
    """Run one round; returns deployments/s and the verdict latency spread."""
    await _reset(database)
    stack = await Stack.start(database, retry_base=0.05, poll_after=30)
    await stack.stop_ghapp()
    for repository, workflow in demo_workflows().items():
        stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
    with tempfile.TemporaryDirectory() as logs:
        servers = [ProcessServer(stack.settings, f"{logs}/r{n}.log") for n in range(replicas)]
        balancer = RoundRobinBalancer([])
        try:
            balancer.upstreams = list(await asyncio.gather(*(s.start() for s in servers)))
            stack.base_url = await balancer.start()
            stack.sim.webhook_url = stack.base_url + stack.settings.webhook_path
            started = time.perf_counter()
            answers = await asyncio.gather(
                *(
                    stack.deploy(repo)
                    for repo in ("acme/shop", "acme/api") * (deployments // 2)
                )
            )
            ids = [body["id"] for status, body in answers if status == 202]
            arrived = []
            for deployment_id in ids:
                await stack.receiver.wait_for(deployment_id, timeout=300)
                arrived.append(time.perf_counter() - started)
            elapsed = max(arrived)
            return {
                "replicas": replicas,
                "deployments": len(ids),
                "seconds": round(elapsed, 2),
                "deployments_per_second": round(len(ids) / elapsed, 1),
                "median_verdict_s": round(statistics.median(arrived), 2),
                "api_requests": stack.sim.api_calls(),
            }
        finally:
            await balancer.stop()
            for server in servers:
                await server.stop()
            await stack.close()


async def measure_all(database: str, deployments: int) -> list[dict[str, Any]]:
    """One replica, then two."""
    return [await measure(database, n, deployments) for n in (1, 2)]


def main(argv: list[str] | None = None) -> None:
    """Measure one replica, then two, and print both."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=200)
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    results = asyncio.run(measure_all(args.database, args.deployments))
    for row in results:
        print(
            f"{row['replicas']} replica(s): {row['deployments']} deployments in "
            f"{row['seconds']} s = {row['deployments_per_second']}/s "
            f"(median verdict at {row['median_verdict_s']} s)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
