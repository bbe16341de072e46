"""Failures to reach GitHub, said as sentences a person reads: what failed, and which host."""

from __future__ import annotations

import errno
from urllib.parse import urlsplit

import gidgethub


def origin_of(url: str) -> str:
    """`host:port` of a URL, as a person names a server."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = None
    return f"{parts.hostname or '?'}:{port}" if port else parts.hostname or "?"


def describe(exc: BaseException, where: str) -> str:
    """A failure to reach GitHub, as a sentence naming the host (never a Python repr)."""
    import aiohttp  # loaded by then: only a request that was made can fail

    api = f"GitHub API at {where}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if exc.os_error.errno == errno.ECONNREFUSED:
            return f"{api} refused the connection"
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return f"the GitHub API host in {where} could not be resolved"
        return f"could not connect to the {api}: {exc.strerror or 'connection failed'}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"{api} did not accept a connection in time"
    if isinstance(exc, TimeoutError):
        return f"{api} did not answer in time"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f"{api} closed the connection without answering"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"{api} cut its answer short"
    if isinstance(exc, aiohttp.ClientOSError) and exc.errno == errno.ECONNRESET:
        return f"{api} reset the connection"
    if isinstance(exc, gidgethub.HTTPException):
        status = int(exc.status_code)
        message = str(exc) or exc.status_code.phrase
        return f"{api} answered {status} ({message})"
    return f"{api} failed ({exc.__class__.__name__})"
