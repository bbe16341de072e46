"""Sandbox scenarios: the file format, and what each field does to a run (in process)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ghapp.client import Client
from ghapp.simulator.sandbox import Sandbox
from ghapp.simulator.scenarios import Scenario, ScenarioBook, ScenarioError, workflow_for


def test_scenarios_file_default_and_repositories(tmp_path: Path) -> None:
    path = tmp_path / "s.yml"
    path.write_text("default:\n  after_seconds: 5\nAcme/Shop:\n  outcome: failure\n")
    book = ScenarioBook.from_yaml(path)
    assert book.get("acme/shop").outcome == "failure"  # names compare case-insensitively
    assert book.get("acme/other").after_seconds == 5
    assert book.get("acme/shop").after_seconds == 2  # its own scenario replaces the default


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("acme/shop:\n  outcome: boom\n", "acme/shop.outcome"),
        ("default:\n  after_seconds: -1\n", "default.after_seconds"),
        ("acme/shop:\n  colour: red\n", "acme/shop.colour"),
        ("acme/shop:\n  url: ftp://x\n", "acme/shop.url"),
        ("not-a-repo:\n  outcome: failure\n", "not-a-repo"),
        ("- a list\n", "mapping"),
    ],
)
def test_a_bad_scenarios_file_names_what_is_wrong(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "s.yml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=named):
        ScenarioBook.from_yaml(path)


def test_a_failure_scenario_fails_at_its_step_with_its_log() -> None:
    scenario = Scenario(
        outcome="failure", step="Build and push the image", log=["no space left on device"]
    )
    workflow = workflow_for("acme/shop", scenario)
    steps = {step.name: step for step in workflow.jobs[0].steps}
    assert steps["Build and push the image"].fail
    assert list(steps["Build and push the image"].output) == ["no space left on device"]
    assert not steps["Deploy on the server"].fail
    custom = workflow_for("acme/shop", Scenario(outcome="cancelled", step="Smoke test"))
    names = [s.name for s in custom.jobs[0].steps]
    # A step the template does not have takes the place of the one that deploys.
    assert "Deploy on the server" not in names
    assert names.index("Smoke test") == names.index("Set up SSH") + 1
    assert custom.jobs[0].steps[names.index("Smoke test")].cancelled


def test_the_sandbox_workflow_has_the_templates_job_and_steps() -> None:
    import yaml

    from ghapp.templates import deploy_template

    template = yaml.safe_load(deploy_template())["jobs"]
    workflow = workflow_for("acme/shop", Scenario())
    assert [job.name for job in workflow.jobs] == list(template)
    steps = workflow.jobs[0].steps
    assert [s.name for s in steps] == [s["name"] for s in template["deploy"]["steps"]]
    by_name = {s.name: s for s in steps}
    assert by_name["Log in to GHCR"].run_command == "docker/login-action@v4"
    assert by_name["Deploy on the server"].run_command.startswith("# Quote every value")


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    sandbox = await Sandbox.start()
    yield sandbox
    await sandbox.close()


async def test_lost_webhooks_and_github_errors_still_end_in_a_verdict(sandbox: Sandbox) -> None:
    sandbox.set_scenario("acme/quiet", Scenario(after_seconds=0.2, lose_webhooks="completed"))
    sandbox.set_scenario(
        "acme/down",
        Scenario(outcome="failure", log=["boom"], after_seconds=0.2, github_errors_for_seconds=1.0),
    )
    async with Client(sandbox.url, sandbox.token) as client:
        quiet = await client.deploy("acme/quiet")
        quiet = await client.wait(quiet.id, interval=0.1, timeout=30)
        down = await client.deploy("acme/down")
        down = await client.wait(down.id, interval=0.1, timeout=30)
    sim = sandbox.stack.sim
    assert quiet.verdict is not None and quiet.verdict.status == "success"
    assert quiet.run is not None
    lost = {
        (d.event, d.action)
        for d in sim.deliveries
        if d.dropped and d.payload.get("repository", {}).get("full_name") == "acme/quiet"
    }
    assert lost == {("workflow_run", "completed"), ("workflow_job", "completed")}
    # The failure report needs GitHub (jobs, logs): ghapp got 502s, retried, and got it.
    assert down.verdict is not None and down.verdict.status == "failure"
    assert "boom" in down.verdict.failed_jobs[0].log_excerpt
    assert any(r.fault == "server_errors" for r in sim.requests)


async def test_a_new_scenario_applies_from_the_next_dispatch(sandbox: Sandbox) -> None:
    async with Client(sandbox.url, sandbox.token) as client:
        sandbox.set_scenario("acme/shop", Scenario(outcome="failure", after_seconds=0.5))
        first = await client.deploy("acme/shop")
        sandbox.set_scenario("acme/shop", None)  # back to the default, while the first runs
        second = await client.deploy("acme/shop")
        first = await client.wait(first.id, interval=0.1, timeout=30)
        second = await client.wait(second.id, interval=0.1, timeout=30)
    assert first.verdict is not None and first.verdict.status == "failure"
    assert second.verdict is not None and second.verdict.status == "success"
