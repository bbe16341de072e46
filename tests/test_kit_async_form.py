"""docs/kit.md's async form of a fixture test: with pytest-asyncio and its marker it runs (no
`asyncio_mode = "auto"` needed); without the marker pytest stops, as the page warns."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

ASYNC_TESTS = '''
import pytest

SSH_REFUSED = "ssh: connect to host 203.0.113.7 port 22: Connection refused"


@pytest.mark.asyncio
async def test_a_refused_ssh_is_reported_async(ghapp_sandbox):
    ghapp_sandbox.scenario("acme/shop", outcome="failure", log=[SSH_REFUSED], after_seconds=0.5)
    async with ghapp_sandbox.client() as client:
        dep = await client.deploy("acme/shop")
        callback = await ghapp_sandbox.wait_for_callback(dep.id)
    assert callback.deployment.verdict.status == "failure"


async def test_without_the_marker(ghapp_sandbox):
    pass
'''


def test_the_async_form_needs_pytest_asyncio_and_its_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_orchestrator=ASYNC_TESTS)
    # pytest-asyncio's default (strict) mode: only marked tests are its.
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest("-p", "ghapp.testing", "-p", "no:aiohttp", "-q")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*async def functions are not natively supported*"])
