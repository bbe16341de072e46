"""What `ghapp gate ...` does: which environments deploy without ghapp's rule (`check`), and
the gate's decisions on a running server (`decisions`, `approve`, `reject`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import aiohttp
import gidgethub

from ghapp.cli.common import CommandError, app_settings, fail, github_client, print_table
from ghapp.cli.failures import check_url, reason
from ghapp.config import load_settings
from ghapp.core import validation
from ghapp.core.untrusted import clean
from ghapp.github import gate_calls
from ghapp.github.client import GitHubUnavailable


def run(args: argparse.Namespace) -> int:
    """Run one `ghapp gate` action."""
    try:
        if args.action == "check":
            return asyncio.run(_check(args.repository))
        if args.action == "decisions":
            return asyncio.run(_decisions(args))
        return asyncio.run(_settle(args))
    except CommandError as exc:
        return fail(str(exc), exc.code)


async def _check(repository: str) -> int:
    if validation.REPOSITORY_RE.fullmatch(repository) is None:
        raise CommandError(f"{repository!r} is not OWNER/REPO", 2)
    settings = app_settings()
    async with github_client(settings) as github:
        try:
            installation = await github.installation_for(repository)
            slug = await gate_calls.app_slug(github)
            listed = await gate_calls.environments(github, repository, installation)
            rows, missing = [], []
            for environment in listed:
                name = str(environment.get("name"))
                rules = await gate_calls.custom_rules(github, repository, installation, name)
                ours = any(
                    r.get("enabled") and (r.get("app") or {}).get("slug") == slug for r in rules
                )
                reviewers, timer = _protections(environment)
                rows.append([name, "yes" if ours else "NO", ", ".join(reviewers) or "-",
                             f"{timer} min" if timer else "-"])
                if not ours:
                    missing.append(name)
        except GitHubUnavailable as exc:
            raise CommandError(str(exc), 2) from None
        except gidgethub.BadRequest as exc:
            status = int(exc.status_code)
            if status == 404:
                raise CommandError(
                    f"{repository}: not found, or the App is not installed"
                ) from None
            if status == 403:
                # Custom rules need GitHub Enterprise in private and internal repositories.
                raise CommandError(
                    f"{repository}: GitHub refused (403): its plan may offer no custom "
                    "deployment protection rules"
                ) from None
            raise CommandError(f"GitHub answered {status}: {exc}") from None
    if rows:
        print_table(["environment", "ghapp rule", "reviewers", "wait timer"], rows)
    else:
        sys.stdout.write(f"{repository} has no environments\n")
    for name in missing:
        # The name is GitHub's: cleaned like every other line that quotes it.
        fail(f"{repository}: environment {name} deploys without ghapp's rule")
    return 1 if missing else 0


def _protections(environment: dict[str, Any]) -> tuple[list[str], int]:
    reviewers: list[str] = []
    timer = 0
    for rule in environment.get("protection_rules") or []:
        if rule.get("type") == "wait_timer":
            timer = int(rule.get("wait_timer") or 0)
        for entry in rule.get("reviewers") or []:
            who = entry.get("reviewer") or {}
            if entry.get("type") == "Team":
                org = str(who.get("html_url", "")).split("/orgs/")[-1].split("/")[0]
                reviewers.append(f"{org}/{who.get('slug')}")
            else:
                reviewers.append(str(who.get("login")))
    return reviewers, timer


def _server(url: str | None) -> tuple[str, str]:
    base = check_url(url) if url is not None else None
    settings = load_settings()
    if not settings.orchestrator_token:
        raise CommandError("ORCHESTRATOR_TOKEN: required to ask the server", 2)
    return base or f"http://127.0.0.1:{settings.port}", settings.orchestrator_token


async def _call(method: str, url: str, path: str, params: dict[str, str] | None = None) -> Any:
    base, token = _server(url)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.request(method, base + path, params=params, headers=headers) as response,
        ):
            body = await response.json(content_type=None)
            if response.status == 401:
                raise CommandError(f"ORCHESTRATOR_TOKEN: the server at {base} refused it (401)")
            if response.status != 200:
                message = body.get("message") if isinstance(body, dict) else None
                raise CommandError(message or f"{base}{path} answered {response.status}")
            return body
    except (aiohttp.ClientConnectionError, TimeoutError) as exc:
        raise CommandError(
            f"no ghapp server answers at {base}: {reason(exc)} (start one with `ghapp serve`,"
            " or pass --url)",
            2,
        ) from None


async def _decisions(args: argparse.Namespace) -> int:
    params = {"limit": str(args.limit)}
    if args.held:
        params["decision"] = "held"
    if args.repository:
        params["repository"] = args.repository
    answer = await _call("GET", args.url, "/api/v1/gate/decisions", params)
    found = answer.get("decisions") or []
    if args.json:
        sys.stdout.write(json.dumps(found, indent=2) + "\n")
        return 0
    rows = [
        [d["id"], d["decided_at"] or "", d["repository"], d["environment"], d["origin"],
         d["decision"], str(d.get("actor") or "-"), str(d.get("reason") or "")]
        for d in found
    ]
    if rows:
        print_table(
            ["id", "decided", "repository", "environment", "origin", "decision", "actor",
             "reason"],
            rows,
        )
    else:
        sys.stdout.write("no decisions\n")
    return 0


async def _settle(args: argparse.Namespace) -> int:
    decided = await _call("POST", args.url, f"/api/v1/gate/decisions/{args.id}/{args.action}")
    sys.stdout.write(clean(
        f"{decided['id']}: {decided['decision']} ({decided['repository']} "
        f"{decided['environment']}, run {decided['run']['id']})"
    ) + "\n")
    return 0
