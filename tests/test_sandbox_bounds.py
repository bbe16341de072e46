"""The sandbox's doors, against a real `ghapp sandbox` process: bounded scenarios, loopback Hosts.

- a scenario is at most 64 KiB of JSON (`413` before more is read) and at most 100 repositories
  have their own (`409`): 40 PUTs of 1 MiB used to keep +41 MB;
- the simulator and the sandbox's ghapp answer only a `Host` on loopback (`421` otherwise), so
  a web page cannot reach them by pointing its own name at 127.0.0.1 (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import sys
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from ghapp.simulator.loopback import loopback_host
from ghapp.simulator.scenarios import (
    MAX_SCENARIO_BYTES,
    MAX_SCENARIOS,
    Scenario,
    ScenarioBook,
    ScenarioError,
    parse_scenario,
)
from ghapp.simulator.stack import free_port

MIB = 1024 * 1024


class Running:
    def __init__(self, process: asyncio.subprocess.Process, env: dict[str, str]) -> None:
        self.process = process
        self.env = env

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        assert found is not None
        return int(found.group(1))


@pytest.fixture
async def sandbox() -> AsyncIterator[Running]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ghapp", "sandbox",
        "--port", str(free_port()), "--github-port", str(free_port()),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    env: dict[str, str] = {}
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            while "GITHUB_API_URL" not in env or "GHAPP_URL" not in env:
                line = (await process.stdout.readline()).decode()
                assert line, "ghapp sandbox exited"
                name, _, value = line.strip().partition("=")
                env[name] = value
        yield Running(process, env)
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost:3000", True),
        ("LOCALHOST.:3000", True),
        ("127.0.0.1:3100", True),
        ("127.1.2.3", True),
        ("[::1]:3000", True),
        ("[::1]", True),
        ("[::ffff:127.0.0.1]:80", True),
        ("evil.example:3000", False),
        ("127.0.0.1.evil.example", False),
        ("localhost.evil.example", False),
        ("10.0.0.1:3000", False),
        ("[::2]:3000", False),
        ("[::1:3000", False),
        ("127.0.0.1:99999", False),
        ("127.0.0.1:30x0", False),
        ("", False),
        (None, False),
    ],
)
def test_which_hosts_are_loopback(host: str | None, loopback: bool) -> None:
    assert loopback_host(host) is loopback


async def test_only_loopback_hosts_are_answered(sandbox: Running) -> None:
    github, ghapp = sandbox.env["GITHUB_API_URL"], sandbox.env["GHAPP_URL"]
    github_port, ghapp_port = github.rsplit(":", 1)[1], ghapp.rsplit(":", 1)[1]
    scenario = f"{github}/sandbox/scenarios/acme/shop"
    async with aiohttp.ClientSession() as http:
        for url, port in ((scenario, github_port), (f"{ghapp}/healthz", ghapp_port)):
            for host in (f"evil.example:{port}", "127.0.0.1.nip.example", "attacker.test"):
                async with http.get(url, headers={"Host": host}) as answer:
                    assert answer.status == 421, (url, host)
                    body = await answer.json()
                    assert "DNS rebinding" in body["message"] and host in body["message"]
            for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
                async with http.get(url, headers={"Host": host}) as answer:
                    assert answer.status == 200, (url, host)
        # A refused PUT changes nothing.
        async with http.put(
            scenario, json={"outcome": "failure"}, headers={"Host": "evil.example"}
        ) as answer:
            assert answer.status == 421
        async with http.get(scenario) as answer:
            assert (await answer.json())["outcome"] == "success"


async def one_mib_chunks(total: int) -> AsyncIterable[bytes]:
    yield b'{"log": ["'
    for _ in range(total // (64 * 1024)):
        yield b"x" * (64 * 1024)
    yield b'"]}'


async def test_scenarios_are_bounded_in_size_and_number(sandbox: Running) -> None:
    github = sandbox.env["GITHUB_API_URL"]
    url = f"{github}/sandbox/scenarios/acme/"
    async with aiohttp.ClientSession() as http:
        # Warm up the route (its code loaded) before the memory baseline.
        async with http.put(url + "warm", json={"log": ["x"]}) as answer:
            assert answer.status == 200
        await asyncio.sleep(0.5)
        before = sandbox.rss_kib()
        big = json.dumps({"log": ["x" * MIB]}).encode()
        for n in range(40):
            async with http.put(f"{url}big{n}", data=io.BytesIO(big)) as answer:
                assert answer.status == 413, await answer.text()
        # Without Content-Length (chunked) the body is cut as it streams in.
        async with http.put(url + "chunked", data=one_mib_chunks(MIB)) as answer:
            assert answer.status == 413
        await asyncio.sleep(0.5)
        grown = sandbox.rss_kib() - before
        assert grown < 8 * 1024, f"+{grown} KiB after 41 refused 1 MiB scenarios"
        # Just under the bound is a scenario.
        lines = ["l" * 98] * ((MAX_SCENARIO_BYTES - 100) // 102)
        async with http.put(url + "fits", json={"outcome": "failure", "log": lines}) as answer:
            assert answer.status == 200, await answer.text()
        # The number: `warm` and `fits` have theirs; fill up to the bound, then one more.
        for n in range(MAX_SCENARIOS - 2):
            async with http.put(f"{url}repo{n}", json={"after_seconds": 1}) as answer:
                assert answer.status == 200, (n, await answer.text())
        async with http.put(url + "one-too-many", json={}) as answer:
            assert answer.status == 409
            assert (await answer.json())["error"] == "too_many_scenarios"
        # Replacing one is fine; after a DELETE there is room again.
        async with http.put(url + "repo0", json={"after_seconds": 2}) as answer:
            assert answer.status == 200
        async with http.delete(url + "repo1") as answer:
            assert answer.status == 204
        async with http.put(url + "one-too-many", json={}) as answer:
            assert answer.status == 200
        async with http.get(url + "never-set") as answer:
            assert (await answer.json())["outcome"] == "success"  # the default


def test_a_scenario_from_a_file_or_the_fixture_is_bounded_too() -> None:
    """No body cap there: the scenario itself is checked, and the error names `log`."""
    with pytest.raises(ScenarioError, match="log"):
        parse_scenario({"log": ["x" * MAX_SCENARIO_BYTES]})
    with pytest.raises(ScenarioError, match="log"):
        parse_scenario({"log": ["\u0001" * (MAX_SCENARIO_BYTES // 5)]})  # escapes count
    book = ScenarioBook({f"acme/r{n}": Scenario() for n in range(MAX_SCENARIOS)})
    with pytest.raises(ScenarioError, match=f"at most {MAX_SCENARIOS}"):
        book.set("acme/one-more", Scenario())
    book.set("acme/r0", Scenario(outcome="failure"))  # replacing is fine
