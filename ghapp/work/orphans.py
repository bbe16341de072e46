"""Dispatches whose process stopped between recording them and recording GitHub's answer
(SIGKILL, a machine lost, the database gone at the wrong moment): after ORPHAN_AFTER the
poller of any replica shows them and looks for their runs by correlation id. They are never
dispatched again (see ghapp.core.deploy_dispatch)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ghapp.core.deploy_dispatch import ORPHAN_AFTER, ORPHANED
from ghapp.core.deploys import DispatchDoubted
from ghapp.core.times import utcnow

if TYPE_CHECKING:
    from ghapp.work.poller import Poller

log = logging.getLogger("ghapp.poller")


async def adopt(poller: Poller) -> int:
    """Doubt every `recorded` deployment older than ORPHAN_AFTER; look for their runs."""
    records = await poller.store.recorded_before(time.time() - ORPHAN_AFTER)
    for record in records:
        transition = await poller.engine.apply(record, DispatchDoubted(why=ORPHANED, at=utcnow()))
        log.warning(
            "dispatch left unanswered by a stopped process; looking for its run",
            extra={"deployment_id": record.id},
        )
        current = transition.record if transition is not None else record
        if current.phase != "completed" and current.run is None:
            poller.spawn(poller.check_quietly(current))
    return len(records)
