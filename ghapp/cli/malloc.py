"""The C allocator of a `ghapp serve` process: one malloc arena for all of its threads.

glibc gives each thread that allocates an arena of its own (up to 8 per core), so that threads
rarely wait for each other's malloc lock. A `ghapp serve` process has one busy thread, the
event loop; the others (aiosqlite's connection threads, libuv's resolver threads) allocate a
little and then sit idle, each keeping its arena's pages: measured, about 0.8 MiB of the idle
RSS (benchmarks/README.md, issue 17). Python's own objects come from pymalloc in any case.
"""

from __future__ import annotations

import sys

# <malloc.h>: mallopt(M_ARENA_MAX, n) caps the number of arenas.
M_ARENA_MAX = -8


def one_arena() -> bool:
    """Cap glibc's malloc arenas at one (Linux with glibc only); whether it was applied.

    Called before the process starts any thread. MALLOC_ARENA_MAX in the environment wins.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import os

    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no glibc arenas to cap
        return False
    return bool(mallopt(M_ARENA_MAX, 1))
