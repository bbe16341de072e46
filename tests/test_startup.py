"""Starting `ghapp serve`: every bad setting at once, one line each; a database that cannot be
opened is one line naming DATABASE_URL; no library noise; `--version`; `serve --help`."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ghapp import __version__
from ghapp.cli.main import main
from ghapp.config import Settings, SettingsError, load_settings
from ghapp.simulator.stack import ProcessServer, app_key, free_port

GOOD = {
    "APP_ID": "1",
    "WEBHOOK_SECRET": "w" * 32,
    "ORCHESTRATOR_TOKEN": "t" * 32,
    "CALLBACK_SECRET": "c" * 32,
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)


def serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`ghapp serve` in a child with only these settings; it must stop by itself."""
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": ":".join(sys.path)}
    return subprocess.run(
        [sys.executable, "-m", "ghapp", "serve"],
        env={**base, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_three_bad_settings_are_named_at_once(tmp_path: Path) -> None:
    bad = {"APP_ID": "abc", "PORT": "eighty", "CALLBACK_SECRET": "short"}
    result = serve(tmp_path, **{**GOOD, "PRIVATE_KEY": app_key(), **bad})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "ghapp: APP_ID: 'abc' is neither the App's id (a number) nor its client id "
        "(Iv1.../Iv23...)",
        "ghapp: PORT: Input should be a valid integer, unable to parse string as an integer",
        "ghapp: CALLBACK_SECRET: must be at least 16 characters (it has 5; e.g. openssl rand "
        "-hex 32)",
    ]


def test_a_fresh_env_lists_everything_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIVATE_KEY_PATH", "/nowhere/app.pem")
    with pytest.raises(SettingsError) as info:
        load_settings(for_serve=True)
    assert info.value.problems == [
        "PRIVATE_KEY_PATH: file /nowhere/app.pem does not exist",
        "APP_ID: required to serve (the GitHub App's id)",
        "WEBHOOK_SECRET: required (the App's webhook secret)",
        "ORCHESTRATOR_TOKEN: required to serve",
        "CALLBACK_SECRET: required to serve",
    ]


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("1234", True),
        ("Iv1.8a61f9b3a7aba766", True),
        ("Iv23liZofBDOUS5F5z2g", True),
        ("abc", False),
        ("0", False),
        ("12a", False),
        ("Iv1.xyz", False),
        ("Ov23liZofBDOUS5F5z2g", False),  # an OAuth App's client id, not a GitHub App's
    ],
)
def test_app_id_is_an_id_or_a_client_id(
    monkeypatch: pytest.MonkeyPatch, value: str, accepted: bool
) -> None:
    monkeypatch.setenv("APP_ID", value)
    if accepted:
        assert load_settings().app_id == value
    else:
        with pytest.raises(SettingsError, match=r"^APP_ID: "):
            load_settings()


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_a_database_that_cannot_be_opened_is_one_line(tmp_path: Path, kind: str) -> None:
    if kind == "postgresql":
        # Nobody listens there; the password must not be printed.
        url = f"postgresql://ghapp:hunter2-secret@127.0.0.1:{free_port()}/ghapp"
        expected = (
            "ghapp: DATABASE_URL: cannot open postgresql://ghapp:***@127.0.0.1:"
            f"{url.rsplit(':', 1)[1].split('/')[0]}/ghapp: connection refused"
        )
    else:
        url = f"sqlite:///{tmp_path / 'no-such-folder' / 'ghapp.db'}"
        expected = (
            f"ghapp: DATABASE_URL: cannot open {url}: the folder "
            f"{tmp_path / 'no-such-folder'} does not exist"
        )
    result = serve(tmp_path, **{**GOOD, "PRIVATE_KEY": app_key(), "DATABASE_URL": url})
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(expected), line
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "no-such-folder").exists()


def test_a_database_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    base = os.environ.get("GHAPP_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("GHAPP_TEST_POSTGRES_URL is not set: needs a PostgreSQL server")
    url = base.rsplit("/", 1)[0] + "/ghapp_no_such_database"
    result = serve(tmp_path, **{**GOOD, "PRIVATE_KEY": app_key(), "DATABASE_URL": url})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f'ghapp: DATABASE_URL: cannot open {url}: database "ghapp_no_such_database" does not exist'
    ]


async def test_a_normal_start_has_no_library_noise(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        app_id="1",
        private_key=app_key(),
        webhook_secret=["w" * 32],
        orchestrator_token="t" * 32,
        callback_secret="c" * 32,
        database_url=f"sqlite:///{tmp_path / 'ghapp.db'}",
    )
    log = tmp_path / "serve.log"
    server = ProcessServer(settings, str(log))
    try:
        await server.start()  # a new database: the schema is created (migrated) first
    finally:
        await server.stop()
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert records, log.read_text()
    assert [r for r in records if r.get("logger", "").startswith("alembic")] == []
    [migrated] = [r for r in records if r.get("msg") == "database schema upgraded"]
    assert migrated["from_revision"] == "none" and migrated["level"] == "info"
    assert "Traceback" not in log.read_text()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"ghapp {__version__}\n"
    assert __version__ == importlib.metadata.version("ghapp")


def test_serve_help_lists_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--workers" in out
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no docstring: serve --help cannot explain it"
        assert f"  {name.upper()} (default: " in out, name
        assert field.description in out, name
    assert "  PORT (default: 3000)" in out and "  DATABASE_URL (default: sqlite:///ghapp.db)" in out
    assert "  APP_ID (default: none)" in out and "  AUTO_REDELIVER (default: off)" in out
