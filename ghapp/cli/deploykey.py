"""`ghapp deploy-key owner/repo`: a fresh SSH deploy key, straight from the App's credentials."""

from __future__ import annotations

import argparse
import asyncio
import json

from ghapp.cli.common import CommandError, app_settings, fail, github_client
from ghapp.github.client import GitHubUnavailable
from ghapp.github.secrets import SECRET_NAME, NotInstalled, SecretRefused, install_deploy_key


async def _deploy_key(args: argparse.Namespace) -> int:
    async with github_client(app_settings()) as github:
        try:
            key = await install_deploy_key(github, args.repository)
        except ValueError as exc:
            raise CommandError(str(exc), 2) from None
        except NotInstalled as exc:
            raise CommandError(f"{exc}; install it first") from None
        except SecretRefused as exc:
            raise CommandError(
                f"GitHub refused to store the secret ({exc.status}): {exc} "
                "(the App needs the `secrets: write` permission on this installation)"
            ) from None
        except GitHubUnavailable as exc:
            raise CommandError(str(exc)) from None
    if args.json:
        body = {
            "secret_name": SECRET_NAME,
            "public_key": key.public_openssh,
            "fingerprint": key.fingerprint,
        }
        print(json.dumps(body, indent=2))
        return 0
    print(f"Stored a new private key as the Actions secret {SECRET_NAME} of {args.repository}.")
    print("Add this public key to ~/.ssh/authorized_keys of the deploy user on the server:")
    print()
    print(key.public_openssh)
    print()
    print(f"Fingerprint: {key.fingerprint}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run `ghapp deploy-key`."""
    try:
        return asyncio.run(_deploy_key(args))
    except CommandError as exc:
        return fail(str(exc), exc.code)
