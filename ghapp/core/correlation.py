"""Finding the run of a dispatch that did not return it (the GHES way): pure matching rules."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ghapp.core.times import github_time

if TYPE_CHECKING:
    from ghapp.core.deploy_record import DeploymentRecord

CORRELATION_INPUT = "ghapp_id"
# Runner clocks and GitHub's `created` may differ from ours by a few seconds.
CLOCK_SKEW = timedelta(seconds=10)
# Without a correlation id, wait this long after the dispatch so a racing dispatch's run
# has appeared before "exactly one candidate" is believed.
SETTLE = timedelta(seconds=5)


def may_name_deployment(title: str) -> bool:
    """Whether a run's title may carry a deployment id (the template's run-name puts it there)."""
    return "dep_" in title


def declares_input(workflow_text: str, name: str) -> bool:
    """Whether a workflow file declares a workflow_dispatch input of that name."""
    import yaml  # only GHES-style dispatches read workflow files: no memory for it otherwise

    try:
        document = yaml.safe_load(workflow_text)
    except yaml.YAMLError:
        return False
    if not isinstance(document, dict):
        return False
    # YAML 1.1 reads the key `on` as True.
    triggers = document.get("on", document.get(True))
    if not isinstance(triggers, dict):
        return False
    dispatch = triggers.get("workflow_dispatch")
    inputs = dispatch.get("inputs") if isinstance(dispatch, dict) else None
    return isinstance(inputs, dict) and name in inputs


def _workflow_file(run: Mapping[str, Any]) -> str:
    # The REST API writes `path` as ".github/workflows/x.yml@ref"; webhooks without the ref.
    path = str(run.get("path") or "").split("@", 1)[0]
    return path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Wanted:
    """What a deployment whose run is unknown looks for."""

    deployment_id: str
    workflow: str
    ref: str
    dispatched_at: datetime
    correlation_id: str | None

    @classmethod
    def of(cls, record: DeploymentRecord) -> Wanted:
        """What a deployment looks for."""
        return cls(record.id, record.workflow, record.ref, record.dispatched_at,
                   record.correlation_id)


@dataclass(frozen=True)
class Match:
    """The outcome of a search: the run, or why none could be chosen yet."""

    run: Mapping[str, Any] | None = None
    ambiguity: str | None = None


def candidates(wanted: Wanted, runs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Runs that could be the deployment's: dispatched, same workflow and ref, not older."""
    found = []
    for run in runs:
        created = github_time(run.get("created_at"))
        if run.get("event") != "workflow_dispatch" or created is None:
            continue
        if not wanted.workflow.isdigit() and _workflow_file(run) != wanted.workflow:
            continue
        if wanted.workflow.isdigit() and str(run.get("workflow_id")) != wanted.workflow:
            continue
        if run.get("head_branch") != wanted.ref:
            continue
        if created < wanted.dispatched_at - CLOCK_SKEW:
            continue
        found.append(run)
    return found


def awaited(run: Mapping[str, Any], waiting: Iterable[Wanted]) -> bool:
    """Whether a run no deployment has yet may be the one a deployment waits for: dispatched,
    same workflow and ref, not older than that deployment's dispatch (its webhook came first)."""
    return any(candidates(wanted, [run]) for wanted in waiting)


def match(
    wanted: Wanted,
    runs: Sequence[Mapping[str, Any]],
    *,
    rivals: int,
    now: datetime,
) -> Match:
    """Choose the run of a deployment among runs not claimed by another deployment.

    With a correlation id the run is the one whose display_title carries it. Without, a run
    is chosen only when it is the one candidate and no other unbound deployment (`rivals`)
    could claim it.
    """
    found = candidates(wanted, runs)
    if wanted.correlation_id:
        for run in found:
            if wanted.correlation_id in str(run.get("display_title") or ""):
                return Match(run=run)
        return Match()
    if now - wanted.dispatched_at < SETTLE:
        return Match()
    if len(found) == 1 and rivals == 0:
        return Match(run=found[0])
    if not found:
        return Match()
    ids = ", ".join(str(run.get("id")) for run in found[:5])
    return Match(
        ambiguity=f"could not decide: {len(found)} candidate runs ({ids}) and "
        f"{rivals + 1} deployment(s) waiting, with no '{CORRELATION_INPUT}' input to tell "
        "them apart; declare it in the workflow (see `ghapp template deploy`)"
    )
