"""An HTTP session opened at first use: an idle server never loads aiohttp (~8 MiB)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiohttp


class LazySession:
    """Holds the process's aiohttp ClientSession, made when first asked for."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        """The session (opened now on the first call; needs a running event loop)."""
        if self._session is None:
            import aiohttp

            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
        return self._session

    async def close(self) -> None:
        """Close the session if it was ever opened."""
        if self._session is not None:
            await self._session.close()
            self._session = None
