"""uvicorn for ghapp: the options that bound a request (for `ghapp serve` too), and a server
run inside the current event loop (demo and tests)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import uvicorn

from ghapp.web.limits import MAX_HEAD


def uvicorn_limits() -> dict[str, Any]:
    """uvicorn options that bound a request's head (size and time) and its body's time."""
    options: dict[str, Any] = {"h11_max_incomplete_event_size": MAX_HEAD}
    try:
        from ghapp.web.protocol import BoundedHttp
    except ImportError:  # httptools absent: h11 bounds the head's size (no deadlines then)
        options["http"] = "h11"
    else:
        options["http"] = BoundedHttp
    return options


class Server(uvicorn.Server):
    """uvicorn's server; when it shuts down, the app's event streams end first.

    uvicorn waits for open responses to finish before it tells the app to shut down, and an
    event stream would not finish by itself: its clients reconnect (to another replica)."""

    async def shutdown(self, sockets: Any = None) -> None:
        """End the event streams, then shut down as uvicorn does."""
        app: Any = getattr(self.config, "loaded_app", None)
        while app is not None:
            services = getattr(getattr(app, "state", None), "services", None)
            hub = getattr(services, "hub", None)
            if hub is not None:
                hub.end_streams()
                break
            app = getattr(app, "app", None)
        await super().shutdown(sockets)


class BackgroundServer:
    """A uvicorn server on a loopback port, started and stopped from async code."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="on",
            log_level="warning",
            access_log=False,
            **uvicorn_limits(),
        )
        self.server = Server(config)
        # Signals belong to whoever owns the process (pytest, the demo), not to this server.
        self.server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign, assignment]
        self.host = host
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> str:
        """Start serving; returns the base URL."""
        self._task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://{self.host}:{port}"

    async def stop(self) -> None:
        """Shut down gracefully (the app's lifespan runs its clean-up)."""
        if self._task is None:
            return
        self.server.should_exit = True
        await self._task
        self._task = None
