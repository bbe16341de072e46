"""What stops a command, in one line: a closed output, a server out of reach, a URL that is not
one. Each ends the command with exit status 2 and no traceback (see docs/reference/cli.md)."""

from __future__ import annotations

import contextlib
import os
import sys
from urllib.parse import urlsplit

USAGE = 2


class UsageError(Exception):
    """A command-line value that cannot be used; the message is printed as one line."""


def check_url(url: str, option: str = "--url") -> str:
    """The URL without a trailing slash, if it is http(s) with a host; else UsageError."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.hostname:
        return url.rstrip("/")
    if "://" not in url:
        hint = f": give the scheme, e.g. http://{url}" if url else ""
        raise UsageError(f"{option} {url!r} is not a URL{hint}")
    raise UsageError(f"{option} {url!r} is not an http(s) URL")


def reason(exc: BaseException) -> str:
    """Why talking to a server failed, in words, on one line (the caller names the server)."""
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is not None:
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return f"cannot resolve {exc.host}"
        if isinstance(exc, aiohttp.ClientConnectorError):
            error = exc.os_error
            text = os.strerror(error.errno) if error.errno else str(error) or "no connection"
            return text.lower()
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return "the server closed the connection without answering"
        if isinstance(exc, aiohttp.InvalidURL):
            return f"not a URL it can use: {exc.url}"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def describe(exc: BaseException) -> str:
    """`reason`, naming the host and port when the connection could not be made."""
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is not None and isinstance(exc, aiohttp.ClientConnectorError) and not (
        isinstance(exc, aiohttp.ClientConnectorDNSError)
    ):
        return f"cannot connect to {exc.host}:{exc.port}: {reason(exc)}"
    return reason(exc)


def is_network(exc: BaseException) -> bool:
    """Whether an exception is a failure to talk to a server (not a bug of ghapp's)."""
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is not None and isinstance(exc, aiohttp.ClientError):
        return True
    return isinstance(exc, TimeoutError | ConnectionError) and not isinstance(exc, BrokenPipeError)


def one_line(exc: BaseException) -> str | None:
    """What to print for an exception that ends a command without a traceback, or None."""
    if isinstance(exc, BrokenPipeError):
        quiet_stdout()
        return "the output was closed early (broken pipe)"
    if isinstance(exc, UsageError):
        return str(exc)
    if is_network(exc):
        return describe(exc)
    return None


def quiet_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered for a closed pipe goes nowhere,
    instead of failing once more when Python flushes it at exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def say(line: str) -> None:
    """Print `ghapp: line` on stderr, if stderr is still there."""
    with contextlib.suppress(OSError, ValueError):
        print(f"ghapp: {line}", file=sys.stderr, flush=True)
