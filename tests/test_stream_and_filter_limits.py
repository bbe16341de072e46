"""Three small doors of the API, through a real server: `Last-Event-ID`, MAX_STREAMS, filters.

- `Last-Event-ID` is ASCII digits or ignored (a `²` used to answer 500 with a traceback);
- at most MAX_STREAMS event streams are open per process, past it `503` with `Retry-After`;
- at most 5 `metadata.K=V` filters per list request (`422` past it), run as one statement of
  joins on the metadata's primary key (on PostgreSQL: no subplan, planned in milliseconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from ghapp.cli.demo import demo_workflows
from ghapp.client import Client, StreamUnavailable
from ghapp.client._sse import EventParser, ServerEvent
from ghapp.simulator.stack import Stack
from ghapp.store import SqlStore
from ghapp.store.metadata_filter import with_metadata
from ghapp.store.rows import _select_records
from ghapp.store.schema import deployments


async def first_event(stack: Stack, deployment_id: str, headers: dict[str, str]) -> ServerEvent:
    url = f"{stack.base_url}/api/v1/deployments/{deployment_id}/events"
    parser = EventParser()
    assert stack.session is not None
    async with stack.session.get(url, headers={**stack.auth, **headers}) as response:
        assert response.status == 200, await response.text()
        async with asyncio.timeout(10):
            while True:
                found = list(parser.feed(await response.content.readany()))
                if found:
                    return found[0]


async def test_last_event_id_other_than_ascii_digits_is_ignored(stack: Stack) -> None:
    stack.sim.auto = False  # the deployment stays running
    _, body = await stack.deploy("acme/shop")
    # Digits int() refuses ("²"), digits of other scripts, signs, exponents, too many digits:
    # answered as a first connection (the snapshot's id is the record's version, a few).
    for value in ("²", "٣", "-1", "1e3", " 7 x", "9" * 30):
        event = await first_event(stack, body["id"], {"Last-Event-ID": value})
        assert event.event == "state" and int(event.id or 0) < 100, value
    # ASCII digits are taken: the snapshot's id goes past them.
    event = await first_event(stack, body["id"], {"Last-Event-ID": "1000"})
    assert int(event.id or 0) == 1001


@contextlib.asynccontextmanager
async def open_stream(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> AsyncIterator[aiohttp.ClientResponse]:
    """A stream held open (past its snapshot) until the block ends."""
    async with session.get(url, headers=headers) as response:
        if response.status == 200:
            await response.content.readany()
        yield response


async def test_open_streams_are_capped_per_process(database_url: str) -> None:
    stack = await Stack.start(database_url, max_streams=2)
    try:
        for repository, workflow in demo_workflows().items():
            stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
        stack.sim.auto = False
        _, body = await stack.deploy("acme/shop")
        url = f"{stack.base_url}/api/v1/deployments/{body['id']}/events"
        async with aiohttp.ClientSession() as session, contextlib.AsyncExitStack() as held:
            first = await held.enter_async_context(open_stream(session, url, stack.auth))
            second = await held.enter_async_context(open_stream(session, url, stack.auth))
            assert first.status == second.status == 200
            async with session.get(url, headers=stack.auth) as third:
                assert third.status == 503
                assert 1 <= int(third.headers["Retry-After"]) <= 60
                answer = await third.json()
                assert answer["error"] == "too_many_streams" and "MAX_STREAMS" in answer["message"]
            # Authorisation still comes first.
            async with session.get(url) as anonymous:
                assert anonymous.status == 401
            # The client's `wait` then polls instead: its stream says why it is not there.
            async with Client(stack.base_url, stack.settings.orchestrator_token or "") as client:
                with pytest.raises(StreamUnavailable) as refused:
                    async for _ in client.events(body["id"]):
                        pass
                assert refused.value.error == "too_many_streams"
            # Twenty at once while full: all refused, none slips past the cap.
            statuses = await asyncio.gather(
                *(refused_status(session, url, stack.auth) for _ in range(20))
            )
            assert statuses == [503] * 20
        # Once the clients have gone, streams are served again.
        async with aiohttp.ClientSession() as session, asyncio.timeout(10):
            while True:
                async with open_stream(session, url, stack.auth) as again:
                    if again.status == 200:
                        break
                await asyncio.sleep(0.1)
    finally:
        await stack.close()


async def refused_status(session: aiohttp.ClientSession, url: str, auth: dict[str, str]) -> int:
    async with session.get(url, headers=auth) as response:
        return response.status


async def test_at_most_five_metadata_filters(stack: Stack) -> None:
    pairs = {f"k{i}": f"v{i}" for i in range(6)}
    wanted = (await stack.deploy("acme/shop", metadata=pairs))[1]["id"]
    await stack.deploy("acme/shop", metadata={**pairs, "k4": "other"})
    five = "&".join(f"metadata.k{i}=v{i}" for i in range(5))
    status, body = await stack.get(f"/api/v1/deployments?{five}")
    assert status == 200 and [d["id"] for d in body["deployments"]] == [wanted]
    status, body = await stack.get(f"/api/v1/deployments?{five}&metadata.k5=v5")
    assert status == 422 and body["errors"][0]["field"] == "metadata"
    assert "at most 5" in body["message"]
    # Six parameters are six filters even when a key repeats.
    status, _ = await stack.get(f"/api/v1/deployments?{five}&metadata.k0=v0")
    assert status == 422


def listing_sql(pairs: dict[str, str]) -> str:
    query = with_metadata(_select_records(), pairs).order_by(deployments.c.created_at.desc())
    compiled = query.limit(50).compile(
        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
    )
    return str(compiled)


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += nodes(child)
    return found


async def test_five_filters_are_one_indexed_statement_on_postgresql(postgres_url: str) -> None:
    store = SqlStore(postgres_url)
    await store.open()
    try:
        count = 20_000
        async with store.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO deployments (id, repository, state, phase, created_at,"
                    " updated_at, last_heard_at, version, environment, kind, doc)"
                    " SELECT 'dep_' || n, 'acme/shop', 'completed', 'completed', n, n, n, 1,"
                    " 'production', 'deploy', '{}' FROM generate_series(1, :count) AS n"
                ),
                {"count": count},
            )
            for key, values in (
                ("thread_id", count),
                ("env", 3),
                ("team", 20),
                ("tier", 4),
                ("zone", 5),
            ):
                await conn.execute(
                    text(
                        "INSERT INTO deployment_metadata (key, value, deployment_id)"
                        " SELECT CAST(:key AS text), CAST(:key AS text) || '-' ||"
                        " (n % CAST(:values AS integer)), 'dep_' || n"
                        " FROM generate_series(1, :count) AS n"
                    ),
                    {"key": key, "values": values, "count": count},
                )
        async with store.engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
            await conn.execute(text("VACUUM ANALYZE deployment_metadata"))
            await conn.execute(text("VACUUM ANALYZE deployments"))
        n = 12_345
        pairs = {
            "thread_id": f"thread_id-{n}",
            "env": f"env-{n % 3}",
            "team": f"team-{n % 20}",
            "tier": f"tier-{n % 4}",
            "zone": f"zone-{n % 5}",
        }
        async with store.engine.connect() as conn:
            result = await conn.execute(
                text("EXPLAIN (ANALYZE, FORMAT JSON) " + listing_sql(pairs))
            )
            plan = result.scalar_one()
        top = (json.loads(plan) if isinstance(plan, str) else plan)[0]
        every = nodes(top["Plan"])
        # One statement: no subplan per filter; each filter read through the primary key.
        assert not [
            p for p in every if p.get("Subplan Name") or p.get("Parent Relationship") == "SubPlan"
        ]
        scans = [p for p in every if p.get("Relation Name") == "deployment_metadata"]
        assert len(scans) == 5 and all("Index" in p["Node Type"] for p in scans), scans
        assert top["Planning Time"] < 50, top["Planning Time"]
        assert top["Plan"]["Actual Rows"] == 1
    finally:
        await store.close()
