"""The gate's decisions in SQL: recorded once per run attempt and environment, listed, and a
held one approved or rejected once."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ghapp.store.base import StoreBase
from ghapp.store.schema import deployments, gate_decisions, outbox

GATE_FOREIGN = "gate.foreign"


def _doc(row: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(row.doc)
    doc["decision"] = row.decision
    doc["answered"] = row.answered_at is not None
    return doc


class GateDecisions(StoreBase):
    """Gate decisions: one per run attempt and environment (a constraint across replicas)."""

    async def record_gate_decision(
        self, doc: dict[str, Any], *, callback_url: str | None = None
    ) -> dict[str, Any] | None:
        """Store a new decision (and its `gate.foreign` callback when a URL is given); None
        when this run attempt and environment were decided already (by this or a replica)."""
        now = time.time()
        values = {
            "id": doc["id"],
            "repository": doc["repository"],
            "environment": doc["environment"],
            "run_id": doc["run"]["id"],
            "run_attempt": doc["run"]["attempt"],
            "origin": doc["origin"],
            "decision": doc["decision"],
            "decided_at": now,
            "deployment_id": doc.get("deployment_id"),
            "doc": json.dumps(doc),
        }
        try:
            async with self.begin() as conn:
                await conn.execute(insert(gate_decisions).values(**values))
                if callback_url is not None:
                    await conn.execute(
                        insert(outbox).values(
                            delivery_id="cbg_" + doc["id"].removeprefix("gate_"),
                            deployment_id=doc["id"],
                            event=GATE_FOREIGN,
                            body=json.dumps(public_decision(doc)),
                            url=callback_url,
                            state="pending",
                            attempts=0,
                            created_at=now,
                            next_attempt_at=now,
                        )
                    )
        except IntegrityError:
            return None
        return doc

    async def gate_decision(self, decision_id: str) -> dict[str, Any] | None:
        """One decision by id."""
        async with self.reader.connect() as conn:
            row = (
                await conn.execute(select(gate_decisions).where(gate_decisions.c.id == decision_id))
            ).first()
        return _doc(row) if row is not None else None

    async def gate_decision_of(
        self, run_id: int, attempt: int, environment: str
    ) -> dict[str, Any] | None:
        """The decision about a run attempt's environment, if any."""
        c = gate_decisions.c
        query = select(gate_decisions).where(
            c.run_id == run_id, c.run_attempt == attempt, c.environment == environment
        )
        async with self.reader.connect() as conn:
            row = (await conn.execute(query)).first()
        return _doc(row) if row is not None else None

    async def gate_decisions(
        self,
        *,
        repository: str | None = None,
        environment: str | None = None,
        origin: str | None = None,
        decision: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Decisions, newest first."""
        c = gate_decisions.c
        query = select(gate_decisions).order_by(c.decided_at.desc()).limit(limit)
        for column, value in (
            (c.repository, repository),
            (c.environment, environment),
            (c.origin, origin),
            (c.decision, decision),
        ):
            if value is not None:
                query = query.where(column == value)
        async with self.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_doc(row) for row in rows]

    async def settle_gate_decision(
        self, decision_id: str, decision: str, *, reason: str | None = None
    ) -> dict[str, Any] | None:
        """Turn a `held` decision into `approved` or `rejected`; None when it is not held."""
        async with self.begin() as conn:
            row = (
                await conn.execute(select(gate_decisions).where(gate_decisions.c.id == decision_id))
            ).first()
            if row is None or row.decision != "held":
                return None
            doc: dict[str, Any] = json.loads(row.doc)
            doc["decision"] = decision
            if reason:
                doc["reason"] = reason
            doc["decided_at"] = _iso(time.time())
            result = await conn.execute(
                update(gate_decisions)
                .where(gate_decisions.c.id == decision_id, gate_decisions.c.decision == "held")
                .values(decision=decision, doc=json.dumps(doc), decided_at=time.time())
            )
            if not result.rowcount:
                return None
        return doc

    async def last_success_of_sha(
        self, repository: str, environment: str, sha: str, *, since: float
    ) -> datetime | None:
        """When `sha` last succeeded through ghapp in an environment since a time (the
        promotion policies); the sha is read from each success's stored document."""
        c = deployments.c
        query = (
            select(c.completed_at, c.doc)
            .where(
                c.repository == repository,
                c.environment == environment,
                c.verdict_status == "success",
                c.completed_at >= since,
            )
            .order_by(c.completed_at.desc())
            .limit(500)
        )
        async with self.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        for row in rows:
            if json.loads(row.doc).get("head_sha") == sha:
                return datetime.fromtimestamp(row.completed_at, UTC)
        return None

    async def forget_gate_decision(self, decision_id: str) -> None:
        """Drop a decision GitHub had no question for (a poll's guess), and its callback."""
        async with self.begin() as conn:
            await conn.execute(delete(gate_decisions).where(gate_decisions.c.id == decision_id))
            await conn.execute(delete(outbox).where(outbox.c.deployment_id == decision_id))

    async def gate_answered(self, decision_id: str) -> None:
        """Note that GitHub accepted the answer."""
        async with self.begin() as conn:
            await conn.execute(
                update(gate_decisions)
                .where(gate_decisions.c.id == decision_id)
                .values(answered_at=time.time())
            )


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


PUBLIC_FIELDS = (
    "id", "repository", "environment", "run", "sha", "ref", "actor", "origin", "decision",
    "reason", "decided_at", "deployment_id",
)


def public_decision(doc: dict[str, Any]) -> dict[str, Any]:
    """A decision as the API and the `gate.foreign` callback show it."""
    public = {key: doc.get(key) for key in PUBLIC_FIELDS}
    run = doc.get("run") or {}
    public["run"] = {"id": run.get("id"), "html_url": run.get("html_url")}
    for extra in ("policy", "retry_after", "comment"):
        if doc.get(extra) is not None:
            public[extra] = doc[extra]
    return public
