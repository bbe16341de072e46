"""Dependencies whose internals ghapp leans on are bounded to the releases they were checked on.

Three modules use what their library does not document, each because no public means fits
(benchmarks/README.md, "Private APIs kept"):

- `ghapp/store/aio.py` drives SQLAlchemy's asyncio bridge (`create_engine(_is_async=True)`,
  `sqlalchemy.util.concurrency.greenlet_spawn`) instead of `sqlalchemy.ext.asyncio`, whose
  package imports the ORM: +6 to +7 MiB of idle memory, over the 64 MiB target;
- `ghapp/cli/uvicornlite.py` registers uvicorn's package without running its `__init__`, which
  imports uvicorn's command line (click, watchfiles): +2 MiB idle;
- `ghapp/web/protocol.py` builds uvicorn's httptools protocol with the keyword arguments
  uvicorn's server passes (`_loop` among them) behind its own transport: uvicorn has no
  setting that caps a whole head or bounds its time.

A minor release may change any of these. pyproject.toml bounds each library below its next
minor release; these tests fail when that bound is raised (or the installed version is outside
the range checked) without this list being checked again, and when a checked internal moved.
"""

from __future__ import annotations

import inspect
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

# The releases the three modules were last checked on (the store, serving and request-bound
# tests on SQLite and PostgreSQL): from the lower bound, up to (not including) the upper one.
# Raising an upper bound means checking the module against the new release, then here.
CHECKED = {
    "sqlalchemy": ("2.0.30", "2.2"),  # checked on 2.1.9 (store/aio.py)
    "uvicorn": ("0.30", "0.56"),  # checked on 0.55.0 (cli/uvicornlite.py, web/protocol.py)
}


def declared(name: str) -> Requirement:
    """The requirement on `name` in pyproject.toml's dependencies."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    found = [Requirement(d) for d in project["dependencies"] if Requirement(d).name == name]
    assert len(found) == 1, f"{name} is required once in pyproject.toml"
    return found[0]


@pytest.mark.parametrize("name", sorted(CHECKED))
def test_pyproject_bounds_the_dependency_to_the_checked_releases(name: str) -> None:
    low, high = CHECKED[name]
    specifier = declared(name).specifier
    uppers = [s.version for s in specifier if s.operator == "<"]
    # An upper bound, and the one checked: a wider one lets a release nobody checked install.
    assert uppers == [high], f"{name}: pyproject.toml must say <{high} (found {specifier})"
    assert Version(low) in specifier
    assert not specifier.contains(high, prereleases=True)


@pytest.mark.parametrize("name", sorted(CHECKED))
def test_the_installed_release_is_within_the_checked_range(name: str) -> None:
    low, high = CHECKED[name]
    installed = Version(version(name))
    assert Version(low) <= installed < Version(high), (
        f"{name} {installed} is outside the checked range {low} to <{high}: check "
        "the module that uses its internals (see this file's docstring), then CHECKED"
    )


def test_sqlalchemy_still_has_the_asyncio_bridge_the_store_drives() -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.util.concurrency import greenlet_spawn

    engine = create_engine("sqlite+aiosqlite://", _is_async=True)
    try:
        assert engine.dialect.is_async
    finally:
        engine.dispose()
    assert "_require_await" in inspect.signature(greenlet_spawn).parameters


def test_uvicorn_still_builds_protocols_and_exports_as_ghapp_expects() -> None:
    import uvicorn
    import uvicorn.config
    import uvicorn.server
    from uvicorn.importer import import_from_string

    from ghapp.cli.uvicornlite import _LIGHT

    # uvicornlite answers these from their own modules, and runs the real __init__ for the rest.
    for name, module in _LIGHT.items():
        assert getattr(uvicorn, name) is getattr(__import__(module, fromlist=[name]), name)
    assert set(uvicorn.__all__) == {"Config", "Server", "main", "run"}
    # BoundedHttp hands uvicorn's keyword arguments to the protocol its --http option names.
    protocol = import_from_string(uvicorn.config.HTTP_PROTOCOLS["httptools"])
    assert list(inspect.signature(protocol).parameters) == [
        "config",
        "server_state",
        "app_state",
        "_loop",
    ]
    assert "_loop=_loop" in inspect.getsource(uvicorn.server.Server.startup)
