"""`ghapp check OWNER/REPO` and `GET /api/v1/check/{owner}/{repo}` against the simulator: every
check passing, then each failing alone (one line each, with what to do), exit codes, `--json`."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from ghapp.config import Settings
from ghapp.core.setup_checks import CHECK_IDS
from ghapp.core.signatures import hub_signature
from ghapp.simulator import Workflow
from ghapp.simulator.auth import generate_private_key_pem
from ghapp.simulator.stack import Stack, free_port, settings_env

Cli = Callable[..., Awaitable[tuple[int, str, str]]]
LINE = re.compile(r"^(ok|FAIL)\s+(\w+)\s+(.*)$")


async def _ping_delivered(stack: Stack) -> None:
    """A webhook GitHub delivered to ghapp and ghapp answered 2xx (as installing the App does)."""
    delivery = await stack.sim.send_webhook("ping", {"zen": "Keep it simple.", "hook_id": 1})
    assert delivery.ok


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """A set-up that passes every check: installed, the workflow, the secret, a delivery."""
    stack = await Stack.start(f"sqlite:///{tmp_path / 'ghapp.db'}")
    repo = stack.sim.add_repository("acme/shop", default_branch="trunk")
    repo.add_workflow(Workflow(file="deploy.yml", name="Deploy"))
    repo.secrets["DEPLOY_SSH_KEY"] = b"-----BEGIN OPENSSH PRIVATE KEY-----"
    repo.secret_times["DEPLOY_SSH_KEY"] = 1_700_000_000
    await _ping_delivered(stack)
    yield stack
    await stack.close()


@pytest.fixture
def env(stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """The server's settings in the environment, as `ghapp check` reads them."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    names = {name.upper() for name in Settings.model_fields}
    for name in names:
        monkeypatch.delenv(name, raising=False)
    for name, value in settings_env(stack.settings, 0).items():
        if name in names:
            monkeypatch.setenv(name, value)
    return monkeypatch


def lines_of(out: str) -> dict[str, tuple[bool, str]]:
    """{check id: (ok, the rest of its line)} from `ghapp check`'s output."""
    found = {}
    for line in out.splitlines():
        match = LINE.match(line)
        if match:
            found[match.group(2)] = (match.group(1) == "ok", match.group(3))
    return found


async def test_every_check_passes(stack: Stack, env: pytest.MonkeyPatch, cli: Cli) -> None:
    code, out, err = await cli("check", "acme/shop")
    assert code == 0, out + err
    found = lines_of(out)
    assert list(found) == list(CHECK_IDS)
    assert all(ok for ok, _ in found.values()), out
    assert "fix:" not in out and out.splitlines()[-1] == "all checks pass"
    assert "424242" in found["app_key"][1]
    assert "deploy.yml on trunk" in found["workflow"][1]
    # The ping the orchestrator got: signed like a callback, its own event, no deployment.
    [ping] = [c for c in stack.receiver.received if c.event == "ping"]
    assert ping.signature_ok and ping.status == 204
    body = json.loads(ping.body)
    assert set(body) == {"event", "sent_at"} and body["event"] == "ping"
    assert datetime.fromisoformat(body["sent_at"].replace("Z", "+00:00")).tzinfo is not None
    assert ping.headers["X-Ghapp-Signature-256"] == hub_signature(ping.body, stack.receiver.secret)
    assert ping.headers["X-Ghapp-Delivery"].startswith("ping_")


def _wrong_key(stack: Stack, env: pytest.MonkeyPatch) -> list[str]:
    env.setenv("PRIVATE_KEY", generate_private_key_pem())
    return []


def _broken_key(stack: Stack, env: pytest.MonkeyPatch) -> list[str]:
    env.setenv(
        "PRIVATE_KEY", "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----"
    )
    return []


def _not_installed(stack: Stack, env: pytest.MonkeyPatch) -> list[str]:
    return ["acme/elsewhere"]


def _missing_permission(stack: Stack, env: pytest.MonkeyPatch) -> list[str]:
    installation = stack.sim.world.installations[stack.sim.repos["acme/shop"].installation_id]
    del installation.permissions["secrets"]
    return []


def _no_dispatch(stack: Stack, env: pytest.MonkeyPatch) -> list[str]:
    stack.sim.repos["acme/shop"].add_workflow(
        Workflow(file="deploy.yml", name="Deploy", dispatchable=False)
    )
    return []


def _no_ghapp_id(stack: Stack, env: pytest.MonkeyPatch) -> list[str]:
    stack.sim.repos["acme/shop"].add_workflow(
        Workflow(file="deploy.yml", name="Deploy", declares_ghapp_id=False)
    )
    return []


def _no_workflow(stack: Stack, env: pytest.MonkeyPatch) -> list[str]:
    return ["acme/shop", "--workflow", "release.yml"]


def _no_secret(stack: Stack, env: pytest.MonkeyPatch) -> list[str]:
    del stack.sim.repos["acme/shop"].secrets["DEPLOY_SSH_KEY"]
    return []


def _callback_500(stack: Stack, env: pytest.MonkeyPatch) -> list[str]:
    stack.receiver.fail_with.append(500)
    return []


def _callback_refused(stack: Stack, env: pytest.MonkeyPatch) -> list[str]:
    env.setenv("ORCHESTRATOR_CALLBACK_URL", f"http://127.0.0.1:{free_port()}/callbacks")
    return []


def _no_callback_url(stack: Stack, env: pytest.MonkeyPatch) -> list[str]:
    env.delenv("ORCHESTRATOR_CALLBACK_URL")
    return []


NOT_CHECKED = "not checked"
# (what breaks, the checks that then fail, a fragment of each failing line)
CASES: list[tuple[Callable[[Stack, pytest.MonkeyPatch], list[str]], dict[str, str]]] = [
    (
        _wrong_key,
        {
            "app_key": "GitHub refused the App's JWT (401",
            **{name: NOT_CHECKED for name in CHECK_IDS[1:6]},
        },
    ),
    (
        _broken_key,
        {
            "app_key": "PRIVATE_KEY: the key does not load",
            **{name: NOT_CHECKED for name in CHECK_IDS[1:6]},
        },
    ),
    (
        _not_installed,
        {
            "installation": "install the App on acme/elsewhere: https://github.com/apps/",
            **{name: NOT_CHECKED for name in CHECK_IDS[2:5]},
        },
    ),
    (
        _missing_permission,
        {
            "permissions": "lacks secrets: write (has none)",
            # GitHub then refuses to say whether the secret exists.
            "deploy_key": "GitHub answered 403: Resource not accessible by integration",
        },
    ),
    (_no_dispatch, {"workflow": "does not run on workflow_dispatch (on: push)"}),
    (_no_ghapp_id, {"workflow": "declares no `ghapp_id` input"}),
    (_no_workflow, {"workflow": "no .github/workflows/release.yml on the default branch"}),
    (_no_secret, {"deploy_key": "fix: ghapp deploy-key acme/shop"}),
    (_callback_500, {"callback": "answered the signed ping with 500"}),
    (_callback_refused, {"callback": "did not answer the signed ping (connection refused)"}),
    (_no_callback_url, {"callback": "ORCHESTRATOR_CALLBACK_URL is not set"}),
]


@pytest.mark.parametrize(("breaks", "failing"), CASES, ids=[c[0].__name__[1:] for c in CASES])
async def test_each_failure_is_one_line_with_its_fix(
    stack: Stack,
    env: pytest.MonkeyPatch,
    cli: Cli,
    breaks: Callable[[Stack, pytest.MonkeyPatch], list[str]],
    failing: dict[str, str],
) -> None:
    argv = breaks(stack, env) or ["acme/shop"]
    code, out, err = await cli("check", *argv)
    assert code == 1, out + err
    assert err == ""
    found = lines_of(out)
    assert list(found) == list(CHECK_IDS), out
    assert {name for name, (ok, _) in found.items() if not ok} == set(failing), out
    for name, fragment in failing.items():
        text = found[name][1]
        assert fragment in text, (name, text)
        assert "; fix: " in text, text
    assert len(out.splitlines()) == len(CHECK_IDS) + 1
    assert out.splitlines()[-1] == f"{len(failing)} of {len(CHECK_IDS)} checks failed"


async def test_failed_deliveries_say_what_the_server_answered(
    stack: Stack, env: pytest.MonkeyPatch, cli: Cli
) -> None:
    # The App's webhook URL points beside the server's WEBHOOK_PATH: GitHub gets a 404.
    stack.sim.webhook_url = stack.base_url + "/github/hooks"
    delivery = await stack.sim.send_webhook("ping", {"zen": "x", "hook_id": 1})
    assert delivery.status == 404
    code, out, _ = await cli("check", "acme/shop")
    assert code == 1
    ok, text = lines_of(out)["webhooks"]
    assert not ok
    assert "1 of the App's 2 latest webhook deliveries got no 2xx answer" in text
    assert "the App's webhook URL does not reach this server's WEBHOOK_PATH" in text
    assert "ghapp deliveries redeliver-failed" in text
    # Redelivered to the right place, the lost delivery has a 2xx attempt: the check passes.
    stack.sim.webhook_url = stack.base_url + stack.settings.webhook_path
    code, out, _ = await cli("deliveries", "redeliver-failed", "--since", "1h")
    assert code == 0, out
    for _ in range(100):
        if lines_of((await cli("check", "acme/shop"))[1])["webhooks"][0]:
            break
    else:
        pytest.fail("the redelivered webhook never counted")


async def test_json_report(stack: Stack, env: pytest.MonkeyPatch, cli: Cli) -> None:
    del stack.sim.repos["acme/shop"].secrets["DEPLOY_SSH_KEY"]
    code, out, _ = await cli("check", "acme/shop", "--json")
    assert code == 1
    report = json.loads(out)
    assert set(report) == {"ok", "checks"} and report["ok"] is False
    assert [c["id"] for c in report["checks"]] == list(CHECK_IDS)
    for check in report["checks"]:
        assert set(check) == {"id", "ok", "detail", "fix"}
        assert (check["fix"] is None) == check["ok"]
    assert [c["id"] for c in report["checks"] if not c["ok"]] == ["deploy_key"]


async def test_an_environment_secret_counts_with_environment(
    stack: Stack, env: pytest.MonkeyPatch, cli: Cli
) -> None:
    repo = stack.sim.repos["acme/shop"]
    del repo.secrets["DEPLOY_SSH_KEY"]
    repo.environment_secrets["staging"] = {"DEPLOY_SSH_KEY": 1_700_000_000}
    code, out, _ = await cli("check", "acme/shop", "--environment", "staging")
    assert code == 0, out
    assert "secret of acme/shop's environment staging" in lines_of(out)["deploy_key"][1]
    code, out, _ = await cli("check", "acme/shop", "--environment", "production")
    assert code == 1
    assert "nor of its environment production" in lines_of(out)["deploy_key"][1]


async def test_an_environment_the_workflow_does_not_offer(
    stack: Stack, env: pytest.MonkeyPatch, cli: Cli
) -> None:
    content = """
name: Deploy
run-name: "Deploy ${{ inputs.ghapp_id }}"
on:
  workflow_dispatch:
    inputs:
      ghapp_id: {required: false, type: string}
      environment: {type: choice, options: [staging, production]}
jobs:
  deploy: {runs-on: ubuntu-latest, steps: [{run: "true"}]}
"""
    stack.sim.repos["acme/shop"].add_workflow(
        Workflow(file="deploy.yml", name="D", content=content)
    )
    assert (await cli("check", "acme/shop", "--environment", "staging"))[0] == 0
    code, out, _ = await cli("check", "acme/shop", "--environment", "qa")
    assert code == 1
    text = lines_of(out)["workflow"][1]
    assert "allows only staging, production" in text and "fix: add qa" in text


async def test_malformed_arguments_and_settings_exit_2(
    stack: Stack, env: pytest.MonkeyPatch, cli: Cli
) -> None:
    code, out, err = await cli("check", "acme")
    assert (code, out) == (2, "") and err == "ghapp: 'acme' is not OWNER/REPO\n"
    code, _, err = await cli("check", "acme/shop", "--workflow", "../x.yml")
    assert code == 2 and "--workflow" in err
    env.setenv("APP_ID", "abc")
    code, _, err = await cli("check", "acme/shop")
    assert code == 2 and err.startswith("ghapp: APP_ID: 'abc' is neither")


async def test_the_route_answers_what_the_command_prints(
    stack: Stack, env: pytest.MonkeyPatch, cli: Cli
) -> None:
    assert stack.session is not None
    del stack.sim.repos["acme/shop"].secrets["DEPLOY_SSH_KEY"]
    _, out, _ = await cli("check", "acme/shop", "--json")
    printed = json.loads(out)
    url = f"{stack.base_url}/api/v1/check/acme/shop"
    async with stack.session.get(url, headers=stack.auth) as response:
        assert response.status == 200
        served: dict[str, Any] = await response.json()
    assert served["ok"] is printed["ok"] is False
    # The same checks with the same verdicts (details differ only where they quote a time).
    assert [(c["id"], c["ok"], c["fix"]) for c in served["checks"]] == [
        (c["id"], c["ok"], c["fix"]) for c in printed["checks"]
    ]
    async with stack.session.get(url) as response:
        assert response.status == 401
    query = {"workflow": "../../etc/passwd", "environment": "a\x01b"}
    async with stack.session.get(url, headers=stack.auth, params=query) as response:
        assert response.status == 422
        body = await response.json()
    assert {e["field"] for e in body["errors"]} == {"workflow", "environment"}


async def test_the_sandbox_and_the_kit_take_the_ping(ghapp_sandbox: Any) -> None:
    """A sandbox answers the route's ping, and the kit's fixture keeps it out of `callbacks`."""
    import aiohttp

    headers = {"Authorization": f"Bearer {ghapp_sandbox.token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{ghapp_sandbox.url}/api/v1/check/acme/shop", headers=headers) as response,
    ):
        assert response.status == 200
        report = await response.json()
    by_id = {c["id"]: c for c in report["checks"]}
    assert by_id["callback"]["ok"] and by_id["installation"]["ok"] and by_id["workflow"]["ok"]
    received = ghapp_sandbox.sandbox.stack.receiver.received
    assert [c.event for c in received] == ["ping"] and received[0].signature_ok
    assert ghapp_sandbox.callbacks == []
