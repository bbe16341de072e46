"""The GitHub calls of the gate: the App's bot, a run's facts, a protection-rule answer and a
commit's sha (docs.github.com: "Review custom deployment protection rules for a workflow run")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from ghapp.github.client import GitHubClient


async def app_slug(client: GitHubClient) -> str:
    """The App's slug (`GET /app`, as the App): its bot is `SLUG[bot]`."""
    data = await client.as_app(lambda gh: gh.getitem("/app"))
    return str(data["slug"])


async def review_protection_rule(
    client: GitHubClient,
    repository: str,
    installation_id: int,
    run_id: int,
    body: dict[str, Any],
) -> None:
    """`POST /repos/{o}/{r}/actions/runs/{run_id}/deployment_protection_rule` (GitHub: 204).

    The URL is built from the repository and run id, never taken from the payload, so a request
    only ever reaches the configured API."""
    url = f"/repos/{repository}/actions/runs/{run_id}/deployment_protection_rule"
    await client.as_installation(installation_id, lambda gh: gh.post(url, data=body))


async def commit_sha(
    client: GitHubClient, repository: str, installation_id: int, ref: str
) -> str | None:
    """The sha a ref names now (`GET /repos/{o}/{r}/commits/{ref}`)."""
    url = f"/repos/{repository}/commits/{quote(ref, safe='')}"
    data = await client.as_installation(installation_id, lambda gh: gh.getitem(url))
    sha = data.get("sha") if isinstance(data, dict) else None
    return str(sha) if sha else None


async def environments(
    client: GitHubClient, repository: str, installation_id: int
) -> list[dict[str, Any]]:
    """The repository's environments with their protection rules (reviewers, wait timer)."""
    url = f"/repos/{repository}/environments?per_page=100"
    data = await client.as_installation(installation_id, lambda gh: gh.getitem(url))
    return list(data.get("environments") or []) if isinstance(data, dict) else []


async def custom_rules(
    client: GitHubClient, repository: str, installation_id: int, environment: str
) -> list[dict[str, Any]]:
    """The environment's custom deployment protection rules (the Apps that gate it)."""
    url = (
        f"/repos/{repository}/environments/{quote(environment, safe='')}"
        "/deployment_protection_rules"
    )
    data = await client.as_installation(installation_id, lambda gh: gh.getitem(url))
    rules = data.get("custom_deployment_protection_rules") if isinstance(data, dict) else None
    return list(rules or [])


async def pending_deployments(
    client: GitHubClient, repository: str, installation_id: int, run_id: int
) -> list[dict[str, Any]]:
    """The environments a run waits on, with their reviewers and wait timers."""
    url = f"/repos/{repository}/actions/runs/{run_id}/pending_deployments"
    data = await client.as_installation(installation_id, lambda gh: gh.getitem(url))
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


async def approvals(
    client: GitHubClient, repository: str, installation_id: int, run_id: int
) -> list[dict[str, Any]]:
    """The reviews of a run's deployments (who approved or rejected, with their comment)."""
    url = f"/repos/{repository}/actions/runs/{run_id}/approvals"
    data = await client.as_installation(installation_id, lambda gh: gh.getitem(url))
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []
