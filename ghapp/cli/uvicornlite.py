"""uvicorn's server without its command line, for `ghapp serve`.

uvicorn's package `__init__` imports `uvicorn.main`, its command line, and with it click,
multiprocessing and watchfiles (a compiled extension): about 2 MiB of every serving process
that `ghapp serve` never uses (benchmarks/README.md, issue 17). Registered this way, the package
answers `uvicorn.Config` and `uvicorn.Server` from their own modules, and runs its real
`__init__` only if anything asks for another of its names (`uvicorn.run`, `uvicorn.main`).

Registering a package this way leans on how uvicorn lays out its modules: kept because
importing `uvicorn` as such still costs 2 MiB idle (measured again for issue 22, over the 64 MiB
target), so uvicorn is bounded below its next minor release in pyproject.toml and
tests/test_dependency_bounds.py fails when that bound moves unchecked.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

# What uvicorn's __init__ exports, from the modules that define it without the command line.
_LIGHT = {"Config": "uvicorn.config", "Server": "uvicorn.server"}


def without_cli() -> bool:
    """Register `uvicorn` with its `__init__` deferred; False if it was imported already."""
    if "uvicorn" in sys.modules:
        return False
    spec = importlib.util.find_spec("uvicorn")
    if spec is None or spec.loader is None:
        return False
    loader = spec.loader
    package = importlib.util.module_from_spec(spec)

    def __getattr__(name: str) -> Any:
        if name in _LIGHT:
            return getattr(importlib.import_module(_LIGHT[name]), name)
        # Another name (run, main, __version__): uvicorn's own __init__, once, as if imported.
        del package.__dict__["__getattr__"]
        loader.exec_module(package)
        return getattr(package, name)

    package.__dict__["__getattr__"] = __getattr__
    sys.modules["uvicorn"] = package
    return True
