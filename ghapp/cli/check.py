"""`ghapp check OWNER/REPO`: with the server's settings, is everything set up for a first deploy?

One line per check (what was found, and on failure what to do); exit 0 when every check
passes, 1 otherwise; `--json` prints the report `GET /api/v1/check/{owner}/{repo}` answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from typing import TYPE_CHECKING

from ghapp.core.untrusted import one_line
from ghapp.core.validation import valid_name

# The parser is built for every command: what only a check needs is imported when it runs.
if TYPE_CHECKING:
    from ghapp.config import Settings
    from ghapp.core.setup_checks import SetupReport
    from ghapp.work.setup_checks import CheckTarget

WORKFLOW_FILE = re.compile(r"^[A-Za-z0-9._-]{1,100}\.ya?ml$")
# GitHub's limit on an environment's name.
ENVIRONMENT_MAX = 255


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `check` subcommand."""
    check = commands.add_parser(
        "check",
        help="check the set-up for OWNER/REPO: key, installation, workflow, secret, webhooks, "
        "callback (exit 0 all pass, 1 otherwise)",
        description="With the server's settings (environment and .env), one line per check: "
        "the App's key and JWT (app_key), the installation on the repository (installation) "
        "and its permissions (permissions), the workflow on the default branch with "
        "workflow_dispatch and the ghapp_id input (workflow), the Actions secret DEPLOY_SSH_KEY "
        "(deploy_key), GitHub's recent webhook deliveries answered 2xx (webhooks), and "
        "ORCHESTRATOR_CALLBACK_URL answering a signed ping (callback). A failed check says "
        "what to do. Exit status 0 when every check passes, 1 otherwise, 2 when the settings "
        "themselves are malformed.",
    )
    check.add_argument("repository", metavar="OWNER/REPO")
    check.add_argument("--workflow", default="deploy.yml", help="workflow file (deploy.yml)")
    check.add_argument(
        "--environment", metavar="E", help="the environment to deploy to (its secrets count too)"
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(func=run)


def target_of(repository: str, workflow: str, environment: str | None) -> CheckTarget:
    """The target, or ValueError naming what is malformed."""
    owner, _, name = repository.partition("/")
    if not (valid_name(owner) and valid_name(name)):
        raise ValueError(f"{repository!r} is not OWNER/REPO")
    if not WORKFLOW_FILE.match(workflow):
        raise ValueError(f"--workflow: {workflow!r} is not a workflow file name (deploy.yml)")
    if environment is not None and (
        not environment.strip()
        or len(environment) > ENVIRONMENT_MAX
        or any(ord(c) < 32 or c == "\x7f" for c in environment)
    ):
        raise ValueError(f"--environment: {environment!r} is not an environment name")
    from ghapp.work.setup_checks import CheckTarget

    return CheckTarget(repository, workflow, environment)


def key_problem(settings: Settings) -> str | None:
    """Why the App's credentials cannot be used, or None."""
    from ghapp.config import SettingsError, check_key_loads

    if not settings.app_id:
        return "APP_ID is not set"
    try:
        check_key_loads(settings.app_private_key())
    except SettingsError as exc:
        return str(exc)
    return None


async def check(settings: Settings, target: CheckTarget) -> SetupReport:
    """Run every check with these settings."""
    import aiohttp

    from ghapp import manifest
    from ghapp.github.client import GitHubClient
    from ghapp.work.setup_checks import run_checks

    problem = key_problem(settings)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        github = None
        if problem is None:
            github = GitHubClient(
                session,
                app_id=settings.app_id or "",
                private_key=settings.app_private_key(),
                api_url=settings.github_api_url,
                # A person is waiting: GitHub unreachable is said within seconds, not after
                # the server's patient retries.
                retry_base=0.25,
            )
        return await run_checks(
            target,
            settings,
            github=github,
            session=session,
            permissions=manifest.permissions(),
            key_problem=problem,
        )


def print_report(result: SetupReport) -> None:
    """One line per check: `ok`/`FAIL`, its id, what was found and (failed) what to do."""
    width = max(len(item.id) for item in result.checks)
    for item in result.checks:
        line = f"{'ok' if item.ok else 'FAIL':<4}  {item.id:<{width}}  {one_line(item.detail, 600)}"
        if item.fix:
            line += f"; fix: {one_line(item.fix, 600)}"
        sys.stdout.write(line + "\n")
    failures = sum(not item.ok for item in result.checks)
    total = len(result.checks)
    sys.stdout.write(f"{failures} of {total} checks failed\n" if failures else "all checks pass\n")


def run(args: argparse.Namespace) -> int:
    """Run `ghapp check`."""
    from ghapp.cli.common import fail

    try:
        target = target_of(args.repository, args.workflow, args.environment)
    except ValueError as exc:
        return fail(str(exc), 2)
    from ghapp.config import load_settings

    settings = load_settings()  # a malformed setting: one line each, exit 2 (ghapp.cli.main)
    result = asyncio.run(check(settings, target))
    if args.json:
        sys.stdout.write(json.dumps(result.model_dump(), indent=2) + "\n")
    else:
        print_report(result)
    return 0 if result.ok else 1
