"""Fallback load generator (aiohttp) for machines without wrk: same requests, not comparable.

    python -m benchmarks._loadgen URL DATA --connections 32 --duration 10 --prefix P

Reads the request file `benchmarks.ingest` writes for wrk, keeps `--connections` requests in
flight for `--duration` seconds with a unique X-GitHub-Delivery each, and prints one line
`WRKJSON {...}` with the fields wrk's Lua `done` prints. Python spends far more CPU per request
than wrk, so on one core it saturates before the server does: its numbers are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass

import aiohttp


@dataclass(frozen=True)
class Entry:
    """One pre-signed request: event, signatures and body."""

    event: str
    sig256: str
    sig1: str
    body: bytes


def read_entries(path: str) -> list[Entry]:
    """Parse the request file: `event sig256 sig1 length` lines, each followed by its body."""
    entries = []
    with open(path, "rb") as data:
        while line := data.readline():
            event, sig256, sig1, length = line.decode().split()
            body = data.read(int(length))
            data.read(1)
            entries.append(Entry(event, sig256, sig1, body))
    return entries


async def run(url: str, entries: list[Entry], connections: int, duration: float,
              prefix: str) -> dict[str, float | int]:
    """Drive the server; counts, errors and latency percentiles in microseconds."""
    latencies: list[float] = []
    errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    counter = 0
    deadline = time.monotonic() + duration
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal counter
            while time.monotonic() < deadline:
                counter += 1
                entry = entries[(counter - 1) % len(entries)]
                headers = {
                    "User-Agent": "GitHub-Hookshot/5e1d8b3",
                    "Content-Type": "application/json",
                    "X-GitHub-Event": entry.event,
                    "X-GitHub-Delivery": f"{prefix}{counter:012x}",
                    "X-GitHub-Hook-ID": "480000001",
                    "X-GitHub-Hook-Installation-Target-ID": "424242",
                    "X-GitHub-Hook-Installation-Target-Type": "integration",
                    "X-Hub-Signature": entry.sig1,
                    "X-Hub-Signature-256": entry.sig256,
                }
                started = time.perf_counter()
                try:
                    async with session.post(url, data=entry.body, headers=headers) as response:
                        await response.read()
                        if response.status >= 400:
                            errors["status"] += 1
                except TimeoutError:
                    errors["timeout"] += 1
                    continue
                except aiohttp.ClientError:
                    errors["read"] += 1
                    continue
                latencies.append(time.perf_counter() - started)

        began = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.monotonic() - began
    latencies.sort()

    def pct(q: float) -> int:
        if not latencies:
            return 0
        return int(latencies[min(int(len(latencies) * q / 100), len(latencies) - 1)] * 1e6)

    return {
        "requests": len(latencies) + errors["status"],
        "duration_us": int(elapsed * 1e6),
        **errors,
        "p50_us": pct(50),
        "p90_us": pct(90),
        "p99_us": pct(99),
        "mean_us": round(sum(latencies) / max(len(latencies), 1) * 1e6, 1),
        "max_us": int(latencies[-1] * 1e6) if latencies else 0,
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: print the WRKJSON line."""
    parser = argparse.ArgumentParser(description="fallback webhook load generator")
    parser.add_argument("url")
    parser.add_argument("data")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--prefix", default="00000000-0000-4000-8000-")
    args = parser.parse_args(argv)
    result = asyncio.run(
        run(args.url, read_entries(args.data), args.connections, args.duration, args.prefix)
    )
    print("WRKJSON " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
