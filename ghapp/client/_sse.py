"""Reading Server-Sent Events (the `text/event-stream` format), incrementally, from bytes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerEvent:
    """One dispatched event: its `id` (the last one seen), `event` name and `data`."""

    id: str | None
    event: str
    data: str


class EventParser:
    """Feed chunks as they arrive; complete events come out (comments and retries are skipped).

    Lines may be any length (a Deployment with log excerpts is one long `data` line)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event = ""
        self.last_id: str | None = None

    def feed(self, chunk: bytes) -> Iterator[ServerEvent]:
        """The events completed by this chunk."""
        self._buffer += chunk
        while True:
            cut = self._buffer.find(b"\n")
            if cut < 0:
                return
            line = self._buffer[:cut].rstrip(b"\r").decode("utf-8", "replace")
            self._buffer = self._buffer[cut + 1 :]
            event = self._line(line)
            if event is not None:
                yield event

    def _line(self, line: str) -> ServerEvent | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = ServerEvent(self.last_id, self._event or "message", "\n".join(self._data))
            self._data, self._event = [], ""
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\x00" not in value:
            self.last_id = value
        return None
