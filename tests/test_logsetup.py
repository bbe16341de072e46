"""Structured logs: one JSON object (or one pretty line) a record, context fields, no secrets."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import logging
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ghapp.logsetup import (
    REDACTED,
    bind,
    configure_logging,
    current_context,
    redact,
    register_secret,
)

LEVELS = ["debug", "info", "warning", "error", "critical"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# Realistic secrets: what the app actually holds and might leak by accident.
GHS_TOKEN = "ghs_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
GHP_TOKEN = "github_pat_11ABCDEFG0abcdefghijkl_" + "x" * 30
JWT = ".".join(
    [
        _b64url(b'{"alg":"RS256","typ":"JWT"}'),
        _b64url(b'{"iat":1700000000,"exp":1700000600,"iss":"12345"}'),
        _b64url(b"\x01\x02signature-bytes" * 8),
    ]
)
PEM = (
    ec.generate_private_key(ec.SECP256R1())
    .private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    .decode()
)
OPENSSH = (
    ed25519.Ed25519PrivateKey.generate()
    .private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    .decode()
)
REGISTERED = "orchestrator-token-5f1c9e2ab77d"
SIGNATURE = "sha256=" + hmac.new(b"k", b"body", hashlib.sha256).hexdigest()
BEARER_VALUE = "opaque.Bearer-Value_42"

# Pieces of each secret that must never appear; a PEM's body lines are checked one by one.
FORBIDDEN = [
    GHS_TOKEN,
    GHS_TOKEN[4:],
    GHP_TOKEN,
    JWT,
    JWT.split(".")[2],
    REGISTERED,
    SIGNATURE.removeprefix("sha256="),
    BEARER_VALUE,
    *[line for line in PEM.splitlines() if not line.startswith("-----")],
    *[line for line in OPENSSH.splitlines() if not line.startswith("-----")],
]


def _assert_clean(output: str) -> None:
    for secret in FORBIDDEN:
        assert secret not in output, f"secret leaked: {secret[:12]}..."
        # JSON escapes newlines, so check the escaped form of multi-line secrets too.
        assert json.dumps(secret)[1:-1] not in output


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Give each test its own root configuration and put the original back afterwards."""
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access", "aiohttp.access", "aiosqlite"]
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if handler not in handlers:
                logger.removeHandler(handler)
        for handler in handlers:
            if handler not in logger.handlers:
                logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture(autouse=True, scope="module")
def _registered() -> None:
    register_secret(REGISTERED)


def _configure(fmt: str, level: str = "debug") -> io.StringIO:
    stream = io.StringIO()
    configure_logging(level, fmt, stream=stream)
    return stream


def _json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    lines = stream.getvalue().splitlines()
    assert lines
    return [json.loads(line) for line in lines]


def test_json_one_object_a_line_with_bound_context() -> None:
    """Every record is one JSON object with ts, level, logger, msg and the bound fields."""
    stream = _configure("json")
    log = logging.getLogger("ghapp.webhooks")
    with bind(delivery_id="d-1", repository="acme/shop"):
        log.info("workflow_run.completed handled", extra={"run_id": 123})
        log.warning("multi\nline\nmessage")
    (first, second) = _json_lines(stream)
    assert first["level"] == "info"
    assert first["logger"] == "ghapp.webhooks"
    assert first["msg"] == "workflow_run.completed handled"
    assert first["delivery_id"] == "d-1"
    assert first["repository"] == "acme/shop"
    assert first["run_id"] == 123
    assert isinstance(first["ts"], str)
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    assert second["msg"] == "multi\nline\nmessage"
    assert second["level"] == "warning"


def test_json_fields_do_not_overwrite_core_keys() -> None:
    """A context field named like a core key is kept aside, not lost and not clobbering."""
    stream = _configure("json")
    with bind(level="sneaky", msg="x"):
        logging.getLogger("ghapp").info("real message")
    (line,) = _json_lines(stream)
    assert line["level"] == "info"
    assert line["msg"] == "real message"
    assert line["level_"] == "sneaky"


def test_json_unusual_values_are_serialised() -> None:
    """Values json cannot encode natively are still logged (as text)."""
    stream = _configure("json")
    logging.getLogger("ghapp").info("odd", extra={"obj": object(), "items": (1, "a"), "b": b"xy"})
    (line,) = _json_lines(stream)
    assert str(line["obj"]).startswith("<object object")
    assert line["items"] == [1, "a"]
    assert line["b"] == "xy"


def test_pretty_is_one_line() -> None:
    """Pretty mode: time, level, short logger, message, then key=value fields, on one line."""
    stream = _configure("pretty")
    with bind(deployment_id="dep_x", run_id=123):
        logging.getLogger("ghapp.webhooks").info(
            "workflow_run.completed handled\nwith a break", extra={"note": "two words"}
        )
    output = stream.getvalue()
    assert output.count("\n") == 1 and output.endswith("\n")
    (line,) = output.splitlines()
    assert " INFO  webhooks " in line
    assert "workflow_run.completed handled\\nwith a break" in line
    assert "deployment_id=dep_x" in line
    assert "run_id=123" in line
    assert 'note="two words"' in line


def test_nested_bind_merges_and_restores() -> None:
    """Inner binds add and override; leaving a block brings the outer fields back."""
    stream = _configure("json")
    log = logging.getLogger("ghapp.deploys")
    with bind(deployment_id="dep_1", repository="acme/shop"):
        with bind(run_id=7, repository="acme/other"):
            assert current_context() == {
                "deployment_id": "dep_1",
                "repository": "acme/other",
                "run_id": 7,
            }
            log.info("inner")
        log.info("outer")
    log.info("outside")
    inner, outer, outside = _json_lines(stream)
    assert (inner["repository"], inner["run_id"]) == ("acme/other", 7)
    assert outer["repository"] == "acme/shop" and "run_id" not in outer
    assert outer["deployment_id"] == "dep_1"
    assert "deployment_id" not in outside and "repository" not in outside
    assert current_context() == {}


def test_bind_skips_none() -> None:
    """Fields not known yet (None) are simply absent."""
    with bind(run_id=None, deployment_id="dep_2"):
        assert current_context() == {"deployment_id": "dep_2"}


async def test_bind_is_per_task() -> None:
    """Concurrent tasks do not see each other's context."""
    seen: dict[str, dict[str, object]] = {}

    async def work(name: str) -> None:
        with bind(deployment_id=name):
            await asyncio.sleep(0.01)
            seen[name] = current_context()

    await asyncio.gather(work("dep_a"), work("dep_b"))
    assert seen == {"dep_a": {"deployment_id": "dep_a"}, "dep_b": {"deployment_id": "dep_b"}}


def test_configure_is_idempotent() -> None:
    """Configuring twice leaves one handler: each record is written once."""
    _configure("json")
    stream = _configure("json")
    logging.getLogger("ghapp").info("once")
    assert len(stream.getvalue().splitlines()) == 1


def test_levels_and_noisy_libraries() -> None:
    """The level applies; uvicorn.access is quiet unless debugging."""
    stream = _configure("json", level="warning")
    logging.getLogger("ghapp").info("hidden")
    logging.getLogger("ghapp").warning("shown")
    assert [line["msg"] for line in _json_lines(stream)] == ["shown"]
    assert logging.getLogger("uvicorn.access").getEffectiveLevel() == logging.WARNING
    _configure("json", level="info")
    assert not logging.getLogger("uvicorn.access").isEnabledFor(logging.INFO)
    _configure("json", level="debug")
    assert logging.getLogger("uvicorn.access").isEnabledFor(logging.INFO)


def test_bad_settings_are_refused() -> None:
    """Unknown levels and formats are errors that name the setting."""
    with pytest.raises(ValueError, match="LOG_LEVEL"):
        configure_logging("loud", "json")
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        configure_logging("info", "xml")


def _leaky_message() -> str:
    return (
        f"token {GHS_TOKEN} pat {GHP_TOKEN} jwt {JWT} key {PEM} ssh {OPENSSH} "
        f"registered {REGISTERED} sig X-Hub-Signature-256: {SIGNATURE} "
        f"header Authorization: Bearer {BEARER_VALUE} "
        f"repr {{'Authorization': 'token {GHS_TOKEN}'}}"
    )


@pytest.mark.parametrize("fmt", ["json", "pretty"])
@pytest.mark.parametrize("level", LEVELS)
def test_no_secret_at_any_level(fmt: str, level: str) -> None:
    """Secrets in the message, its %-args, extra fields and bound context are all masked."""
    stream = _configure(fmt)
    log = logging.getLogger("ghapp.github")
    emit = getattr(log, level)
    with bind(token=GHS_TOKEN, repository="acme/shop", note=f"jwt={JWT}"):
        emit(_leaky_message())
        emit("args: %s %r", _leaky_message(), {"authorization": f"Bearer {BEARER_VALUE}"})
        emit(
            "fields",
            extra={
                "headers": {"Authorization": f"Bearer {BEARER_VALUE}", "X-Sig": SIGNATURE},
                "private_key": PEM,
                "secret": REGISTERED,
                "body": _leaky_message(),
                "items": [GHS_TOKEN, JWT],
            },
        )
    output = stream.getvalue()
    _assert_clean(output)
    assert REDACTED in output
    assert "acme/shop" in output  # masking is targeted, not everything
    if fmt == "json":
        lines = _json_lines(stream)
        assert len(lines) == 3
        assert lines[2]["private_key"] == REDACTED
        assert lines[2]["secret"] == REDACTED
        assert lines[2]["headers"] == {"Authorization": REDACTED, "X-Sig": "sha256=" + REDACTED}


@pytest.mark.parametrize("fmt", ["json", "pretty"])
def test_no_secret_in_tracebacks(fmt: str) -> None:
    """logger.exception: the exception message, its cause and the traceback are masked."""
    stream = _configure(fmt)
    log = logging.getLogger("ghapp.callbacks")
    for level in LEVELS:
        try:
            try:
                raise KeyError(f"inner {PEM}")
            except KeyError as inner:
                raise RuntimeError(_leaky_message()) from inner
        except RuntimeError:
            log.exception("callback failed at %s", level)
            getattr(log, level)("with exc_info", exc_info=True)
            log.log(logging.getLevelName(level.upper()), "stack", stack_info=True)
    output = stream.getvalue()
    _assert_clean(output)
    assert "RuntimeError" in output and "Traceback" in output
    if fmt == "json":
        lines = _json_lines(stream)
        assert len(lines) == 3 * len(LEVELS)
        assert "RuntimeError" in str(lines[0]["exc"])


def test_redact_patterns() -> None:
    """Each kind of secret is masked and the text around it kept."""
    assert redact(f"using {GHS_TOKEN} now") == f"using {REDACTED} now"
    assert redact("ghp_abcdefghij1234567890") == REDACTED
    assert redact("gho_abcdefgh ghu_abcdefgh ghr_abcdefgh") == " ".join([REDACTED] * 3)
    assert redact(f"jwt {JWT}.") == f"jwt {REDACTED}."
    assert redact(f"a {SIGNATURE} b") == f"a sha256={REDACTED} b"
    assert redact(f"Authorization: Bearer {BEARER_VALUE}") == f"Authorization: Bearer {REDACTED}"
    assert redact("authorization: token abcdef") == f"authorization: token {REDACTED}"
    assert redact('{"Authorization": "Bearer x"}') == '{"Authorization": "Bearer ' + REDACTED + '"}'
    assert redact(f"before\n{PEM}after") == f"before\n{REDACTED}\nafter"
    cut = PEM[: len(PEM) // 2]  # a key cut off mid-way is still a key
    assert redact(f"x {cut}") == f"x {REDACTED}"
    assert redact("https://logs.example/x?se=2030&sig=Zm9v%2B&token=abc123") == (
        f"https://logs.example/x?se=2030&sig={REDACTED}&token={REDACTED}"
    )
    assert redact("nothing secret: workflow_run completed run_id=5") == (
        "nothing secret: workflow_run completed run_id=5"
    )


def test_register_secret() -> None:
    """Registered values are masked, also with escaped newlines; short values are ignored."""
    register_secret("abc")  # too short: would mask ordinary words
    register_secret("")
    register_secret(None)
    assert redact("abc abcdef") == "abc abcdef"
    multi = "first-line-of-secret-material\nsecond-line-of-secret-material"
    register_secret(multi)
    assert redact(f"x {multi} y") == f"x {REDACTED} y"
    assert redact("x " + multi.replace("\n", "\\n") + " y") == f"x {REDACTED} y"
    assert redact("only second-line-of-secret-material here") == f"only {REDACTED} here"
