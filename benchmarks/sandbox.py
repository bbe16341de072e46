"""The orchestrator's side: how soon `ghapp sandbox` is ready, and what the pytest plugin costs.

Method:

* Sandbox start: `ghapp sandbox` spawned on free ports (SQLite in memory, its default), timed
  from the spawn to the first 200 from ghapp's `/readyz`, then stopped with SIGTERM; 5 starts
  (1 in `--quick`), median and worst reported. Nothing judged: the contract sets no figure; the
  docs' "about 1 s on an idle machine" is checked against it.
* Plugin cost (issue 16: "must not slow down a suite that does not use the fixture"): a
  stand-in for a user's suite in a temporary folder (200 plain tests, no conftest, none using
  the fixture) run by pytest with the `ghapp.testing` plugin loaded as installed and with
  `-p no:ghapp.testing`, alternating, 5 rounds each (1 in `--quick`); CPU time of the pytest
  process (user + system: wall time swings with the machine's load where CPU time does not).
  The ratio with / without is judged against 1.05, the noise of the measure.
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks._common import CHILDREN, child_env, free_port, python, row, wait_http

NAME = "sandbox"
PLUGIN_RATIO_TARGET = 1.05
USER_SUITE = "".join(f"def test_{i}() -> None:\n    assert {i} + 1 > {i}\n\n" for i in range(200))


async def sandbox_start(tmp: Path, index: int) -> float:
    """Seconds from spawning `ghapp sandbox` to its ghapp answering /readyz."""
    port, github_port = free_port(), free_port()
    command = [python(), "-m", "ghapp", "sandbox", "--port", str(port),
               "--github-port", str(github_port)]
    started = time.monotonic()
    proc = await CHILDREN.spawn(command, env=child_env(), log_path=tmp / f"sandbox{index}.log")
    try:
        await wait_http(f"http://127.0.0.1:{port}/readyz", 60, proc)
        return time.monotonic() - started
    finally:
        await CHILDREN.stop(proc)


def pytest_cpu(suite: Path, *options: str) -> float:
    """CPU seconds (user + system) of one pytest run over the stand-in suite."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        [python(), "-m", "pytest", "-q", "-p", "no:cacheprovider", *options, str(suite)],
        cwd=suite, env=child_env(), check=True, capture_output=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


async def run(quick: bool, tmp: Path) -> dict[str, Any]:
    """The figures."""
    rounds = 1 if quick else 5
    starts = [await sandbox_start(tmp, i) for i in range(rounds)]
    suite = tmp / "user_suite"
    suite.mkdir()
    (suite / "test_user.py").write_text(USER_SUITE)
    with_plugin: list[float] = []
    without_plugin: list[float] = []
    for _ in range(rounds):
        with_plugin.append(await asyncio.to_thread(pytest_cpu, suite))
        without_plugin.append(await asyncio.to_thread(
            pytest_cpu, suite, "-p", "no:ghapp.testing"
        ))
    ratio = round(statistics.median(with_plugin) / statistics.median(without_plugin), 3)
    return {
        "sandbox_ready_s": [round(s, 2) for s in starts],
        "pytest_cpu_with_plugin_s": [round(s, 2) for s in with_plugin],
        "pytest_cpu_without_plugin_s": [round(s, 2) for s in without_plugin],
        "rows": [
            row("ghapp sandbox: spawn to /readyz, median", round(statistics.median(starts), 2),
                "s"),
            row("ghapp sandbox: spawn to /readyz, worst", round(max(starts), 2), "s"),
            row("pytest CPU with the plugin / without (median)", ratio, "",
                f"<= {PLUGIN_RATIO_TARGET:g}", ratio <= PLUGIN_RATIO_TARGET),
        ],
    }
