"""The gate: deciding GitHub's `deployment_protection_rule` question. Pure functions: whose run
it is, and what to answer (GATE, GATE_FOREIGN, the policies' verdict)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ghapp.core.deploy_record import DeploymentRecord
from ghapp.core.gate_policies import ALLOWED, PolicyVerdict
from ghapp.core.untrusted import clean

Origin = Literal["ghapp", "foreign"]
Decision = Literal["approved", "rejected", "held"]
GateMode = Literal["off", "on"]
ForeignMode = Literal["reject", "approve", "hold"]

_CALLBACK_PATH = re.compile(
    r"/repos/([^/]+)/([^/]+)/actions/runs/(\d+)/deployment_protection_rule$"
)
HOW_TO_DEPLOY = "deploy through ghapp (POST /api/v1/deployments) instead"


@dataclass(frozen=True)
class GateRequest:
    """What a `deployment_protection_rule.requested` webhook asks."""

    repository: str
    environment: str
    run_id: int
    callback_url: str
    sha: str | None = None
    ref: str | None = None
    event: str | None = None
    installation_id: int | None = None
    sender: str | None = None


def run_id_of(callback_url: str) -> int | None:
    """The run id in a `deployment_callback_url`."""
    found = _CALLBACK_PATH.search(callback_url.split("?", 1)[0])
    return int(found.group(3)) if found else None


def request_of(payload: dict[str, Any]) -> GateRequest | None:
    """The request in a webhook payload, or None when it lacks what an answer needs."""
    url = payload.get("deployment_callback_url")
    environment = payload.get("environment")
    repository = (payload.get("repository") or {}).get("full_name")
    if not isinstance(url, str) or not isinstance(environment, str) or not environment:
        return None
    run_id = run_id_of(url)
    if run_id is None or not isinstance(repository, str):
        return None
    installation = (payload.get("installation") or {}).get("id")
    sender = (payload.get("sender") or {}).get("login")
    return GateRequest(
        repository=repository,
        environment=environment,
        run_id=run_id,
        callback_url=url,
        sha=payload.get("sha") if isinstance(payload.get("sha"), str) else None,
        ref=payload.get("ref") if isinstance(payload.get("ref"), str) else None,
        event=payload.get("event") if isinstance(payload.get("event"), str) else None,
        installation_id=installation if isinstance(installation, int) else None,
        sender=sender if isinstance(sender, str) else None,
    )


@dataclass(frozen=True)
class RunFacts:
    """What GitHub says of the waiting run: its attempt and who started that attempt."""

    attempt: int
    triggering_actor: str | None
    title: str | None = None

    @classmethod
    def of(cls, run: dict[str, Any]) -> RunFacts:
        """From a workflow run as the REST API gives it."""
        actor = (run.get("triggering_actor") or run.get("actor") or {}).get("login")
        attempt = run.get("run_attempt")
        return cls(
            attempt=attempt if isinstance(attempt, int) else 1,
            triggering_actor=actor if isinstance(actor, str) else None,
            title=run.get("display_title") if isinstance(run.get("display_title"), str) else None,
        )


@dataclass(frozen=True)
class Whose:
    """Whose run it is, and why (for the record and the comment)."""

    origin: Origin
    why: str
    completed: bool = False


def whose_run(record: DeploymentRecord | None, facts: RunFacts | None, bot_login: str) -> Whose:
    """A run is ghapp's own only when it belongs to an unfinished ghapp deployment, its attempt is
    the one ghapp dispatched and the App's bot triggered it; anything else is foreign."""
    if record is None:
        actor = clean(facts.triggering_actor or "someone")[:100] if facts else "someone"
        return Whose("foreign", f"started by {actor}, not by a ghapp deployment")
    if record.phase == "completed":
        return Whose("foreign", f"its deployment {record.id} is already completed", completed=True)
    if facts is None:
        return Whose("foreign", "the run could not be read from GitHub")
    dispatched = record.run.attempt if record.run is not None else 1
    if facts.attempt != dispatched:
        return Whose("foreign", f"attempt {facts.attempt} is a re-run, not the one ghapp started")
    if facts.triggering_actor != bot_login:
        actor = clean(facts.triggering_actor or "someone")[:100]
        return Whose("foreign", f"started by {actor}, not by ghapp")
    return Whose("ghapp", f"deployment {record.id}")


@dataclass(frozen=True)
class GateVerdict:
    """ghapp's answer: what to POST to the callback URL (None while held) and what to record."""

    origin: Origin
    decision: Decision
    reason: str
    comment: str
    deployment_id: str | None = None
    policy: str | None = None
    retry_after: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> str | None:
        """The callback's `state`, or None when nothing is sent yet."""
        return None if self.decision == "held" else self.decision


def decide(
    *,
    gate: GateMode,
    foreign: ForeignMode,
    whose: Whose,
    record: DeploymentRecord | None,
    policy: PolicyVerdict = ALLOWED,
) -> GateVerdict:
    """The answer to one protection-rule request."""
    deployment_id = record.id if record is not None else None
    if gate == "off":
        return GateVerdict(
            whose.origin,
            "approved",
            "gate off",
            "ghapp: the gate is off (GATE=off)",
            deployment_id,
        )
    if whose.origin == "ghapp":
        assert record is not None
        if not policy.allowed:
            return GateVerdict(
                "ghapp",
                "rejected",
                policy.reason,
                f"ghapp: policy {policy.policy}: {policy.reason}",
                deployment_id,
                policy.policy,
                policy.retry_after,
            )
        who = record.metadata.get("requested_by") or "the orchestrator"
        return GateVerdict(
            "ghapp",
            "approved",
            "ghapp's deployment",
            f"ghapp: deployment {record.id} (requested by {clean(who)[:100]})",
            deployment_id,
        )
    if whose.completed:
        return GateVerdict(
            "foreign",
            "rejected",
            whose.why,
            f"ghapp: rejected: {whose.why}; {HOW_TO_DEPLOY}",
            deployment_id,
        )
    if foreign == "approve":
        return GateVerdict(
            "foreign",
            "approved",
            whose.why,
            f"ghapp: approved a run ghapp did not start ({whose.why}; GATE_FOREIGN=approve)",
            deployment_id,
        )
    if foreign == "hold":
        return GateVerdict(
            "foreign",
            "held",
            whose.why,
            f"ghapp: held for an operator ({whose.why}); {HOW_TO_DEPLOY}",
            deployment_id,
        )
    return GateVerdict(
        "foreign",
        "rejected",
        whose.why,
        f"ghapp: rejected: {whose.why}; {HOW_TO_DEPLOY}",
        deployment_id,
    )


def callback_body(environment: str, state: str, comment: str) -> dict[str, str]:
    """The body of `POST {deployment_callback_url}` (GitHub's "Review custom deployment
    protection rules for a workflow run"); comments are cut to GitHub's 1,024 characters."""
    return {"environment_name": environment, "state": state, "comment": comment[:1024]}
