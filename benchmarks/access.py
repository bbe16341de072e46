"""The cost of checking a scoped token (digest, cache, scope decision) per API request, beside
the single admin token.

Method: `ghapp serve` runs as a child process (SQLite) against the simulator; one deployment of
acme/shop is made, and a token `bench` (repositories `acme/*`, environments `staging`,
`production`, scopes `read`) is made through the API. Then rounds alternate, side by side: N
sequential `GET /api/v1/deployments/{id}` with `ORCHESTRATOR_TOKEN` (the reference: one
constant-time comparison, the admin grant), then N with the scoped token (SHA-256 of the
token, the 0.5 s cache, at most one indexed lookup a round of the cache, the glob decision on
the repository and environment). The figure is the server's CPU time (user + system, from
/proc) per request in each round; the ratio is the median of the scoped rounds over the median
of the admin ones (target: at most 1.05, i.e. at most 5% more CPU per API request).

Usage: ``python -m benchmarks --only access``.
"""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path
from typing import Any

from benchmarks._common import CHILDREN, Rig, cpu_seconds, row
from ghapp.cli.demo import demo_workflows
from ghapp.simulator.stack import ProcessServer

NAME = "access"
TARGET_RATIO = 1.05


async def _round(rig: Rig, pid: int, url: str, token: str, requests: int) -> float:
    """Server CPU seconds per request over `requests` sequential GETs with this token."""
    headers = {"Authorization": f"Bearer {token}"}
    before = cpu_seconds(pid)
    for _ in range(requests):
        async with rig.session.get(url, headers=headers) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"GET answered {response.status}")
    return (cpu_seconds(pid) - before) / requests


async def _deploy(rig: Rig) -> dict[str, Any]:
    """One deployment to read; tried again while a loaded machine makes the dispatch late."""
    for attempt in range(1, 6):
        try:
            return await rig.deploy("acme/shop", inputs={"environment": "staging"})
        except RuntimeError:
            if attempt == 5:
                raise
            await asyncio.sleep(2.0)
    raise AssertionError("unreachable")


async def run(quick: bool, tmp: Path) -> dict[str, Any]:
    """Rounds of admin-token and scoped-token requests, side by side."""
    requests, rounds = (100, 1) if quick else (2000, 7)
    rig = await Rig.start(tmp / "access.db")
    for repository, workflow in demo_workflows().items():
        rig.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
    server = ProcessServer(rig.settings, log_path=str(tmp / "access-ghapp.log"))
    try:
        try:
            rig.use(await server.start(timeout=60))
        finally:
            CHILDREN.adopt(server.process)
        assert server.process is not None
        pid = server.process.pid
        deployment = await _deploy(rig)
        async with rig.session.post(
            f"{rig.base_url}/api/v1/tokens",
            json={"name": "bench", "repositories": ["acme/*"],
                  "environments": ["staging", "production"], "scopes": ["read"]},
            headers=rig.auth,
        ) as response:
            scoped = (await response.json())["token"]
        admin = rig.settings.orchestrator_token or ""
        url = f"{rig.base_url}/api/v1/deployments/{deployment['id']}"
        await _round(rig, pid, url, admin, 50)  # warm-up: both paths, caches and imports
        await _round(rig, pid, url, scoped, 50)
        admin_rounds: list[float] = []
        scoped_rounds: list[float] = []
        for _ in range(rounds):
            admin_rounds.append(await _round(rig, pid, url, admin, requests))
            scoped_rounds.append(await _round(rig, pid, url, scoped, requests))
    finally:
        await server.stop()
        await rig.close()
    admin_us = statistics.median(admin_rounds) * 1e6
    scoped_us = statistics.median(scoped_rounds) * 1e6
    ratio = scoped_us / admin_us if admin_us else None
    judged = not quick and ratio is not None
    return {
        "requests_per_round": requests,
        "admin_cpu_us": [round(v * 1e6, 1) for v in admin_rounds],
        "scoped_cpu_us": [round(v * 1e6, 1) for v in scoped_rounds],
        "ratio": round(ratio, 3) if ratio is not None else None,
        "rows": [
            row("CPU per GET, ORCHESTRATOR_TOKEN (reference)", round(admin_us, 1), "us"),
            row("CPU per GET, scoped token", round(scoped_us, 1), "us"),
            row("scoped over admin", round(ratio, 3) if ratio is not None else None, "x",
                f"<= {TARGET_RATIO}" if judged else "",
                ratio <= TARGET_RATIO if judged and ratio is not None else None),
        ],
    }
