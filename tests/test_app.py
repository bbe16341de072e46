"""The application's start-up: what `ghapp serve` asks of it beyond the routes."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from ghapp.config import Settings
from ghapp.simulator.stack import app_key
from ghapp.web.app import create_app


def settings(tmp_path: Path) -> Settings:
    return Settings(
        app_id="1",
        private_key=app_key(),
        webhook_secret=["s"],
        orchestrator_token="t" * 32,
        callback_secret="c" * 32,
        database_url=f"sqlite:///{tmp_path}/app.db",
        github_api_url="http://127.0.0.1:9",
    )


@pytest.mark.parametrize("freeze", [False, True])
async def test_a_served_app_moves_start_up_objects_out_of_the_collectors_sight(
    tmp_path: Path, freeze: bool
) -> None:
    gc.unfreeze()
    app = create_app(settings(tmp_path), freeze_gc=freeze)
    try:
        async with app.router.lifespan_context(app):
            assert (gc.get_freeze_count() > 0) is freeze
    finally:
        gc.unfreeze()
