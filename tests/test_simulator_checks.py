"""The simulator answers every call of the set-up checks as GitHub does: checked against the
reference OpenAPI descriptions (`openapi-subset.json`, `openapi-third-round.json`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

# The reference validator of the simulator's own tests (tests/ is on sys.path under pytest).
from test_simulator import OpenApi

from ghapp.simulator import Simulator, Workflow
from ghapp.simulator.auth import generate_private_key_pem

RID = "/repos/{owner}/{repo}"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(app_id=1234, private_key_pem=generate_private_key_pem())
    await simulator.start()
    yield simulator
    await simulator.stop()


async def _get(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> tuple[int, Any]:
    async with http.get(url, headers=headers) as response:
        text = await response.text()
        return response.status, json.loads(text) if text else None


async def _token(http: aiohttp.ClientSession, sim: Simulator, installation_id: int) -> str:
    url = f"{sim.api_url}/app/installations/{installation_id}/access_tokens"
    headers = {"Authorization": f"Bearer {sim.make_jwt()}"}
    async with http.post(url, headers=headers) as response:
        assert response.status == 201
        token: str = (await response.json())["token"]
        return token


async def test_the_checks_calls_answer_as_the_reference_says(
    sim: Simulator, reference: Path
) -> None:
    subset = OpenApi(reference / "openapi-subset.json")
    third = OpenApi(reference / "openapi-third-round.json")
    repo = sim.add_repository("acme/shop")
    repo.add_workflow(Workflow(file="deploy.yml", name="Deploy"))
    repo.secrets["DEPLOY_SSH_KEY"] = b"k"
    repo.secret_times["DEPLOY_SSH_KEY"] = 1_700_000_000
    repo.environment_secrets["staging"] = {"DEPLOY_SSH_KEY": 1_700_000_000}
    app = {"Authorization": f"Bearer {sim.make_jwt()}"}
    async with aiohttp.ClientSession() as http:
        for path, template, status in [
            ("/app", "/app", 200),
            ("/repos/acme/shop/installation", f"{RID}/installation", 200),
            ("/repos/acme/nowhere/installation", f"{RID}/installation", 404),
            ("/app/hook/deliveries?per_page=100", "/app/hook/deliveries", 200),
        ]:
            got, body = await _get(http, sim.api_url + path, app)
            assert got == status, (path, body)
            subset.validate("GET", template, status, body)
        token = {"Authorization": f"token {await _token(http, sim, repo.installation_id)}"}
        contents = f"{RID}/contents/{{path}}"
        secret = f"{RID}/actions/secrets/{{secret_name}}"
        for path, template, status in [
            ("/repos/acme/shop/contents/.github/workflows/deploy.yml", contents, 200),
            ("/repos/acme/shop/contents/.github/workflows/other.yml", contents, 404),
            ("/repos/acme/shop/actions/secrets/DEPLOY_SSH_KEY", secret, 200),
        ]:
            got, body = await _get(http, sim.api_url + path, token)
            assert got == status, (path, body)
            third.validate("GET", template, status, body)
        # Without `ref`, the default branch, named in the answer's url.
        _, body = await _get(
            http,
            f"{sim.api_url}/repos/acme/shop/contents/{repo.workflows['deploy.yml'].path}",
            token,
        )
        assert body["url"].endswith("?ref=main") and body["type"] == "file"
        # An environment's secret has the repository secret's shape (the reference has no
        # description of its own for it).
        got, body = await _get(
            http,
            f"{sim.api_url}/repos/acme/shop/environments/staging/secrets/DEPLOY_SSH_KEY",
            token,
        )
        assert got == 200
        third.validate("GET", secret, 200, body)
        got, body = await _get(
            http, f"{sim.api_url}/repos/acme/shop/environments/prod/secrets/DEPLOY_SSH_KEY", token
        )
        assert got == 404 and body["message"] == "Not Found"


async def test_a_permission_the_installation_lacks_is_refused(
    sim: Simulator, reference: Path
) -> None:
    third = OpenApi(reference / "openapi-third-round.json")
    repo = sim.add_repository("acme/shop")
    repo.add_workflow(Workflow(file="deploy.yml", name="Deploy"))
    installation = sim.world.installations[repo.installation_id]
    del installation.permissions["secrets"]
    del installation.permissions["contents"]
    async with aiohttp.ClientSession() as http:
        token = {"Authorization": f"token {await _token(http, sim, repo.installation_id)}"}
        for path in (
            "/repos/acme/shop/actions/secrets/DEPLOY_SSH_KEY",
            "/repos/acme/shop/environments/staging/secrets/DEPLOY_SSH_KEY",
        ):
            got, body = await _get(http, sim.api_url + path, token)
            assert got == 403 and body["message"] == "Resource not accessible by integration"
        got, body = await _get(
            http, f"{sim.api_url}/repos/acme/shop/contents/.github/workflows/deploy.yml", token
        )
        assert got == 403
        third.validate("GET", f"{RID}/contents/{{path}}", 403, body)
