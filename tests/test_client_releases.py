"""ghapp.client's releases, rollback and statistics calls against a real server."""

from __future__ import annotations

import pytest

from ghapp.client import Client, GhappError
from ghapp.simulator.stack import Stack


async def test_releases_rollback_and_stats(stack: Stack) -> None:
    token = stack.settings.orchestrator_token or ""
    async with Client(stack.base_url, token) as client:
        with pytest.raises(GhappError) as refused:
            await client.rollback("acme/shop", "production")
        assert refused.value.status == 409 and refused.value.error == "no_release"
        first = await client.wait(
            (await client.deploy("acme/shop", inputs={"version": "v1"})).id, interval=0.05
        )
        second = await client.wait(
            (await client.deploy("acme/shop", inputs={"version": "v2"})).id, interval=0.05
        )
        [production] = await client.environments("acme/shop")
        assert production.current is not None and production.current.deployment_id == second.id
        assert production.previous is not None and production.previous.version == "v1"
        releases = await client.releases("acme/shop", "production", limit=5)
        assert [r.version for r in releases] == ["v2", "v1"]
        rollback = await client.rollback("acme/shop", "production", metadata={"why": "test"})
        assert rollback.kind == "rollback" and rollback.rollback_of == first.id
        assert rollback.metadata == {"why": "test"}
        stats = await client.stats(repository="acme/shop", days=7)
        [entry] = stats["stats"]
        assert entry["deployments"] == 3 and entry["successes"] == 2


def test_a_conflict_names_the_unfinished_deployment() -> None:
    body = '{"error": "conflict", "message": "busy", "deployment_id": "dep_1"}'
    with pytest.raises(GhappError) as conflict:
        Client._decode(409, body)
    assert conflict.value.error == "conflict" and conflict.value.deployment_id == "dep_1"
