"""The durable store on SQLAlchemy Core: SQLite by default, PostgreSQL for several replicas.

`SqlStore` is put together here from one part per concept: the engine and schema upgrades
(`base`), deployments and their write-ahead dispatches, leases, the callback outbox, webhook
delivery bookkeeping, release history and statistics; statements and row mapping live in
`rows`.
"""

from __future__ import annotations

from ghapp.store.access import Access
from ghapp.store.callbacks import Callbacks
from ghapp.store.deliveries import Deliveries
from ghapp.store.dispatches import Dispatches
from ghapp.store.gate import GateDecisions
from ghapp.store.history import History
from ghapp.store.leases import Leases
from ghapp.store.stats import Stats


class SqlStore(
    Dispatches, Leases, Callbacks, Deliveries, History, Stats, Access, GateDecisions
):
    """Deployments, seen deliveries and the callback outbox in one SQL database."""
