"""Repository endpoints: the repository, annotations, deployments and Actions secrets."""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING
from urllib.parse import unquote

from aiohttp import web
from nacl.exceptions import CryptoError
from nacl.public import SealedBox

from ghapp.simulator import accounts, payloads
from ghapp.simulator.clock import iso_z, now_s
from ghapp.simulator.http import (
    ApiError,
    Call,
    Router,
    empty_response,
    json_response,
    not_found,
    repo_of,
    require_permission,
)
from ghapp.simulator.state import DeploymentState

if TYPE_CHECKING:
    from ghapp.simulator.simulated import SimulatedGitHub

SECRET_NAME = re.compile(r"^(?!GITHUB_)[A-Za-z_][A-Za-z0-9_]*$")
SECRETS_DOCS = "https://docs.github.com/rest/actions/secrets"
ENVIRONMENT_SECRETS_DOCS = SECRETS_DOCS + "#get-an-environment-secret"


def register(router: Router, sim: SimulatedGitHub) -> None:
    """Add the repository routes."""
    world = sim.world

    def deployment_of(call: Call) -> DeploymentState:
        repo = repo_of(world, call)
        dep = world.deployments.get(call.int_param("deployment_id"))
        if dep is None or dep.repo is not repo:
            raise not_found()
        return dep

    @router.route("GET", "/repos/{owner}/{repo}")
    async def get_repo(call: Call) -> web.StreamResponse:
        return json_response(accounts.full_repository(world, repo_of(world, call)))

    @router.route("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}/annotations")
    async def annotations(call: Call) -> web.StreamResponse:
        repo = repo_of(world, call)
        job = world.jobs.get(call.int_param("check_run_id"))
        if job is None or world.runs[job.run_id].repo is not repo:
            raise not_found()
        run = world.runs[job.run_id]
        per_page, page = call.page()
        found = job.annotations[(page - 1) * per_page : page * per_page]
        return json_response([payloads.annotation(world, run, a) for a in found])

    @router.route("GET", "/repos/{owner}/{repo}/deployments")
    async def list_deployments(call: Call) -> web.StreamResponse:
        repo = repo_of(world, call)
        found = [d for d in world.deployments.values() if d.repo is repo]
        for key in ("sha", "ref", "environment"):
            wanted = call.query(key)
            if wanted:
                found = [d for d in found if getattr(d, key) == wanted]
        task = call.query("task")
        if task and task != "deploy":
            found = []
        found.sort(key=lambda d: d.id, reverse=True)
        per_page, page = call.page()
        chunk = found[(page - 1) * per_page : page * per_page]
        return json_response([payloads.deployment(world, d) for d in chunk])

    @router.route("GET", "/repos/{owner}/{repo}/deployments/{deployment_id}")
    async def get_deployment(call: Call) -> web.StreamResponse:
        return json_response(payloads.deployment(world, deployment_of(call)))

    @router.route("GET", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses")
    async def list_statuses(call: Call) -> web.StreamResponse:
        dep = deployment_of(call)
        newest_first = sorted(dep.statuses, key=lambda s: s.id, reverse=True)
        return json_response([payloads.deployment_status(world, dep, s) for s in newest_first])

    @router.route("GET", "/repos/{owner}/{repo}/actions/secrets/public-key")
    async def public_key(call: Call) -> web.StreamResponse:
        repo_of(world, call)
        key = base64.b64encode(bytes(sim.secrets_key.public_key)).decode()
        return json_response({"key_id": sim.secrets_key_id, "key": key})

    @router.route("PUT", "/repos/{owner}/{repo}/actions/secrets/{secret_name}")
    async def put_secret(call: Call) -> web.StreamResponse:
        repo = repo_of(world, call)
        name = call.params["secret_name"]
        if not SECRET_NAME.match(name):
            raise ApiError(422, "Secret names can only contain alphanumeric characters ([a-z], "
                           "[A-Z], [0-9]) or underscores (_). Spaces are not allowed. Must start "
                           "with a letter ([a-z], [A-Z]) or underscores (_).", SECRETS_DOCS)
        body = await call.body()
        value, key_id = body.get("encrypted_value"), body.get("key_id")
        if not isinstance(value, str) or not isinstance(key_id, str):
            raise ApiError(422, "Invalid request.\n\n\"encrypted_value\" and \"key_id\" are "
                           "required.", SECRETS_DOCS)
        if key_id != sim.secrets_key_id:
            raise ApiError(422, "Bad request: key_id does not match the repository public key.",
                           SECRETS_DOCS)
        try:
            plain = SealedBox(sim.secrets_key).decrypt(base64.b64decode(value))
        except (CryptoError, ValueError):
            raise ApiError(422, "Bad request: encrypted_value could not be decrypted.",
                           SECRETS_DOCS) from None
        created = name.upper() not in repo.secrets
        repo.secrets[name.upper()] = plain
        repo.secret_times[name.upper()] = now_s()
        return json_response({}, 201) if created else empty_response(204)

    @router.route("GET", "/repos/{owner}/{repo}/actions/secrets/{secret_name}")
    async def get_secret(call: Call) -> web.StreamResponse:
        repo = repo_of(world, call)
        require_permission(call, "secrets", "read", SECRETS_DOCS)
        name = call.params["secret_name"].upper()
        if name not in repo.secrets:
            raise not_found(SECRETS_DOCS)
        when = iso_z(repo.secret_times[name])
        return json_response({"name": name, "created_at": when, "updated_at": when})

    @router.route(
        "GET", "/repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}"
    )
    async def get_environment_secret(call: Call) -> web.StreamResponse:
        repo = repo_of(world, call)
        require_permission(call, "secrets", "read", ENVIRONMENT_SECRETS_DOCS)
        secrets = repo.environment_secrets.get(unquote(call.params["environment_name"]))
        name = call.params["secret_name"].upper()
        if secrets is None or name not in secrets:
            raise not_found(ENVIRONMENT_SECRETS_DOCS)
        when = iso_z(secrets[name])
        return json_response({"name": name, "created_at": when, "updated_at": when})
