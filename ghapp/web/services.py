"""The `Services` a request handler needs, built once per process by the app factory."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cachetools import LRUCache

from ghapp.config import Settings
from ghapp.core.deploys import DeploymentRecord
from ghapp.github.client import GitHubClient
from ghapp.github.sessions import LazySession
from ghapp.metrics import Metrics
from ghapp.store import SqlStore
from ghapp.work.access import Auditor, TokenRegistry
from ghapp.work.callbacks import CallbackSender
from ghapp.work.delivery_log import DeliveryLog
from ghapp.work.engine import Engine
from ghapp.work.hub import ChangeHub
from ghapp.work.poller import Poller

if TYPE_CHECKING:
    from ghapp.work.tracing import Tracing


@dataclass
class Services:
    """Everything a request handler needs, built once per process."""

    settings: Settings
    store: SqlStore
    session: LazySession
    github: GitHubClient
    engine: Engine
    sender: CallbackSender
    poller: Poller
    metrics: Metrics
    idempotency_locks: LRUCache[str, asyncio.Lock] = field(
        default_factory=lambda: LRUCache(maxsize=10_000)
    )
    # Delivery ids this process handled: a shortcut only; the database's constraint decides.
    recent_deliveries: LRUCache[str, bool] = field(
        default_factory=lambda: LRUCache(maxsize=50_000)
    )
    delivery_log: DeliveryLog | None = None
    # OpenTelemetry traces, when the OTEL_* variables ask for them (ghapp.work.tracing).
    tracing: Tracing | None = None
    # The gate's per-process cache (the App's bot login).
    gate_state: dict[str, Any] = field(default_factory=dict)
    hub: ChangeHub = field(init=False)
    tokens: TokenRegistry = field(init=False)
    auditor: Auditor = field(init=False)

    def __post_init__(self) -> None:
        # Event streams follow the store's writes (and other replicas') through the hub.
        self.hub = ChangeHub(self.store)
        self.tokens = TokenRegistry(self.store, self.settings.orchestrator_token)
        self.auditor = Auditor(self.store)

    def notify_verdict(self, record: DeploymentRecord) -> None:
        """A verdict was stored: count it and wake the callback sender."""
        if record.verdict is not None:
            self.metrics.verdict(record.verdict.status, record.verdict.reason)
            if record.run is not None and record.completed_at is not None:
                seconds = (record.completed_at - record.created_at).total_seconds()
                self.metrics.deployment_duration.labels(
                    record.kind, record.verdict.status
                ).observe(max(seconds, 0.0))
            if self.tracing is not None:
                self.tracing.completed(record)
        self.sender.wake()
