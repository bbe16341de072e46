"""Store a fresh SSH deploy key's private half as a repository's Actions secret."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gidgethub

from ghapp.github.client import GitHubClient

if TYPE_CHECKING:
    from ghapp.github.deploykeys import DeployKey

SECRET_NAME = "DEPLOY_SSH_KEY"


class NotInstalled(Exception):
    """The App is not installed on the repository (or the repository does not exist)."""


class SecretRefused(Exception):
    """GitHub refused to give the public key or to store the secret; carries its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _github_message(exc: gidgethub.HTTPException) -> str:
    return str(exc) or f"GitHub answered {int(exc.status_code)}"


async def install_deploy_key(github: GitHubClient, repository: str) -> DeployKey:
    """Generate an Ed25519 key and store its private half as `DEPLOY_SSH_KEY` on `repository`."""
    # Loaded here: cryptography weighs ~8 MiB, and few servers ever make a deploy key.
    from ghapp.github.deploykeys import generate_deploy_key, seal_secret

    # Validate the name before any call, so a typo is a ValueError and not a GitHub 404.
    key = generate_deploy_key(repository)
    try:
        installation_id = await github.installation_for(repository)
    except gidgethub.BadRequest as exc:
        if int(exc.status_code) == 404:
            raise NotInstalled(
                f"the App is not installed on {repository} (or the repository does not exist)"
            ) from None
        raise SecretRefused(int(exc.status_code), _github_message(exc)) from None

    async def store(gh: Any) -> None:
        public = await gh.getitem(f"/repos/{repository}/actions/secrets/public-key")
        body = {
            "encrypted_value": seal_secret(str(public["key"]), key.private_openssh),
            "key_id": str(public["key_id"]),
        }
        await gh.put(f"/repos/{repository}/actions/secrets/{SECRET_NAME}", data=body)

    try:
        await github.as_installation(installation_id, store)
    except gidgethub.BadRequest as exc:
        raise SecretRefused(int(exc.status_code), _github_message(exc)) from None
    return key
