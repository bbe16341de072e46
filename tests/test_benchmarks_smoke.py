"""The benchmark suite's smoke run (`python -m benchmarks --quick`): it runs, and says it all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPECTED: dict[str, list[str]] = {
    "ingest": ["generator", "results", "ghapp_over_bare_1w", "body_bytes", "rows"],
    "latency": ["success", "failure", "sim_log_render", "wrong_status", "rows"],
    "economy": [
        "steady_success_api", "cold_success_api", "steady_failure_api", "cold_failure_api",
        "steady_failure_two_jobs_api", "wrong_status", "rows",
    ],
    "log_excerpt": ["sizes_mib", "results", "rows"],
    "stats": ["deployments", "sqlite", "rows"],
    "metadata": ["rows"],
    "causes": [
        "rules", "lines", "results", "verdict_path_added_ms", "reference_one_search_ms", "rows",
    ],
    "scale": [
        "idle_rss_mib", "idle_first_rss_mib", "ready_empty_s", "ready_s", "claimed_all_s",
        "baseline", "at_scale", "polls_per_s", "rss_mib", "rows",
    ],
    "streams": ["results", "rows"],
    "reconcile": ["results", "rows"],
    "takeover": ["rows"],
    "memory": [
        "idle_rss_mib", "idle_first_rss_mib", "workers2_tree_rss_mib",
        "workers2_supervisor_rss_mib", "rows",
    ],
    "sandbox": [
        "sandbox_ready_s", "pytest_cpu_with_plugin_s", "pytest_cpu_without_plugin_s", "rows",
    ],
    "untrusted": ["sizes_kib", "results", "rows"],
    "gate": ["figures", "answered", "wrong_status", "rows"],
    "soak": ["results", "rows"],
    "access": ["admin_cpu_us", "scoped_cpu_us", "ratio", "rows"],
}
SERVERS = ["ghapp-1w", "ghapp-2w", "bare-1w", "bare-2w"]


@pytest.mark.timeout(240)
@pytest.mark.skipif(
    not os.environ.get("GHAPP_TEST_BENCHMARKS"),
    reason="GHAPP_TEST_BENCHMARKS=1 runs the benchmark smoke run (fifteen benchmarks side by "
    "side: two minutes of a core, past CI's ten minutes on two slow cores)",
)
def test_quick_suite_runs_and_reports_every_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=230, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    document: dict[str, Any] = json.loads(out.read_text())
    assert document["quick"] is True and document["date"]
    for key in ("nproc", "cpu_model", "python", "git_commit"):
        assert key in document["machine"]
    benchmarks = document["benchmarks"]
    assert set(benchmarks) == set(EXPECTED)
    for name, keys in EXPECTED.items():
        assert "error" not in benchmarks[name], benchmarks[name].get("error")
        missing = [key for key in keys if key not in benchmarks[name]]
        assert not missing, f"{name} lacks {missing}"
        assert benchmarks[name]["rows"], f"{name} has no table rows"
    for server in SERVERS:
        result = benchmarks["ingest"]["results"][server]
        assert result["requests"] > 0 and result["non_2xx"] == 0, (server, result)
        for key in ("rate", "p50_ms", "p99_ms"):
            assert key in result
    for kind in ("success", "failure"):
        assert benchmarks["latency"][kind]["n"] > 0
    assert benchmarks["latency"]["wrong_status"] == 0
    assert benchmarks["economy"]["wrong_status"] == 0
    assert {"metric", "value", "target", "met"} <= set(document["targets"][0])
    assert "ingest" in done.stdout and "scale" in done.stdout  # the printed table
