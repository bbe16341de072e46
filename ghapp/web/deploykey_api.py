"""POST /api/v1/repos/{owner}/{repo}/deploy-key: a fresh SSH deploy key, private half to GitHub."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ghapp.core.validation import valid_name
from ghapp.github.client import GitHubUnavailable
from ghapp.github.secrets import SECRET_NAME, NotInstalled, SecretRefused, install_deploy_key
from ghapp.web.authz import audit, authorize
from ghapp.web.http import error, services_of

log = logging.getLogger("ghapp.deploykey")


async def create_deploy_key(request: Request) -> Response:
    """Generate the key pair, store the private half as DEPLOY_SSH_KEY, answer the public half."""
    grant = await authorize(request)
    if isinstance(grant, Response):
        return grant
    answer = await _create(request)
    owner, repo = request.path_params["owner"], request.path_params["repo"]
    await audit(request, "deploy_key.create", target=f"{owner}/{repo}", outcome=answer.status_code)
    return answer


async def _create(request: Request) -> Response:
    owner, repo = request.path_params["owner"], request.path_params["repo"]
    bad = [name for name, value in (("owner", owner), ("repo", repo)) if not valid_name(value)]
    if bad:
        return error(
            422,
            "invalid_request",
            "owner and repo must be GitHub names: [A-Za-z0-9._-], not '.' or '..'",
            errors=[{"field": name, "message": "not a GitHub name"} for name in bad],
        )
    repository = f"{owner}/{repo}"
    github = services_of(request).github
    try:
        key = await install_deploy_key(github, repository)
    except ValueError as exc:
        return error(422, "invalid_request", str(exc))
    except NotInstalled as exc:
        return error(404, "not_installed", str(exc))
    except SecretRefused as exc:
        # 502, not the 4xx GitHub gave: the caller's request was fine, ghapp's was refused
        # (most often: the installation has not accepted the `secrets: write` permission).
        return error(
            502,
            "github_refused",
            f"GitHub refused to store the secret ({exc.status}): {exc}",
            github_status=exc.status,
        )
    except GitHubUnavailable as exc:
        return error(
            503,
            "github_unavailable",
            f"GitHub could not be reached: {exc}",
            headers={"Retry-After": "30"},
        )
    # The private key stays in `key` only until this function returns: never logged or stored.
    log.info(
        "deploy key stored",
        extra={"repository": repository, "fingerprint": key.fingerprint},
    )
    return JSONResponse(
        {
            "secret_name": SECRET_NAME,
            "public_key": key.public_openssh,
            "fingerprint": key.fingerprint,
        },
        201,
    )


routes = [
    Route("/api/v1/repos/{owner}/{repo}/deploy-key", create_deploy_key, methods=["POST"]),
]
