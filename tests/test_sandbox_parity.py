"""The sandbox does what production does: it gives the App's settings (so `ghapp deliveries`
and `ghapp replay` work against it), and its runs have the template's steps (so a cause rule
written for the template, as in docs/cause-rules.md, decides a sandbox failure)."""

from __future__ import annotations

import json
import re
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import yaml

from ghapp.client import Client
from ghapp.simulator.sandbox import Sandbox
from ghapp.simulator.scenarios import Scenario

Cli = Callable[..., Awaitable[tuple[int, str, str]]]
DOCS = Path(__file__).resolve().parents[1] / "docs"
SSH_REFUSED = "ssh: connect to host 203.0.113.7 port 22: Connection refused"


def documented_rules() -> str:
    """The example rules file of docs/cause-rules.md, as the page shows it."""
    page = (DOCS / "cause-rules.md").read_text()
    section = page.split("## An example file", 1)[1]
    return re.search(r"```yaml\n(.*?)```", section, re.DOTALL).group(1)  # type: ignore[union-attr]


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    rules = tmp_path / "causes.yml"
    rules.write_text(documented_rules())
    sandbox = await Sandbox.start(cause_rules_path=str(rules))
    yield sandbox
    await sandbox.close()


def _use(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run the CLI as a shell would after `set -a; . ./.env`: in an empty folder, with them."""
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


async def test_the_sandbox_gives_the_apps_settings_and_removes_its_key() -> None:
    sandbox = await Sandbox.start()
    try:
        env = sandbox.env()
        assert list(env) == [
            "GHAPP_URL", "ORCHESTRATOR_TOKEN", "CALLBACK_SECRET", "GITHUB_API_URL",
            "APP_ID", "PRIVATE_KEY_PATH", "WEBHOOK_SECRET",
        ]
        sim = sandbox.stack.sim
        assert env["APP_ID"] == str(sim.app_id)
        assert env["WEBHOOK_SECRET"] == sim.webhook_secret
        key = Path(env["PRIVATE_KEY_PATH"])
        assert _key_file(key) == (sim.private_key_pem, 0o600, 0o700)
    finally:
        await sandbox.close()
    assert _key_file(key) is None


def _key_file(key: Path) -> tuple[str, int, int] | None:
    """The key's text, its mode and its folder's; None once both are gone."""
    if not key.parent.exists():
        return None
    return (key.read_text(), stat.S_IMODE(key.stat().st_mode),
            stat.S_IMODE(key.parent.stat().st_mode))


async def test_deliveries_and_replay_work_against_the_sandbox(
    sandbox: Sandbox, cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sandbox.set_scenario("acme/shop", Scenario(after_seconds=0.3, lose_webhooks="completed"))
    async with Client(sandbox.url, sandbox.token) as client:
        deployment = await client.deploy("acme/shop")
        done = await client.wait(deployment.id, interval=0.1, timeout=30)
    assert done.verdict is not None and done.verdict.status == "success"  # found by polling
    _use(sandbox.env(), monkeypatch, tmp_path)

    code, out, err = await cli("deliveries", "list", "--failed", "--json")
    assert code == 0, err
    lost = {(f["event"], f["action"]) for f in json.loads(out)}
    assert lost == {("workflow_run", "completed"), ("workflow_job", "completed")}

    code, out, err = await cli("deliveries", "redeliver-failed")
    assert code == 0, err
    assert out.strip().endswith("redelivered 2")
    await sandbox.stack.sim.webhooks.drain()
    code, out, _ = await cli("deliveries", "list", "--failed", "--json")
    assert code == 0 and json.loads(out) == []

    code, out, _ = await cli("deliveries", "list", "--event", "workflow_run", "--json")
    attempt = json.loads(out)[0]
    code, out, err = await cli("deliveries", "show", str(attempt["id"]))
    assert code == 0 and f"Delivery {attempt['id']}" in out, err
    code, out, err = await cli("deliveries", "redeliver", str(attempt["id"]))
    assert code == 0 and "requested" in out, err

    code, out, err = await cli("deliveries", "local", "--url", sandbox.url, "--json")
    assert code == 0, err
    assert "workflow_run" in {d["event"] for d in json.loads(out)}

    payload = tmp_path / "ping.json"
    payload.write_text('{"zen": "Design for failure.", "hook_id": 1}')
    url = sandbox.url + sandbox.stack.settings.webhook_path
    code, out, err = await cli("replay", str(payload), "--event", "ping", "--url", url)
    assert code == 0, err
    assert 'HTTP 200 {"outcome":"pong","zen":"Design for failure."}' in out


async def test_the_documented_custom_rule_decides_a_sandbox_failure(sandbox: Sandbox) -> None:
    rule = yaml.safe_load(documented_rules())[0]
    assert rule["step"] == "Deploy on the server"  # the template's name for its SSH step
    sandbox.set_scenario(
        "acme/shop", Scenario(outcome="failure", after_seconds=0.3, log=[SSH_REFUSED])
    )
    async with Client(sandbox.url, sandbox.token) as client:
        deployment = await client.deploy("acme/shop")
        done = await client.wait(deployment.id, interval=0.1, timeout=30)
    verdict = done.verdict
    assert verdict is not None and verdict.cause is not None
    assert verdict.cause.rule == rule["id"] == "acme.bastion-only"
    assert verdict.failed_jobs[0].failed_step is not None
    assert verdict.failed_jobs[0].failed_step.name == "Deploy on the server"
