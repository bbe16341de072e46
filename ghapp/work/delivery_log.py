"""The local delivery log: the last webhook deliveries this server received, for debugging.

The webhook path must stay fast, so `record` only appends a tuple to a bounded in-memory buffer
(the headers packed into one bytes object; decoded, redacted and encoded only for the rows
written); a background task writes the buffer to the database in batches and purges rows past
the retention (`DELIVERY_LOG_DAYS` days, at most `keep` rows). The first delivery after a quiet
spell wakes it; it waits `FLUSH_INTERVAL` for the batch to gather, then writes at most
`FLUSH_BATCH` rows and `FLUSH_BYTES` of bodies in one transaction (fewer under a steady load:
`ROWS_PER_SECOND`, `BYTES_PER_SECOND`, and one batch per `BUSY_INTERVAL` while it cannot keep
everything). So a row is written within about `FLUSH_INTERVAL` (`BUSY_INTERVAL` under a load
heavier than the log keeps), and a crash loses at most the deliveries of that last interval,
never a deployment's state (written before the webhook is answered). Writing a 20 KiB row and
purging it later costs about as much CPU as handling the webhook, so under a heavier load the
log keeps a sample (signed deliveries ghapp answered with an error first, then the newest signed
ones, then unsigned ones) instead of slowing the server down.

Anyone can post to the webhook path: deliveries whose signature was not good are kept within
their own small quota (`keep_refused`), so a flood of them never evicts GitHub's. Headers are
kept up to `MAX_HEADERS` bytes and count in every byte budget, like bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager

from sqlalchemy import delete, insert, or_, select

from ghapp.store.aio import AsyncConnection, AsyncEngine
from ghapp.store.base import StoreUnavailable
from ghapp.store.schema import delivery_log
from ghapp.work.delivery_entries import (
    MAX_HEADERS,
    LoggedDelivery,
    Pending,
    clip_headers,
    headers_size,
    pack_headers,
    row_of,
    sample,
)

__all__ = [
    "BODYLESS_OUTCOMES",
    "BUFFER_BYTES",
    "BUSY_INTERVAL",
    "BYTES_PER_SECOND",
    "FLUSH_BATCH",
    "FLUSH_BYTES",
    "FLUSH_INTERVAL",
    "KEEP_REFUSED",
    "MAX_BODY",
    "MAX_UNSIGNED_BODY",
    "PURGE_INTERVAL",
    "ROWS_PER_SECOND",
    "DeliveryLog",
    "record_webhook",
]

log = logging.getLogger("ghapp.delivery_log")

MAX_BODY = 1024 * 1024
# A body whose signature failed came from anyone: keep less of it.
MAX_UNSIGNED_BODY = 64 * 1024
# Rows kept of deliveries whose signature was missing, bad or not checked.
KEEP_REFUSED = 100
# A delivery waits about FLUSH_INTERVAL in memory; one batch per interval at most. A batch holds
# up to FLUSH_BATCH rows and FLUSH_BYTES of bodies (a burst after a quiet spell is written
# whole), and under a steady load the writer keeps to ROWS_PER_SECOND and BYTES_PER_SECOND
# (a token bucket), whatever the load. Once a batch could not take every waiting delivery
# (the load is heavier than the log writes), the next waits BUSY_INTERVAL: a batch has a fixed
# cost (a transaction, its statements' round trips) that ten batches a second would pay ten
# times for the same sample.
FLUSH_INTERVAL = 0.1
BUSY_INTERVAL = 0.5
FLUSH_BATCH = 200
FLUSH_BYTES = 512 * 1024
# A written row costs about a fifth of what handling its delivery does (its row built, SQL, the
# indexes, its purge later): under a load heavier than this the log keeps a sample of it.
ROWS_PER_SECOND = 200
BYTES_PER_SECOND = 512 * 1024
PURGE_INTERVAL = 60.0
# Bounds the buffer's memory should the database stall.
BUFFER_BYTES = 64 * 1024 * 1024
_SUMMARY_COLUMNS = [c for c in delivery_log.c if c.name not in ("headers", "body")]


class DeliveryLog:
    """A bounded buffer in front of the `delivery_log` table, with its flush and purge task."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        days: float = 3,
        keep: int = 1000,
        keep_refused: int = KEEP_REFUSED,
        begin: Callable[[], AbstractAsyncContextManager[AsyncConnection]] | None = None,
    ) -> None:
        self.engine = engine
        # The store's write transactions, so the log's writes queue with the store's own.
        self.begin = begin or engine.begin
        self.retention = days * 86400
        self.keep = keep
        self.keep_refused = keep_refused
        self.enabled = days > 0 and keep > 0
        # Deliveries received but never written (sampled out under load, or the database failed).
        self.dropped = 0
        # Signed deliveries, and the others (their own quota: they never push signed ones out).
        self._buffer: deque[Pending] = deque()
        self._refused: deque[Pending] = deque()
        self._buffered_bytes = 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._last_purge = 0.0
        self._written_since_purge = 0
        self._refused_since_purge = 0
        # The writer's budget (a token bucket, full at start): rows and bytes it may write.
        self._rows_left = float(FLUSH_BATCH)
        self._bytes_left = float(FLUSH_BYTES)
        self._refilled = time.monotonic()

    # --- the hot path: no await, no I/O ------------------------------------------------

    def record(
        self,
        *,
        delivery_id: str | None,
        event: str | None,
        action: str | None,
        signature: str,
        outcome: str,
        status: int,
        duration_ms: float,
        headers: Mapping[str, str],
        body: bytes,
        received_at: float | None = None,
    ) -> None:
        """Buffer one delivery (body and headers clipped); nothing when the log is off."""
        if self.enabled:
            when = time.time() if received_at is None else received_at
            self.add(when, delivery_id, event, action, signature, outcome, status, duration_ms,
                     headers, body)

    def add(
        self,
        received_at: float,
        delivery_id: str | None,
        event: str | None,
        action: str | None,
        signature: str,
        outcome: str,
        status: int,
        duration_ms: float,
        headers: Mapping[str, str],
        body: bytes,
    ) -> None:
        """`record` without its checks and keywords: every delivery passes here."""
        signed = signature == "ok"
        size = len(body)
        kept = body
        if size > MAX_UNSIGNED_BODY and (size > MAX_BODY or not signed):
            kept = body[: MAX_BODY if signed else MAX_UNSIGNED_BODY]
        packed = pack_headers(headers)
        # The packed size bounds the size as received from above: exact only when it may be cut.
        cut = len(packed) > MAX_HEADERS and headers_size(headers) > MAX_HEADERS
        if cut:
            packed = pack_headers(clip_headers(headers))
        header_size = len(packed)
        queue = self._buffer if signed else self._refused
        if len(queue) >= (self.keep if signed else self.keep_refused):
            self._evict(queue)
        queue.append(
            Pending(received_at, delivery_id, event, action, signature, outcome, status,
                    duration_ms, packed, kept, size, header_size, cut)
        )
        self._buffered_bytes += len(kept) + header_size
        if self._buffered_bytes > BUFFER_BYTES:
            while self._buffered_bytes > BUFFER_BYTES:
                self._evict(self._refused if self._refused else self._buffer)
        # The writer sleeps until a delivery comes, then gathers a batch for FLUSH_INTERVAL.
        self._wake.set()

    def _evict(self, queue: deque[Pending]) -> None:
        oldest = queue.popleft()
        self._buffered_bytes -= oldest.size
        self.dropped += 1

    # --- the background side -----------------------------------------------------------

    def start(self) -> None:
        """Start the flush-and-purge task."""
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Stop the task and write what is still buffered."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        with contextlib.suppress(Exception):
            await self.flush()

    async def _run(self) -> None:
        busy = False
        while True:
            await self._wake.wait()
            # Deliveries coming meanwhile join this batch: one write per interval at most.
            await asyncio.sleep(BUSY_INTERVAL if busy else FLUSH_INTERVAL)
            self._wake.clear()
            dropped = self.dropped
            now = time.monotonic()
            elapsed, self._refilled = now - self._refilled, now
            self._rows_left = min(FLUSH_BATCH, self._rows_left + elapsed * ROWS_PER_SECOND)
            self._bytes_left = min(FLUSH_BYTES, self._bytes_left + elapsed * BYTES_PER_SECOND)
            try:
                rows, size = await self._flush(max(1, int(self._rows_left)), int(self._bytes_left))
                self._rows_left -= rows
                self._bytes_left -= size
                busy = self.dropped > dropped
                if (
                    self._written_since_purge >= self.keep
                    # A flood of forged deliveries is trimmed to its quota batch by batch.
                    or self._refused_since_purge >= self.keep_refused
                    or time.time() - self._last_purge >= PURGE_INTERVAL
                ):
                    await self.purge()
            except Exception as exc:
                if StoreUnavailable.covers(exc):
                    log.warning("delivery log not written: the database is unavailable")
                else:
                    log.exception("delivery log flush failed")
                # Not a retry storm while the database is away.
                await asyncio.sleep(FLUSH_INTERVAL)

    async def flush(self) -> int:
        """Write one batch of the buffered deliveries (a sample when more wait); how many."""
        return (await self._flush(FLUSH_BATCH, FLUSH_BYTES))[0]

    async def _flush(self, most: int, size: int) -> tuple[int, int]:
        """Write at most `most` rows and about `size` bytes of the buffer; (rows, bytes)."""
        async with self._lock:
            taken = sorted([*self._buffer, *self._refused], key=lambda entry: entry.received_at)
            self._buffer, self._refused = deque(), deque()
            self._buffered_bytes = 0
            if not taken:
                return 0, 0
            chosen = sample(taken, most, size)
            self.dropped += len(taken) - len(chosen)
            rows = [row_of(entry) for entry in chosen]
            try:
                async with self.begin() as conn:
                    await conn.execute(insert(delivery_log), rows)
            except Exception:
                # A debugging aid must not pile up memory while the database is away.
                self.dropped += len(rows)
                raise
            self._written_since_purge += len(rows)
            self._refused_since_purge += sum(not entry.signed for entry in chosen)
            return len(rows), sum(entry.size for entry in chosen)

    async def purge(self, now: float | None = None) -> int:
        """Delete rows older than the retention, then all but the newest `keep` signed ones
        and the newest `keep_refused` others."""
        now = time.time() if now is None else now
        self._last_purge = now
        self._written_since_purge = 0
        self._refused_since_purge = 0
        signed = delivery_log.c.signature == "ok"
        async with self.begin() as conn:
            result = await conn.execute(
                delete(delivery_log).where(delivery_log.c.received_at < now - self.retention)
            )
            removed = int(result.rowcount or 0)
            for which, keep in ((signed, self.keep), (~signed, self.keep_refused)):
                cutoff = (
                    await conn.execute(
                        select(delivery_log.c.received_at)
                        .where(which)
                        .order_by(delivery_log.c.received_at.desc())
                        .offset(max(keep, 1) - 1)
                        .limit(1)
                    )
                ).scalar()
                if cutoff is not None:
                    result = await conn.execute(
                        delete(delivery_log).where(which, delivery_log.c.received_at < cutoff)
                    )
                    removed += int(result.rowcount or 0)
        return removed

    # --- reading -------------------------------------------------------------------------

    async def recent(
        self,
        *,
        limit: int = 50,
        event: str | None = None,
        outcome: str | None = None,
        signature: str | None = None,
    ) -> list[LoggedDelivery]:
        """The newest deliveries first (the buffer is flushed first), without headers and body."""
        await self.flush()
        query = select(*_SUMMARY_COLUMNS).order_by(delivery_log.c.received_at.desc())
        if event:
            query = query.where(delivery_log.c.event == event)
        if outcome:
            query = query.where(delivery_log.c.outcome == outcome)
        if signature:
            query = query.where(delivery_log.c.signature == signature)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.limit(limit))).mappings().all()
        return [LoggedDelivery(**dict(row)) for row in rows]

    async def get(self, key: str) -> LoggedDelivery | None:
        """One delivery by its log id, or the newest with that X-GitHub-Delivery."""
        await self.flush()
        query = (
            select(delivery_log)
            .where(or_(delivery_log.c.id == key, delivery_log.c.delivery_id == key))
            .order_by(delivery_log.c.received_at.desc())
            .limit(1)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        if row is None:
            return None
        values = dict(row)
        values["headers"] = json.loads(values["headers"])
        values["body"] = bytes(values["body"])
        return LoggedDelivery(**values)


# Outcomes whose bodies the log does not keep: runs ghapp did not dispatch, ignored events.
BODYLESS_OUTCOMES = frozenset({"not_ours", "ignored"})


def record_webhook(
    delivery_log: DeliveryLog,
    headers: Mapping[str, str],
    body: bytes | None,
    *,
    outcome: str,
    action: str | None,
    status: int,
    started: float,
) -> None:
    """Note one answered webhook; the signature verdict is read from ghapp's own outcome."""
    if not delivery_log.enabled:
        return
    duration = time.perf_counter() - started
    if outcome == "bad_signature":
        signature = "missing" if not headers.get("x-hub-signature-256") else "bad"
    elif outcome == "too_large":
        signature = "unchecked"
    else:
        signature = "ok"
    if outcome in BODYLESS_OUTCOMES:
        # Most of an organisation's stream is other CI runs: keep that they came, not their
        # 20 KiB bodies (GitHub keeps those: `ghapp deliveries show`).
        body = b""
    # The delivery id and event are read from the headers when (if) the entry is written.
    delivery_log.add(
        time.time() - duration, None, None, action, signature, outcome, status,
        duration * 1000, headers, body or b"",
    )
