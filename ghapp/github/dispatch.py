"""Dispatching a workflow: the 2026-03-10 way that returns the run id, and the old way.

GitHub Enterprise Server 3.20 and older refuse the API version and answer 204 without the
run, so ghapp then sends a correlation input (when the workflow declares it) and finds the
run whose display_title carries it (see ghapp.core.correlation)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gidgethub

from ghapp.core.correlation import CORRELATION_INPUT, declares_input
from ghapp.github.client import GitHubClient


class DispatchRejected(Exception):
    """GitHub refused the dispatch (no such workflow, ref or installation); says why."""


@dataclass(frozen=True)
class Dispatched:
    """What a dispatch tells: the run when GitHub returned it, and how to find it otherwise."""

    installation_id: int
    ref: str
    run_id: int | None = None
    html_url: str | None = None
    correlation_id: str | None = None


def _message(exc: gidgethub.HTTPException) -> str:
    text = str(exc) or exc.status_code.phrase
    return f"{text} ({int(exc.status_code)})"


@dataclass(frozen=True)
class Target:
    """Where a dispatch goes, once looked up: the installation and the ref."""

    installation_id: int
    ref: str


async def prepare(github: GitHubClient, repository: str, ref: str | None) -> Target:
    """The lookups before a dispatch (installation, default branch); nothing is dispatched."""
    try:
        installation = await github.installation_for(repository)
    except gidgethub.BadRequest as exc:
        if int(exc.status_code) == 404:
            raise DispatchRejected(
                f"the App is not installed on {repository} (or the repository does not exist)"
            ) from exc
        raise
    if ref is None:
        ref = await github.default_branch(repository, installation)
    # The token too, so that what is left is the dispatch request itself.
    await github.token(installation)
    return Target(installation, ref)


async def send(
    github: GitHubClient,
    repository: str,
    workflow: str,
    target: Target,
    inputs: Mapping[str, Any],
    *,
    correlation_id: str,
) -> Dispatched:
    """Dispatch a workflow to a prepared target; GitHub's refusal raises DispatchRejected."""
    installation, ref = target.installation_id, target.ref
    body = {"ref": ref, "inputs": dict(inputs)}
    try:
        details = await github.post_dispatch(
            repository, installation, workflow, body, versioned=True
        )
    except gidgethub.BadRequest as exc:
        if int(exc.status_code) != 400:
            raise _rejected(exc) from exc
        # The server does not know API version 2026-03-10: a GHES of 3.20 or older.
        return await _dispatch_old_way(
            github, repository, installation, workflow, ref, inputs, correlation_id
        )
    if details is None:
        # 204: the dispatch happened without run details and without a correlation input.
        return Dispatched(installation, ref)
    return Dispatched(
        installation, ref, run_id=int(details["workflow_run_id"]), html_url=details.get("html_url")
    )


async def _dispatch_old_way(
    github: GitHubClient,
    repository: str,
    installation: int,
    workflow: str,
    ref: str,
    inputs: Mapping[str, Any],
    correlation_id: str,
) -> Dispatched:
    text = await github.workflow_file(repository, installation, workflow, ref)
    correlate = (
        text is not None
        and CORRELATION_INPUT not in inputs
        and declares_input(text, CORRELATION_INPUT)
    )
    if correlate:
        body = {"ref": ref, "inputs": {**inputs, CORRELATION_INPUT: correlation_id}}
        try:
            await github.post_dispatch(repository, installation, workflow, body, versioned=False)
            return Dispatched(installation, ref, correlation_id=correlation_id)
        except gidgethub.BadRequest as exc:
            if int(exc.status_code) != 422 or "unexpected inputs" not in str(exc).lower():
                raise _rejected(exc) from exc
            # The file on disk and the one GitHub runs disagree: dispatch without the input.
    body = {"ref": ref, "inputs": dict(inputs)}
    try:
        await github.post_dispatch(repository, installation, workflow, body, versioned=False)
    except gidgethub.BadRequest as exc:
        raise _rejected(exc) from exc
    return Dispatched(installation, ref)


def _rejected(exc: gidgethub.BadRequest) -> Exception:
    # 403 here is a permission (rate limits were retried before): the user must fix it too.
    if int(exc.status_code) in (403, 404, 422):
        return DispatchRejected(_message(exc))
    return exc
