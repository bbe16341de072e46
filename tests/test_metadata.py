"""The orchestrator's metadata and the deployment's environment: stored, echoed, looked up."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from ghapp.simulator.stack import Stack
from ghapp.store import SqlStore


async def test_metadata_is_echoed_in_every_answer_and_the_callback(stack: Stack) -> None:
    metadata = {"thread_id": "th_42", "run:attempt": "3"}
    status, body = await stack.deploy("acme/shop", metadata=metadata)
    assert status == 202 and body["metadata"] == metadata
    callback = await stack.receiver.wait_for(body["id"])
    assert callback.deployment["metadata"] == metadata
    _, stored = await stack.get(f"/api/v1/deployments/{body['id']}")
    assert stored["metadata"] == metadata
    # Never sent to GitHub: the run's inputs are the request's alone.
    run = stack.sim.world.runs[body["run"]["id"]]
    assert "th_42" not in json.dumps(run.inputs)


async def test_list_finds_a_deployment_by_metadata(stack: Stack) -> None:
    first = (await stack.deploy("acme/shop", metadata={"thread_id": "a"}))[1]["id"]
    second = (await stack.deploy("acme/shop", metadata={"thread_id": "b", "node": "deploy"}))[1]
    await stack.deploy("acme/shop")
    _, body = await stack.get("/api/v1/deployments?metadata.thread_id=a")
    assert [d["id"] for d in body["deployments"]] == [first]
    _, body = await stack.get("/api/v1/deployments?metadata.thread_id=b&metadata.node=deploy")
    assert [d["id"] for d in body["deployments"]] == [second["id"]]
    _, body = await stack.get("/api/v1/deployments?metadata.thread_id=b&metadata.node=fix")
    assert body["deployments"] == []
    status, body = await stack.get("/api/v1/deployments?metadata.bad%20key=x")
    assert status == 422 and body["errors"][0]["field"] == "metadata"


@pytest.mark.parametrize(
    ("metadata", "fragment"),
    [
        ({f"k{i}": "v" for i in range(21)}, "at most 20 keys"),
        ({"k" * 41: "v"}, "1 to 40"),
        ({"has space": "v"}, "1 to 40"),
        ({"k": "v" * 501}, "at most 500"),
        ({"k": 5}, "string"),
        (["thread_id"], "dictionary"),
    ],
)
async def test_bad_metadata_is_refused_and_nothing_dispatched(
    stack: Stack, metadata: Any, fragment: str
) -> None:
    status, body = await stack.deploy("acme/shop", metadata=metadata)
    assert status == 422
    assert body["errors"][0]["field"].startswith("metadata")
    assert fragment in json.dumps(body)
    assert not [r for r in stack.sim.requests if r.path.endswith("/dispatches")]


async def test_environment_from_inputs_else_the_default(stack: Stack) -> None:
    _, named = await stack.deploy("acme/shop", inputs={"environment": "staging"})
    _, default = await stack.deploy("acme/shop")
    assert named["environment"] == "staging"
    assert default["environment"] == "production"


def _old_row(deployment_id: str, inputs: dict[str, Any]) -> dict[str, Any]:
    now = time.time()
    doc = {
        "id": deployment_id,
        "repository": "acme/shop",
        "workflow": "deploy.yml",
        "ref": "main",
        "inputs": inputs,
        "state": "completed",
        "run": None,
        "verdict": None,
        "callback": {"url": None, "state": "pending", "attempts": 0},
        "created_at": "2026-11-30T10:00:00Z",
        "updated_at": "2026-11-30T10:00:00Z",
        "completed_at": None,
        "phase": "completed",
        "dispatched_at": "2026-11-30T10:00:00Z",
        "last_heard_at": "2026-11-30T10:00:00Z",
    }
    return {
        "id": deployment_id,
        "repository": "acme/shop",
        "state": "completed",
        "phase": "completed",
        "created_at": now,
        "updated_at": now,
        "last_heard_at": now,
        "version": 1,
        "doc": json.dumps(doc),
    }


async def test_an_existing_database_upgrades_with_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", "ghapp.store:migrations")
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
    engine.dispose()
    with sqlite3.connect(path) as db:
        for row in (_old_row("dep_a", {"environment": "staging"}), _old_row("dep_b", {})):
            db.execute(
                f"INSERT INTO deployments ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )
    monkeypatch.setenv("DEFAULT_ENVIRONMENT", "live")
    store = SqlStore(f"sqlite:///{path}")
    await store.open()
    try:
        staged, default = await store.get("dep_a"), await store.get("dep_b")
        assert staged is not None and default is not None
        assert (staged.environment, default.environment) == ("staging", "live")
        assert default.metadata == {} and default.public().metadata == {}
        with sqlite3.connect(path) as db:
            columns = dict(db.execute("SELECT id, environment FROM deployments").fetchall())
        assert columns == {"dep_a": "staging", "dep_b": "live"}
    finally:
        await store.close()
