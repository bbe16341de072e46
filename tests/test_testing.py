"""The `ghapp.testing` pytest plugin, used by a test file of its own (run through pytester)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest_plugins = ["pytester"]

ORCHESTRATOR_TESTS = textwrap.dedent(
    """
    import asyncio

    import pytest

    from ghapp.client import verify_callback
    from ghapp.simulator.scenarios import ScenarioError

    SSH_REFUSED = "ssh: connect to host 203.0.113.7 port 22: Connection refused"


    def test_failure_scenario_reaches_the_orchestrator(ghapp_sandbox):
        ghapp_sandbox.scenario(
            "acme/shop", outcome="failure", log=[SSH_REFUSED], after_seconds=0.2
        )

        async def deploy():
            async with ghapp_sandbox.client() as client:
                dep = await client.deploy("acme/shop", metadata={"thread_id": "t1"})
                return dep, await ghapp_sandbox.wait_for_callback(dep.id)

        dep, callback = asyncio.run(deploy())
        verdict = callback.deployment.verdict
        assert verdict.status == "failure"
        assert verdict.failed_jobs[0].failed_step.name == "Deploy on the server"
        assert SSH_REFUSED in verdict.failed_jobs[0].log_excerpt
        assert callback.deployment.metadata == {"thread_id": "t1"}
        assert [c.deployment.id for c in ghapp_sandbox.callbacks] == [dep.id]
        assert verify_callback(callback.body, callback.headers, ghapp_sandbox.callback_secret)


    async def test_default_succeeds_with_a_url(ghapp_sandbox):
        async with ghapp_sandbox.client() as client:
            dep = await client.deploy("someone/anything")
            done = await client.wait(dep.id, interval=0.2, timeout=30)
        assert done.verdict.status == "success"
        assert done.verdict.deployed_url == "https://anything.someone.example"


    def test_a_bad_scenario_field_is_named(ghapp_sandbox):
        with pytest.raises(ScenarioError, match="after_seconds"):
            ghapp_sandbox.scenario("acme/shop", after_seconds=-1)
        with pytest.raises(ScenarioError, match="outcom"):
            ghapp_sandbox.scenario("acme/shop", outcom="success")
    """
)


def test_fixture_runs_an_orchestrators_tests(pytester: pytest.Pytester) -> None:
    """A sync test, an async one (pytest-asyncio) and a bad scenario, all through the fixture."""
    pytester.makepyfile(test_orchestrator=ORCHESTRATOR_TESTS)
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    result = pytester.runpytest("-p", "ghapp.testing", "-q")
    result.assert_outcomes(passed=3)


def test_without_the_plugin_there_is_no_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_orchestrator="def test_x(ghapp_sandbox):\n    pass\n")
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest("-p", "no:ghapp.testing", "-q")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'ghapp_sandbox' not found*"])


def test_loading_the_plugin_imports_nothing_of_ghapp() -> None:
    """Installed, the plugin is loaded by every pytest run: it must stay cheap until used."""
    code = (
        "import sys, ghapp.testing\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ghapp'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['ghapp', 'ghapp.testing']"
