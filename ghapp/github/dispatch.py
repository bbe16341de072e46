"""Dispatching a workflow: the 2026-03-10 way that returns the run id, and the old way.

Every dispatch carries the correlation input (`ghapp_id` = the deployment id) when the
workflow file on the ref declares it, on github.com as on GitHub Enterprise Server: a run
whose dispatch answer was lost (a 5xx, a reset, a crash) is then found by its title (see
ghapp.core.correlation). GHES 3.20 and older refuse the API version and answer 204 without the
run; the correlation input is how ghapp finds it there."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gidgethub

from ghapp.core.correlation import CORRELATION_INPUT
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


TRACE_INPUT = "traceparent"


@dataclass(frozen=True)
class Target:
    """Where a dispatch goes, once looked up: the installation, the ref, and whether the
    workflow declares the correlation input."""

    installation_id: int
    ref: str
    correlate: bool = False
    # The workflow declares the input `traceparent` (asked only when tracing is on).
    traceparent: bool = False


async def prepare(
    github: GitHubClient, repository: str, ref: str | None, workflow: str, *,
    traced: bool = False,
) -> Target:
    """The lookups before a dispatch (installation, default branch, token, whether the
    workflow declares `ghapp_id`); nothing is dispatched."""
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
    correlate = await github.declares_input(
        repository, installation, workflow, ref, CORRELATION_INPUT
    )
    declares_trace = traced and await github.declares_input(
        repository, installation, workflow, ref, TRACE_INPUT
    )
    return Target(installation, ref, correlate, declares_trace)


async def send(
    github: GitHubClient,
    repository: str,
    workflow: str,
    target: Target,
    inputs: Mapping[str, Any],
    *,
    correlation_id: str,
    traceparent: str | None = None,
) -> Dispatched:
    """Dispatch a workflow to a prepared target; GitHub's refusal raises DispatchRejected.

    `traceparent` goes as the input of that name when the workflow declares it."""
    installation, ref = target.installation_id, target.ref
    correlate = target.correlate and CORRELATION_INPUT not in inputs
    tagged = {**inputs, CORRELATION_INPUT: correlation_id} if correlate else dict(inputs)
    if traceparent and target.traceparent and TRACE_INPUT not in inputs:
        tagged[TRACE_INPUT] = traceparent
    try:
        details = await _post(github, repository, workflow, target, tagged, versioned=True)
    except _InputRefused:
        # The file read and the one GitHub runs disagree: dispatch without the input.
        correlate = False
        try:
            details = await _post(github, repository, workflow, target, dict(inputs),
                                  versioned=True)
        except _InputRefused as exc:
            raise DispatchRejected(str(exc)) from None
    except _VersionRefused:
        # The server does not know API version 2026-03-10: a GHES of 3.20 or older.
        return await _dispatch_old_way(github, repository, workflow, target, inputs, tagged,
                                       correlate, correlation_id)
    correlated = correlation_id if correlate else None
    if details is None:
        # 204: the dispatch happened without run details.
        return Dispatched(installation, ref, correlation_id=correlated)
    return Dispatched(
        installation,
        ref,
        run_id=int(details["workflow_run_id"]),
        html_url=details.get("html_url"),
        correlation_id=correlated,
    )


class _InputRefused(Exception):
    """422 "Unexpected inputs": nothing was dispatched."""


class _VersionRefused(Exception):
    """400 to the versioned request: nothing was dispatched."""


async def _post(
    github: GitHubClient,
    repository: str,
    workflow: str,
    target: Target,
    inputs: Mapping[str, Any],
    *,
    versioned: bool,
) -> dict[str, Any] | None:
    body = {"ref": target.ref, "inputs": dict(inputs)}
    try:
        return await github.post_dispatch(
            repository, target.installation_id, workflow, body, versioned=versioned
        )
    except gidgethub.BadRequest as exc:
        status = int(exc.status_code)
        if versioned and status == 400:
            raise _VersionRefused(str(exc)) from exc
        if status == 422 and "unexpected inputs" in str(exc).lower():
            raise _InputRefused(_message(exc)) from exc
        raise _rejected(exc) from exc


async def _dispatch_old_way(
    github: GitHubClient,
    repository: str,
    workflow: str,
    target: Target,
    inputs: Mapping[str, Any],
    tagged: Mapping[str, Any],
    correlate: bool,
    correlation_id: str,
) -> Dispatched:
    installation, ref = target.installation_id, target.ref
    if correlate:
        try:
            await _post(github, repository, workflow, target, tagged, versioned=False)
            return Dispatched(installation, ref, correlation_id=correlation_id)
        except _InputRefused:
            pass  # the file on disk and the one GitHub runs disagree: without the input
    try:
        await _post(github, repository, workflow, target, dict(inputs), versioned=False)
    except _InputRefused as exc:
        raise DispatchRejected(str(exc)) from None
    return Dispatched(installation, ref)


def _rejected(exc: gidgethub.BadRequest) -> Exception:
    # 403 here is a permission (rate limits were retried before): the user must fix it too.
    if int(exc.status_code) in (403, 404, 422):
        return DispatchRejected(_message(exc))
    return exc
