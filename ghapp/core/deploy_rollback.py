"""Deployments of one environment meeting: a newer one superseding this one
(cancel_previous), and the automatic rollback a failure verdict waits for."""

from __future__ import annotations

from ghapp.core.causes import Failure, default_rules
from ghapp.core.deploy_events import Action, CancelRun, RollbackDecided, Superseded, Transition
from ghapp.core.deploy_record import DeploymentRecord
from ghapp.core.deploy_verdict import complete
from ghapp.core.models import RollbackStarted, Verdict


def on_superseded(record: DeploymentRecord, event: Superseded) -> Transition:
    """Mark the deployment superseded and cancel its run; one with no run yet completes at
    once, unless its dispatch is still being answered (`recorded`: its run, if GitHub names
    one, is cancelled then; see ghapp.core.deploy_dispatch)."""
    if record.phase == "completed" or record.superseded:
        return Transition(record)
    updated = record.model_copy(deep=True)
    updated.superseded = True
    updated.superseded_by = event.by
    updated.updated_at = event.at
    if updated.phase == "recorded":
        return Transition(updated, changed=True)
    if updated.run is None:
        # No run to cancel yet: ghapp stops following this deployment now.
        return complete(updated, superseded_verdict(updated), event.at)
    actions: list[Action] = [CancelRun(updated.run.id)]
    return Transition(updated, actions, changed=True)


def superseded_verdict(record: DeploymentRecord) -> Verdict:
    """The verdict of a deployment superseded before its run was identified."""
    verdict = Verdict(
        status="failure",
        reason="superseded",
        summary=f"Superseded by {record.superseded_by or 'a newer deployment'} before its run "
        "was identified; ghapp stopped following it.",
    )
    verdict.cause = default_rules().classify(Failure(reason="superseded", log=""))
    return verdict


def on_rollback_decided(record: DeploymentRecord, event: RollbackDecided) -> Transition:
    """Release the held failure verdict, naming the rollback if one started."""
    if record.held_verdict is None:
        return Transition(record)
    updated = record.model_copy(deep=True)
    verdict = updated.held_verdict
    assert verdict is not None
    updated.held_verdict = None
    if event.deployment_id is not None and event.to is not None:
        verdict.rollback = RollbackStarted(deployment_id=event.deployment_id, to=event.to)
        verdict.summary += f" Rolling back to {event.to} ({event.deployment_id})."
    return complete(updated, verdict, event.at, hold=False)
