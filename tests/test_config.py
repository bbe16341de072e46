"""Settings: defaults, parsing, and one clear line naming a bad variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ghapp.config import Settings, SettingsError, load_settings

ENV_NAMES = [name.upper() for name in Settings.model_fields]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env from the developer's checkout


def pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def test_defaults_match_the_design() -> None:
    s = load_settings()
    assert s.webhook_path == "/api/github/webhooks"
    assert s.github_api_url == "https://api.github.com"
    assert (s.host, s.port) == ("0.0.0.0", 3000)
    assert s.database_url == "sqlite:///ghapp.db"
    assert (s.poll_after, s.run_lookup_timeout, s.run_timeout) == (60, 600, 21600)
    assert (s.callback_retry_base, s.callback_retry_max_interval, s.callback_retry_for) == (
        2,
        600,
        86400,
    )
    assert s.delivery_log_days == 3 and s.auto_redeliver is False


def test_lists_and_default_allowed_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", "old, new")
    monkeypatch.setenv("ORCHESTRATOR_CALLBACK_URL", "https://Orch.Example:8443/cb")
    s = load_settings()
    assert s.webhook_secret == ["old", "new"]
    # No default list: without CALLBACK_ALLOWED_HOSTS only that URL's scheme, host and port.
    assert s.callback_allowed_hosts == []
    assert s.weak_webhook_secrets() == 2


def test_dotenv_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("APP_ID=99\nPOLL_AFTER=5\n")
    s = load_settings()
    assert s.app_id == "99" and s.poll_after == 5


def test_inline_key_with_literal_newlines(monkeypatch: pytest.MonkeyPatch) -> None:
    key = pem()
    monkeypatch.setenv("PRIVATE_KEY", key.replace("\n", "\\n"))
    assert load_settings().app_private_key().strip() == key.strip()


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("PORT", "eighty", "PORT:"),
        ("PRIVATE_KEY_PATH", "/nonexistent/x.pem", "PRIVATE_KEY_PATH: file /nonexistent/x.pem"),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL: must be sqlite:///PATH"),
        ("GITHUB_API_URL", "ftp://x", "GITHUB_API_URL:"),
        ("POLL_AFTER", "-1", "POLL_AFTER:"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL:"),
        ("PRIVATE_KEY", "not a key", "PRIVATE_KEY: is not a PEM"),
        ("ORCHESTRATOR_CALLBACK_URL", "http://orch:99999/cb", "ORCHESTRATOR_CALLBACK_URL:"),
        ("CALLBACK_ALLOWED_HOSTS", "orch:x", "CALLBACK_ALLOWED_HOSTS: 'orch:x' is not a host"),
    ],
)
def test_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert str(info.value).startswith(expected)
    assert "\n" not in str(info.value)


def test_serve_requires_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match=r"^APP_ID:"):
        load_settings().require_for_serve()
    monkeypatch.setenv("APP_ID", "1")
    monkeypatch.setenv("PRIVATE_KEY", pem())
    monkeypatch.setenv("WEBHOOK_SECRET", "s")
    monkeypatch.setenv("ORCHESTRATOR_TOKEN", "t" * 16)
    with pytest.raises(SettingsError, match=r"^CALLBACK_SECRET:"):
        load_settings().require_for_serve()
    monkeypatch.setenv("CALLBACK_SECRET", "c")
    with pytest.raises(SettingsError) as info:
        load_settings().require_for_serve()
    assert str(info.value) == (
        "CALLBACK_SECRET: must be at least 16 characters (it has 1; e.g. openssl rand -hex 32)"
    )
    monkeypatch.setenv("CALLBACK_SECRET", "c" * 16)
    monkeypatch.setenv("ORCHESTRATOR_TOKEN", "t" * 15)
    with pytest.raises(SettingsError, match=r"^ORCHESTRATOR_TOKEN: must be at least 16"):
        load_settings().require_for_serve()
    monkeypatch.setenv("ORCHESTRATOR_TOKEN", "t" * 16)
    # A short webhook secret is only warned about (at start-up): it may be mid-rotation.
    settings = load_settings()
    settings.require_for_serve()
    assert settings.weak_webhook_secrets() == 1


def test_serve_refuses_a_key_that_does_not_load(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "APP_ID": "1",
        "WEBHOOK_SECRET": "s",
        "ORCHESTRATOR_TOKEN": "t" * 16,
        "CALLBACK_SECRET": "c" * 16,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PRIVATE_KEY", "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA-----")
    with pytest.raises(SettingsError, match=r"^PRIVATE_KEY: the key does not load"):
        load_settings().require_for_serve()


def test_cli_prints_one_line_not_a_traceback(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PORT": "nope", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "ghapp", "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    # One line per problem, all at once: the malformed PORT, then what serving lacks.
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("ghapp: PORT:")
    assert [line.split(":")[1].strip() for line in lines[1:]] == [
        "APP_ID",
        "PRIVATE_KEY",
        "WEBHOOK_SECRET",
        "ORCHESTRATOR_TOKEN",
        "CALLBACK_SECRET",
    ]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name", ["ORCHESTRATOR_TOKEN", "CALLBACK_SECRET"])
def test_serve_stops_on_a_short_secret_with_one_line(tmp_path: Path, name: str) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "APP_ID": "1",
        "PRIVATE_KEY": pem(),
        "WEBHOOK_SECRET": "w" * 32,
        "ORCHESTRATOR_TOKEN": "t" * 32,
        "CALLBACK_SECRET": "c" * 32,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'ghapp.db'}",
        name: "short-secret",
    }
    result = subprocess.run(
        [sys.executable, "-m", "ghapp", "serve"],
        env={**env, "PYTHONPATH": ":".join(sys.path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"ghapp: {name}: must be at least 16 characters (it has 12; e.g. openssl rand -hex 32)"
    )
