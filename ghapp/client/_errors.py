"""The errors the orchestrator's client raises for ghapp's error answers."""

from __future__ import annotations

from typing import Any


class GhappError(Exception):
    """An error answer of the ghapp API: HTTP status, `error` code, `message`, field `errors`."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        errors: list[dict[str, Any]] | None = None,
        deployment_id: str | None = None,
    ) -> None:
        """Keep the parts of the error body; the text is `<status> <error>: <message>`.

        `deployment_id`: for error `conflict` (concurrency reject), the unfinished one."""
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message
        self.errors = errors
        self.deployment_id = deployment_id


class StreamUnavailable(GhappError):
    """The server has no event stream (an older ghapp): poll instead."""
