"""A reviewer's rejection read from a run's approvals (when its webhook was lost)."""

from __future__ import annotations

import gidgethub

from ghapp.core.deploys import DeploymentRecord, Event, ReviewDecided
from ghapp.core.times import utcnow
from ghapp.github.client import GitHubClient, GitHubUnavailable
from ghapp.github.gate_calls import approvals


async def rejection(
    github: GitHubClient, record: DeploymentRecord, installation: int, run_id: int
) -> Event | None:
    """A reviewer's rejection of the run, read from its approvals, as an event; else None."""
    try:
        reviews = await approvals(github, record.repository, installation, run_id)
    except (gidgethub.GitHubException, GitHubUnavailable):
        return None
    for review in reviews:
        if review.get("state") == "rejected":
            environments = review.get("environments") or [{}]
            name = environments[0].get("name") if isinstance(environments[0], dict) else None
            comment = review.get("comment")
            return ReviewDecided(
                run_id, str(name or record.environment), "rejected",
                str((review.get("user") or {}).get("login") or "a reviewer"),
                comment if isinstance(comment, str) else "", utcnow(),
            )
    return None
