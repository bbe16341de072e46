"""Durable state: deployments, seen webhook deliveries and the callback outbox."""

from ghapp.store.sql import IdempotencyConflict, OutboxItem, SqlStore

__all__ = ["IdempotencyConflict", "OutboxItem", "SqlStore"]
