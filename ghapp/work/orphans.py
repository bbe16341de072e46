"""Dispatches whose process stopped between recording them and recording GitHub's answer
(SIGKILL, a machine lost, the database gone at the wrong moment): after ORPHAN_AFTER the
poller of any replica shows them and looks for their runs by correlation id. They are never
dispatched again (see ghapp.core.deploy_dispatch)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ghapp.core.deploy_dispatch import ORPHAN_AFTER, ORPHANED
from ghapp.core.deploys import DeploymentRecord, DispatchDoubted
from ghapp.core.times import utcnow

if TYPE_CHECKING:
    from ghapp.store import SqlStore
    from ghapp.work.engine import Engine

log = logging.getLogger("ghapp.poller")


async def adopt(
    store: SqlStore, engine: Engine, look_for_run: Callable[[DeploymentRecord], object]
) -> int:
    """Doubt every `recorded` deployment older than ORPHAN_AFTER; look for their runs."""
    records = await store.recorded_before(time.time() - ORPHAN_AFTER)
    for record in records:
        transition = await engine.apply(record, DispatchDoubted(why=ORPHANED, at=utcnow()))
        log.warning(
            "dispatch left unanswered by a stopped process; looking for its run",
            extra={"deployment_id": record.id},
        )
        current = transition.record if transition is not None else record
        if current.phase != "completed" and current.run is None:
            look_for_run(current)
    return len(records)
