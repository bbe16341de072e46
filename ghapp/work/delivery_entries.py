"""One delivery as the local delivery log holds it: buffered (raw, clipped), chosen for a
batch, written as a row (headers redacted), and read back."""

from __future__ import annotations

import base64
import marshal
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from typing import Any, NamedTuple

from pydantic_core import to_json

# Headers kept of one delivery (GitHub's are about 1 KiB); more is cut and marked.
MAX_HEADERS = 8 * 1024
HEADERS_CUT = "x-ghapp-headers-truncated"
REDACTED_HEADERS = frozenset(
    {"x-hub-signature", "x-hub-signature-256", "authorization", "cookie", "proxy-authorization"}
)


@dataclass(frozen=True)
class LoggedDelivery:
    """One received delivery as the log keeps it."""

    id: str
    delivery_id: str | None
    received_at: float
    event: str | None
    action: str | None
    signature: str
    outcome: str
    status: int
    duration_ms: float
    body_size: int
    truncated: bool
    headers: Mapping[str, str] | None = None
    body: bytes | None = None

    def summary(self) -> dict[str, Any]:
        """The JSON of a list item (no headers, no body)."""
        stamp = datetime.fromtimestamp(self.received_at, UTC).isoformat(timespec="milliseconds")
        return {
            "id": self.id,
            "delivery_id": self.delivery_id,
            "received_at": stamp.replace("+00:00", "Z"),
            "event": self.event,
            "action": self.action,
            "signature": self.signature,
            "outcome": self.outcome,
            "status": self.status,
            "duration_ms": self.duration_ms,
            "body_size": self.body_size,
            "truncated": self.truncated,
        }

    def detail(self) -> dict[str, Any]:
        """The JSON of one delivery: the summary, headers, and the body (text or base64)."""
        data = self.summary()
        data["headers"] = dict(self.headers or {})
        raw = self.body or b""
        try:
            data["body"], data["body_base64"] = raw.decode("utf-8"), None
        except UnicodeDecodeError:
            data["body"], data["body_base64"] = None, base64.b64encode(raw).decode("ascii")
        return data


def clip(value: str | None, size: int) -> str | None:
    """A text column's value: NUL removed, at most `size` characters, None when empty."""
    # PostgreSQL text cannot hold NUL; a JSON payload's `action` could carry one.
    return value.replace("\x00", "")[:size] if value else None


def redact_headers(headers: Mapping[str, str] | bytes) -> dict[str, str]:
    """The headers (or headers packed by `pack_headers`) with signatures and credentials
    replaced by `<redacted>`."""
    pairs = unpack_headers(headers) if isinstance(headers, bytes) else headers.items()
    return {
        key: "<redacted>" if key.lower() in REDACTED_HEADERS else value for key, value in pairs
    }


def pack_headers(headers: Mapping[str, str]) -> bytes:
    """The headers as one bytes object, to be kept in the buffer until written (or dropped).

    Why not keep the request's own Headers: thousands of them waiting a moment for the writer
    (each a list of tuples) are objects the garbage collector tracks; retained, they made it
    collect every few dozen deliveries. One bytes object is not tracked. marshal is used only
    in memory, on pairs of bytes: Starlette's raw (ASGI) headers as received, no decoding."""
    raw = getattr(headers, "raw", None)
    if raw is None:
        raw = [(k.encode("latin-1", "replace"), v.encode("latin-1", "replace"))
               for k, v in headers.items()]
    # Version 2: no back-references, so the packed size is never below the size received.
    return marshal.dumps(raw, 2)


def unpack_headers(packed: bytes) -> list[tuple[str, str]]:
    """The (name, value) pairs of `pack_headers`, decoded as Starlette decodes them."""
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in marshal.loads(packed)]


class Pending(NamedTuple):
    """A delivery as buffered: raw values, turned into a row only if it is written."""

    received_at: float
    delivery_id: str | None
    event: str | None
    action: str | None
    signature: str
    outcome: str
    status: int
    duration_ms: float
    # Packed by `pack_headers` (clipped first when over MAX_HEADERS).
    headers: bytes
    body: bytes
    body_size: int
    # Bytes of headers kept (packed), and whether some were cut.
    header_size: int = 0
    headers_cut: bool = False

    @property
    def size(self) -> int:
        """What this entry counts in the byte budgets."""
        return len(self.body) + self.header_size

    @property
    def signed(self) -> bool:
        """Whether GitHub's signature was good (others came from anyone)."""
        return self.signature == "ok"


def headers_size(headers: Mapping[str, str]) -> int:
    """The bytes the headers count in the budgets, as received."""
    # ": " and CRLF: four bytes a header. Starlette's Headers: the bytes as received, no decoding.
    raw = getattr(headers, "raw", None)
    pairs = raw if raw is not None else [(k.encode(), v.encode()) for k, v in headers.items()]
    return len(b"".join(chain.from_iterable(pairs))) + 4 * len(pairs)


def clip_headers(headers: Mapping[str, str], budget: int = MAX_HEADERS) -> dict[str, str]:
    """The headers that fit in `budget` bytes (in order), plus a marker saying what was cut."""
    kept: dict[str, str] = {}
    used = 0
    total = 0
    for name, value in headers.items():
        size = len(name) + len(value) + 4
        total += size
        if used + size <= budget:
            kept[name] = value
            used += size
    kept[HEADERS_CUT] = f"{total} bytes of headers received, {used} kept"
    return kept


def sample(pending: list[Pending], rows: int, size: int) -> list[Pending]:
    """What fits in `rows` rows and `size` bytes: signed ones answered with an error first,
    then the newest signed ones, then the newest of the others."""
    if len(pending) <= rows and sum(p.size for p in pending) <= size:
        return pending
    order = sorted(
        range(len(pending)),
        key=lambda i: (pending[i].signed, pending[i].status >= 400, i),
        reverse=True,
    )
    chosen: list[int] = []
    used = 0
    for i in order:
        if len(chosen) >= rows:
            break
        if chosen and used + pending[i].size > size:
            continue
        chosen.append(i)
        used += pending[i].size
    return [pending[i] for i in sorted(chosen)]


def _header(headers: dict[str, str], name: str) -> str | None:
    """A header by its lower-case name (ASGI's), or in any case (headers given as a dict)."""
    found = headers.get(name)
    if found is None:
        found = next((v for k, v in headers.items() if k.lower() == name), None)
    return found


def row_of(p: Pending) -> dict[str, Any]:
    """The `delivery_log` row of a buffered delivery, with a new log id."""
    headers = redact_headers(p.headers)
    return {
        "id": "dl_" + secrets.token_hex(8),
        "delivery_id": clip(p.delivery_id or _header(headers, "x-github-delivery"), 100),
        "received_at": p.received_at,
        "event": clip(p.event or _header(headers, "x-github-event"), 100),
        "action": clip(p.action, 100),
        "signature": p.signature,
        "outcome": clip(p.outcome, 64) or "",
        "status": p.status,
        "duration_ms": round(p.duration_ms, 3),
        "body_size": p.body_size,
        "truncated": len(p.body) < p.body_size or p.headers_cut,
        "headers": to_json(headers).decode(),
        "body": p.body,
    }
