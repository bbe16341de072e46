"""What a request may cost before it is trusted: body caps, a body deadline, a bounded head.

Bodies are read as a stream (`read_body`) and refused past their cap (`413`). The bounds on
the request itself live in front of uvicorn's protocol (`ghapp.web.protocol`, options from
`ghapp.runner.uvicorn_limits`): a head over MAX_HEAD gets `431`, a head not complete
HEAD_TIMEOUT seconds after its first byte closes the connection, a body not complete
BODY_TIMEOUT seconds after its headers gets `408` and the connection closed. docs/limits.md
lists them for users.
"""

from __future__ import annotations

import os

from starlette.requests import ClientDisconnect, Request

# Operator page forms (and the sign-in form, read before it is checked), and API bodies.
FORM_CAP = 16 * 1024
API_CAP = 1024 * 1024
# Request line plus headers: GitHub's webhook headers are about 1 KiB, a browser's under 8 KiB.
MAX_HEAD = 64 * 1024
# Seconds from a request's headers to the end of its body; GHAPP_BODY_TIMEOUT (hidden, for
# tests) shortens it.
BODY_TIMEOUT = float(os.environ.get("GHAPP_BODY_TIMEOUT") or 30.0)
# Seconds from a connection's opening, or from the first byte of a later request, to the end of
# its head.
HEAD_TIMEOUT = 10.0


class BodyRefused(Exception):
    """The body was not taken: `status` and `code` say why."""

    status = 400
    code = "bad_body"


class TooLarge(BodyRefused):
    """The body is over its cap."""

    status = 413
    code = "too_large"

    def __init__(self, cap: int) -> None:
        super().__init__(f"the body is over {cap} bytes")
        self.cap = cap


class Late(BodyRefused):
    """The body did not arrive in time (the server answered 408 and closed the connection)."""

    status = 408
    code = "timeout"

    def __init__(self) -> None:
        super().__init__(f"the body did not arrive within {BODY_TIMEOUT:g} s of the headers")


async def read_body(request: Request, cap: int) -> bytes:
    """The body, read as a stream; TooLarge past `cap` (at once when Content-Length says so)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > cap:
        raise TooLarge(cap)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > cap:
                raise TooLarge(cap)
            chunks.append(chunk)
    except ClientDisconnect:
        # Gone, or cut by the body deadline: nobody is left to read an answer.
        raise Late() from None
    # A body usually comes in one piece: no copy then.
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
