"""Durable state: deployments, seen webhook deliveries and the callback outbox."""

from ghapp.store.sql import EnvironmentBusy, IdempotencyConflict, OutboxItem, SqlStore

__all__ = ["EnvironmentBusy", "IdempotencyConflict", "OutboxItem", "SqlStore"]
