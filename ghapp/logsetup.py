"""Structured logging on the stdlib: JSON or pretty lines, context binding, secret redaction.

Everything goes through the standard `logging` module, so library records (uvicorn, aiohttp,
gidgethub) get the same format, context and redaction as ghapp's own.

    configure_logging("info", "json")
    log = logging.getLogger("ghapp.webhooks")
    with bind(delivery_id=guid, repository="acme/shop"):
        log.info("workflow_run.completed handled", extra={"run_id": 123})

Redaction runs on the final text of every record (message, arguments, traceback, fields), not on
what callers promise to pass: it is the last line of defence, so it errs towards masking.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, TextIO

from ghapp.core.untrusted import clean

__all__ = [
    "REDACTED",
    "JsonFormatter",
    "PrettyFormatter",
    "bind",
    "configure_logging",
    "current_context",
    "redact",
    "redact_fields",
    "register_secret",
]

REDACTED = "[redacted]"
# Shorter registered values would mask ordinary words and numbers all over the logs.
MIN_SECRET_LENGTH = 6
_MAX_DEPTH = 6

# An immutable empty default: bind() always sets a fresh dict, never mutates the current one.
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "ghapp_log_context", default=MappingProxyType({})
)

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(
    logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None).__dict__
) | {"message", "asctime", "taskName"}
_CORE_KEYS = ("ts", "level", "logger", "msg")

# Applied in order after the registered secrets; each keeps a harmless prefix for readability.
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # A PEM private key, or the start of one cut off mid-way (a partial key is still secret).
    (
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"
            r"(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY-----|.*)",
            re.DOTALL,
        ),
        REDACTED,
    ),
    # Authorization headers in any rendering: `Authorization: Bearer x`, `'Authorization': 'x'`.
    (
        re.compile(
            r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)((?:bearer|token|basic)\s+)?"
            r"(?!\[redacted\])[^\s\"',;}\]]+"
        ),
        r"\1\2" + REDACTED,
    ),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]+=*"), r"\1" + REDACTED),
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9_]{6,}|github_pat_[A-Za-z0-9_]{6,})"), REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    (re.compile(r"(?i)\b(sha256=)[0-9a-f]{64}\b"), r"\1" + REDACTED),
    (re.compile(r"(?i)\b(sha1=)[0-9a-f]{40}\b"), r"\1" + REDACTED),
    # key=value (query strings, repr of settings) and quoted 'key': 'value' (dict repr, JSON);
    # `sig` is the signature of the short-lived signed URLs that job logs redirect to.
    (
        re.compile(
            r"(?i)\b([\w.-]*(?:token|secret|password|passwd|signature|sig|private_key|api_key)"
            r"(?:=|[\"']\s*:\s*[\"']?))(?!\[redacted\])[^\s\"'&,;}\]]+"
        ),
        r"\1" + REDACTED,
    ),
]
# One cheap search that every pattern above needs to succeed: most log text has none of these,
# and skipping the substitutions for it keeps formatting fast.
_MAYBE_SECRET = re.compile(
    r"-----BEGIN|\bgh[pousr]_|github_pat_|eyJ"
    r"|(?i:authorization|bearer|sha256=|sha1=|token|secret|passw|sig|private_key|api_key)"
)
_SECRET_KEY = re.compile(
    r"(?i)(token|secret|passw|private_?key|authorization|signature|api_?key|cookie|credential)"
)
# Keys that merely talk about a secret (its name, when it expires) and are useful to see.
_HARMLESS_KEY = re.compile(r"(?i)(_name|_names|_at|_count|_ttl|_expires|_expires_in)$")

_secrets_lock = threading.Lock()
_secrets: set[str] = set()
_secrets_re: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Mask `value` (and each long line of a multi-line value) wherever it appears in logs."""
    global _secrets_re
    if not value:
        return
    candidates = {value, value.strip()}
    # Keys arrive both with real newlines and with literal `\n` (PRIVATE_KEY accepts either).
    candidates |= {value.replace("\\n", "\n"), value.replace("\n", "\\n")}
    for line in value.replace("\\n", "\n").splitlines():
        line = line.strip()
        if len(line) >= 16 and not line.startswith("-----"):
            candidates.add(line)
    with _secrets_lock:
        _secrets.update(c for c in candidates if len(c) >= MIN_SECRET_LENGTH)
        # Longest first so a secret containing another is masked whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _secrets_re = re.compile("|".join(map(re.escape, ordered))) if ordered else None


def redact(text: str) -> str:
    """Mask registered secrets, tokens, JWTs, PEM keys, signatures and auth headers in `text`."""
    # Registered values first: a pattern replacing part of one would leave the rest behind.
    secrets_re = _secrets_re
    if secrets_re is not None:
        text = secrets_re.sub(REDACTED, text)
    if _MAYBE_SECRET.search(text) is None:
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key)) and not _HARMLESS_KEY.search(key)


def _clean(key: str, value: Any, depth: int = 0) -> Any:
    """A JSON-ready copy of `value` with secrets masked, by key name and by content."""
    if value is None or isinstance(value, bool | int | float):
        # Numbers are never credentials here, and `token_expires_in=3600` is worth seeing.
        return value
    if depth >= _MAX_DEPTH:
        return REDACTED if _is_secret_key(key) else redact(repr(value))
    if _is_secret_key(key) and not isinstance(value, Mapping | list | tuple | set | frozenset):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes | bytearray):
        return redact(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        if _is_secret_key(key):
            return REDACTED
        return {str(k): _clean(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(key, v, depth + 1) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    dump = getattr(value, "model_dump", None)  # pydantic models, without importing pydantic
    if callable(dump):
        try:
            return _clean(key, dump(mode="json"), depth + 1)
        except Exception:  # a broken model must not break logging
            pass
    return redact(str(value))


def redact_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `fields` with secret-looking keys masked and secrets in values redacted."""
    return {str(k): _clean(str(k), v) for k, v in fields.items()}


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add `fields` to every record logged inside the block (this task/thread only); None skips."""
    current = _context.get()
    merged = {**current, **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, Any]:
    """The fields bound by the enclosing `bind` blocks."""
    return dict(_context.get())


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """Bound context, then the record's `extra=` fields (the more specific wins)."""
    fields: dict[str, Any] = dict(_context.get())
    for key, value in record.__dict__.items():
        if key not in _RECORD_ATTRS and not key.startswith("_"):
            fields[key] = value
    for key in _CORE_KEYS:
        # A field named like a core key must not overwrite it; keep it under another name.
        if key in fields:
            fields[f"{key}_"] = fields.pop(key)
    return redact_fields(fields)


def _message(record: logging.LogRecord) -> str:
    try:
        message = record.getMessage()
    except Exception:  # bad %-args: log what we have instead of raising inside logging
        message = f"{record.msg!r} {record.args!r}"
    return redact(message)


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    parts = []
    if record.exc_info and record.exc_info[0] is not None:
        parts.append(formatter.formatException(record.exc_info))
    elif record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    return redact("\n".join(parts)) if parts else None


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts (ISO UTC), level, logger, msg, context and extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as a single JSON line, secrets masked."""
        ts = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
        out: dict[str, Any] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _message(record),
        }
        out.update(_record_fields(record))
        exc = _exception_text(self, record)
        if exc:
            out["exc"] = exc
        # default=str: a field json cannot encode is still logged rather than lost.
        # ensure_ascii: U+2028 and friends are escaped too, so no reader sees two lines.
        return json.dumps(out, ensure_ascii=True, default=str, separators=(",", ":"))


_PRETTY_LEVELS = {"WARNING": "WARN", "CRITICAL": "CRIT"}
# Every character str.splitlines() breaks on, escaped so one record stays one line.
_LINE_BREAKS = str.maketrans(
    {c: c.encode("unicode_escape").decode() for c in "\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029"}
)


_NEEDS_QUOTES = re.compile(r'[\s"=]')


def _pretty_value(value: Any) -> str:
    if isinstance(value, str):
        text = clean(value)
        if text and _NEEDS_QUOTES.search(text) is None:
            return text
        return json.dumps(text, ensure_ascii=False).translate(_LINE_BREAKS)
    text = json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
    return text.translate(_LINE_BREAKS)


class PrettyFormatter(logging.Formatter):
    """Readable one-line text for a terminal: `22:14:03 INFO  webhooks  msg  key=value ...`."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` on one line (a traceback, if any, follows indented), secrets masked."""
        clock = dt.datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        level = _PRETTY_LEVELS.get(record.levelname, record.levelname)
        name = record.name.removeprefix("ghapp.")
        message = _message(record).translate(_LINE_BREAKS)
        line = f"{clock} {level:<5} {name:<9} {message}"
        fields = _record_fields(record)
        if fields:
            line += "  " + " ".join(f"{k}={_pretty_value(v)}" for k, v in fields.items())
        exc = _exception_text(self, record)
        if exc:
            line += "\n" + "\n".join("    " + part for part in exc.splitlines())
        # For a terminal: fields and errors may quote GitHub or a job (see docs/untrusted-text.md).
        return clean(line)


class _StreamHandler(logging.Handler):
    """Writes to the given stream, or to whatever `sys.stderr` is at the time of each record."""

    # Resolving stderr late keeps working when it is swapped (pytest capture, daemonising).

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__()
        self._stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        """Write one formatted record and flush."""
        try:
            stream = self._stream if self._stream is not None else sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
# Libraries that flood the logs at their default levels; alembic's plugin and context lines at
# every migration are noise to an operator (ghapp says in one line what a migration did).
_ALWAYS_QUIET = ("aiosqlite", "watchfiles", "hpack", "multipart", "alembic")


def configure_logging(level: str = "info", fmt: str = "json", stream: TextIO | None = None) -> None:
    """Send every record to one handler (`json` or `pretty`) on `stream` (default stderr)."""
    try:
        numeric = _LEVELS[level.strip().lower()]
    except KeyError:
        raise ValueError(
            f"LOG_LEVEL: unknown level {level!r} (debug, info, warning, error, critical)"
        ) from None
    formatters: dict[str, type[logging.Formatter]] = {
        "json": JsonFormatter,
        "pretty": PrettyFormatter,
    }
    try:
        formatter = formatters[fmt.strip().lower()]()
    except KeyError:
        raise ValueError(f"LOG_FORMAT: unknown format {fmt!r} (json, pretty)") from None

    root = logging.getLogger()
    # Idempotent: replace the handler a previous call installed, keep anyone else's.
    for handler in list(root.handlers):
        if isinstance(handler, _StreamHandler):
            root.removeHandler(handler)
            handler.close()
    handler = _StreamHandler(stream)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(numeric)

    # uvicorn installs its own handlers; route its records through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True
        lib.setLevel(logging.NOTSET)
    # One line per HTTP request is noise beside ghapp's own request logs, except when debugging.
    quiet_access = logging.NOTSET if numeric <= logging.DEBUG else logging.WARNING
    logging.getLogger("uvicorn.access").setLevel(quiet_access)
    logging.getLogger("aiohttp.access").setLevel(quiet_access)
    for name in _ALWAYS_QUIET:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
