"""Durable state: deployments, seen webhook deliveries and the callback outbox."""

from ghapp.store.callbacks import OutboxItem
from ghapp.store.deployments import IdempotencyConflict
from ghapp.store.dispatches import EnvironmentBusy
from ghapp.store.sql import SqlStore

__all__ = ["EnvironmentBusy", "IdempotencyConflict", "OutboxItem", "SqlStore"]
