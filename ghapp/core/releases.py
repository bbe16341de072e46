"""Release bookkeeping: which successful deployment is live, and what a rollback restores.

Pure code over the releases of one repository and environment, newest first."""

from __future__ import annotations

from collections.abc import Sequence

from ghapp.core.deploys import DeploymentRecord
from ghapp.core.models import EnvironmentReleases, Release


def version_of(record: DeploymentRecord) -> str | None:
    """What a release put live: `inputs.version` when given, else the commit it ran on."""
    named = record.inputs.get("version")
    return str(named) if named not in (None, "") else record.head_sha


def release_of(record: DeploymentRecord) -> Release:
    """The Release a successful deployment made."""
    verdict = record.verdict
    return Release(
        deployment_id=record.id,
        ref=record.ref,
        head_sha=record.head_sha,
        version=version_of(record),
        deployed_url=verdict.deployed_url if verdict else None,
        released_at=record.completed_at or record.updated_at,
    )


def previous_index(history: Sequence[DeploymentRecord], index: int) -> int | None:
    """The release a rollback from `history[index]` restores (history newest first).

    After a rollback, the one before the release it restored: rolling back twice walks back
    two releases instead of swinging between the last two."""
    entry = history[index]
    if entry.kind == "rollback" and entry.rollback_of is not None:
        for older in range(index + 1, len(history)):
            if history[older].id == entry.rollback_of:
                return previous_index(history, older)
        # The restored release is older than the history read: take the plain predecessor.
    return index + 1 if index + 1 < len(history) else None


def rollback_target(
    history: Sequence[DeploymentRecord], to: str | None
) -> DeploymentRecord | None:
    """The earlier release a rollback restores: `to`, or the one before the current; None: 409."""
    if not history:
        return None
    if to is None:
        found = previous_index(history, 0)
        return history[found] if found is not None else None
    return next((record for record in history[1:] if record.id == to), None)


def environment_view(name: str, history: Sequence[DeploymentRecord]) -> EnvironmentReleases:
    """An environment's current release and the one `to: null` would restore."""
    if not history:
        return EnvironmentReleases(name=name)
    previous = previous_index(history, 0)
    return EnvironmentReleases(
        name=name,
        current=release_of(history[0]),
        previous=release_of(history[previous]) if previous is not None else None,
    )

