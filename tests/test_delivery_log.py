"""The local delivery log: what the server received, how it judged and handled it."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from ghapp.cli.main import main
from ghapp.simulator.stack import Stack
from ghapp.store import SqlStore
from ghapp.store.schema import delivery_log
from ghapp.work.delivery_entries import HEADERS_CUT, MAX_HEADERS
from ghapp.work.delivery_log import FLUSH_BATCH, FLUSH_BYTES, MAX_BODY, DeliveryLog


async def post_webhook(
    stack: Stack, body: bytes, *, signature: str | None, event: str = "ping"
) -> tuple[int, str]:
    """POST a delivery to ghapp as anyone could; (status, its X-GitHub-Delivery)."""
    assert stack.session is not None
    guid = str(uuid.uuid4())
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": guid}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    url = stack.base_url + stack.settings.webhook_path
    # A stream, since aiohttp warns about sending large bytes in one piece.
    async with stack.session.post(url, data=io.BytesIO(body), headers=headers) as response:
        return response.status, guid


async def listing(stack: Stack, query: str = "") -> list[dict[str, Any]]:
    status, body = await stack.get(f"/api/v1/deliveries{query}")
    assert status == 200
    return list(body["deliveries"])


async def test_bad_and_missing_signatures_are_recorded_with_their_verdict(stack: Stack) -> None:
    body = b'{"zen": "forged"}'
    status, bad_guid = await post_webhook(stack, body, signature="sha256=" + "0" * 64)
    assert status == 401
    status, missing_guid = await post_webhook(stack, body, signature=None)
    assert status == 401
    found = await listing(stack, "?outcome=bad_signature")
    assert [(d["delivery_id"], d["signature"], d["status"]) for d in found] == [
        (missing_guid, "missing", 401),
        (bad_guid, "bad", 401),
    ]
    status, detail = await stack.get(f"/api/v1/deliveries/{found[1]['id']}")
    assert status == 200
    assert detail["body"] == body.decode() and detail["body_size"] == len(body)
    # The signature a request carried is never shown back.
    assert detail["headers"]["x-hub-signature-256"] == "<redacted>"
    assert "0" * 64 not in json.dumps(detail)


async def test_a_handled_delivery_is_recorded_with_its_outcome_and_exact_body(
    stack: Stack,
) -> None:
    status, body = await stack.deploy("acme/shop")
    run = await stack.sim.wait_for_run(body["run"]["id"])
    assert run.conclusion == "success"
    [completed] = await listing(stack, "?event=workflow_run&outcome=handled&limit=1")
    assert completed["action"] == "completed" and completed["signature"] == "ok"
    assert completed["status"] == 200 and completed["duration_ms"] >= 0
    [sent] = [d for d in stack.sim.deliveries if d.guid == completed["delivery_id"]]
    # Looked up by GitHub's delivery id too, as `ghapp deliveries show` prints it.
    status, detail = await stack.get(f"/api/v1/deliveries/{sent.guid}")
    assert status == 200 and detail["id"] == completed["id"]
    assert detail["body"].encode() == sent.body and detail["truncated"] is False
    assert detail["headers"]["x-github-event"] == "workflow_run"
    assert detail["headers"]["x-hub-signature-256"] == "<redacted>"
    everything = await listing(stack, "?limit=1000")
    assert len(everything) == len(stack.sim.deliveries)
    times = [d["received_at"] for d in everything]
    assert times == sorted(times, reverse=True)
    assert "handled" in {d["outcome"] for d in everything}
    # Job deliveries move the deployment's progress (one may come before it is stored).
    jobs = {d["outcome"] for d in everything if d["event"] == "workflow_job"}
    assert "handled" in jobs and jobs <= {"handled", "not_ours"}


async def test_over_one_mib_is_kept_truncated_and_flagged(stack: Stack) -> None:
    body = json.dumps({"zen": "x" * (MAX_BODY + 10)}).encode()
    status, guid = await post_webhook(stack, body, signature=stack.sim.sign(body))
    assert status == 200
    status, detail = await stack.get(f"/api/v1/deliveries/{guid}")
    assert status == 200
    assert detail["truncated"] is True and detail["body_size"] == len(body)
    assert detail["body"].encode() == body[:MAX_BODY] and detail["outcome"] == "pong"


async def test_the_api_needs_the_token_and_checks_its_parameters(stack: Stack) -> None:
    assert stack.session is not None
    async with stack.session.get(f"{stack.base_url}/api/v1/deliveries") as response:
        assert response.status == 401
    status, body = await stack.get("/api/v1/deliveries?limit=0")
    assert status == 422 and body["errors"][0]["field"] == "limit"
    status, body = await stack.get("/api/v1/deliveries/dl_nope")
    assert status == 404
    # PostgreSQL text holds no NUL: refused up front, not a 500.
    status, body = await stack.get("/api/v1/deliveries?event=a%00b")
    assert status == 422 and body["errors"][0]["field"] == "event"
    status, body = await stack.get("/api/v1/deliveries/a%00b")
    assert status == 404


async def test_a_nul_in_a_payload_string_is_kept_out_of_the_columns(stack: Stack) -> None:
    delivery = await stack.sim.send_webhook("ping", {"action": "a\u0000b", "zen": "z"})
    assert delivery.status == 200
    status, detail = await stack.get(f"/api/v1/deliveries/{delivery.guid}")
    assert status == 200 and detail["action"] == "ab"
    assert detail["body"].encode() == delivery.body


async def test_off_with_zero_days(database_url: str) -> None:
    stack = await Stack.start(database_url, delivery_log_days=0)
    try:
        await stack.sim.send_webhook("ping", {"zen": "z"})
        status, body = await stack.get("/api/v1/deliveries")
        assert status == 200 and body == {"deliveries": [], "enabled": False}
    finally:
        await stack.close()


async def test_deliveries_local_command(
    stack: Stack,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    delivery = await stack.sim.send_webhook("ping", {"zen": "Keep it logically awesome."})
    await post_webhook(stack, b"{}", signature="sha256=bad")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORCHESTRATOR_TOKEN", stack.settings.orchestrator_token or "")
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["deliveries", "local", "--url", stack.base_url])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["ID", "RECEIVED", "EVENT", "ACTION"]
    assert "bad_signature" in lines[1] and "401" in lines[1]
    assert "pong" in lines[2] and delivery.guid in lines[2]
    local_id = lines[2].split()[0]
    code = await asyncio.to_thread(main, ["deliveries", "local", local_id, "--url", stack.base_url])
    out = capsys.readouterr().out
    assert code == 0
    assert "signature ok, answered 200 pong" in out and '"zen": "Keep it logically awesome."' in out
    monkeypatch.setenv("ORCHESTRATOR_TOKEN", "wrong")
    code = await asyncio.to_thread(main, ["deliveries", "local", "--url", stack.base_url])
    assert code == 1 and "refused it (401)" in capsys.readouterr().err


# --- the log itself -----------------------------------------------------------------------


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    store = SqlStore(database_url)
    await store.open()
    yield store
    await store.close()


def record(
    log: DeliveryLog,
    n: int,
    received_at: float,
    *,
    status: int = 200,
    body: bytes = b"{}",
    signature: str = "ok",
    headers: dict[str, str] | None = None,
) -> None:
    log.record(
        delivery_id=f"guid-{n}",
        event="ping",
        action=None,
        signature=signature,
        outcome="pong" if status == 200 else "bad_signature",
        status=status,
        duration_ms=1.0,
        headers=headers or {"x-github-event": "ping"},
        body=body,
        received_at=received_at,
    )


async def test_purge_drops_old_rows_and_keeps_the_newest_n(store: SqlStore) -> None:
    log = DeliveryLog(store.engine, days=1, keep=5)
    now = time.time()
    for n in range(11):
        # The first three are older than a day.
        record(log, n, now - 2 * 86400 + n if n < 3 else now - 100 + n)
        assert await log.flush() == 1
    assert await rows(store) == 11
    assert await log.purge(now) == 3 + 3
    kept = await log.recent(limit=100)
    assert [d.delivery_id for d in kept] == [f"guid-{n}" for n in range(10, 5, -1)]


async def rows(store: SqlStore) -> int:
    async with store.engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(delivery_log))).scalar()
    return int(count or 0)


async def test_record_only_buffers_and_a_task_writes_a_sample_under_load(
    store: SqlStore,
) -> None:
    log = DeliveryLog(store.engine, keep=5000)
    now = time.time()
    started = time.perf_counter()
    record(log, 0, now, status=401)
    for n in range(1, 2000):
        record(log, n, now + n / 1000)
    # No database work on the webhook's path: thousands of records cost milliseconds.
    assert time.perf_counter() - started < 1.0
    assert await rows(store) == 0
    log.start()
    async with asyncio.timeout(5):
        while await rows(store) == 0:  # noqa: ASYNC110 - polling the database
            await asyncio.sleep(0.02)
    await log.close()
    # One batch for the burst: the refused delivery, then the newest.
    kept = await log.recent(limit=5000)
    assert len(kept) == FLUSH_BATCH and log.dropped == 2000 - FLUSH_BATCH
    assert kept[0].delivery_id == "guid-1999" and kept[-1].delivery_id == "guid-0"


async def test_a_batch_holds_at_most_flush_bytes_of_bodies(store: SqlStore) -> None:
    log = DeliveryLog(store.engine)
    body = b"x" * 20_000
    for n in range(100):
        record(log, n, time.time(), body=body)
    written = await log.flush()
    assert written == FLUSH_BYTES // len(body)
    assert (await log.get("guid-99")) is not None and (await log.get("guid-0")) is None


async def test_the_migration_makes_the_table_the_schema_describes(store: SqlStore) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from ghapp.store.schema import metadata

    async with store.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    assert [d for d in diff if "delivery_log" in repr(d)] == []


async def test_headers_are_kept_up_to_8_kib_and_marked_cut(store: SqlStore) -> None:
    log = DeliveryLog(store.engine)
    big = {"x-github-event": "ping", "x-filler": "f" * 20_000, "x-after": "kept"}
    record(log, 1, time.time(), signature="bad", status=401, headers=big)
    assert await log.flush() == 1
    found = await log.get("guid-1")
    assert found is not None and found.truncated and found.headers is not None
    assert "x-filler" not in found.headers and found.headers["x-after"] == "kept"
    assert found.headers[HEADERS_CUT].startswith("200")
    assert len(json.dumps(found.headers)) < MAX_HEADERS + 200


async def test_refused_deliveries_never_evict_signed_ones(store: SqlStore) -> None:
    log = DeliveryLog(store.engine, keep=50, keep_refused=10)
    now = time.time()
    for n in range(20):
        record(log, n, now + n)
    # A flood of forged deliveries after them, in the buffer and over several batches.
    for n in range(20, 1220):
        record(log, n, now + n, status=401, signature="bad")
    while await log.flush():
        pass
    await log.purge(now + 2000)
    signed = [d.delivery_id for d in await log.recent(limit=1000, signature="ok")]
    refused = await log.recent(limit=1000, signature="bad")
    assert signed == [f"guid-{n}" for n in range(19, -1, -1)]
    assert len(refused) == 10 and refused[0].delivery_id == "guid-1219"
