"""The Simulator: GitHub's REST API, a log host and a webhook sender for one GitHub App."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ghapp.simulator.server import ApiServer, LogServer
from ghapp.simulator.simulated import SimulatedGitHub


class Simulator(SimulatedGitHub):
    """A stand-in for the part of GitHub a GitHub App talks to, on local ports."""

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0, log_port: int = 0) -> None:
        """Serve the API origin and the log origin; sets ``api_url`` and ``log_url``."""
        await self.webhooks.start()
        urls = []
        for server, wanted in ((ApiServer(self), port), (LogServer(self), log_port)):
            runner = web.AppRunner(server.app(), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, host, wanted)
            await site.start()
            self._runners.append(runner)
            bound = int(runner.addresses[0][1])
            urls.append(f"http://{host}:{bound}")
        self.api_url, self.log_url = urls
        self.world.api_url = self.api_url

    async def stop(self) -> None:
        """Stop both origins, the webhook sender and every background task."""
        self.stopping.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.webhooks.stop()
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
