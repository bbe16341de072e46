"""Imports point from the edges to the core, never back, and no module imports one that imports it.

The sources are read with `ast` (nothing is imported or run). Every import statement counts: at
the top of a module, inside a function, and under `TYPE_CHECKING` alike, since each is a
dependency a reader (and mypy) follows. Importing `a.b.c` also runs the packages `a.b` and `a`,
so those count too, except a module's own enclosing packages (Python has started them before the
module). Imports by name in a string (`importlib.import_module("...")`) are not seen; ghapp has
none.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# What each part of ghapp must not import (a name forbids the module and everything below it).
# The pure core imports no edge and no I/O library; the web app does not reach into the
# simulator; workers, the store, the GitHub client and the orchestrator's client stay below the
# web app and the commands.
EDGES = ("ghapp.web", "ghapp.work", "ghapp.store", "ghapp.github", "ghapp.cli", "ghapp.simulator")
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "ghapp.core": (*EDGES, "aiohttp", "starlette", "sqlalchemy"),
    "ghapp.web": ("ghapp.simulator", "ghapp.cli"),
    "ghapp.work": ("ghapp.web", "ghapp.cli", "ghapp.simulator"),
    "ghapp.store": ("ghapp.web", "ghapp.work", "ghapp.github", "ghapp.cli", "ghapp.simulator"),
    "ghapp.github": ("ghapp.web", "ghapp.work", "ghapp.store", "ghapp.cli", "ghapp.simulator"),
    "ghapp.client": EDGES,
}


@dataclass(frozen=True)
class Import:
    """One module an import statement brings in, and where the statement is."""

    importer: str
    path: Path
    line: int
    statement: str
    target: str

    def where(self) -> str:
        """`path:line: statement`, as a failure names it."""
        return f"{self.path}:{self.line}: {self.statement}"


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its `__init__.py`)."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _absolute(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The module a `from ... import` names, relative imports resolved."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, node.module] if node.module else base)


def _targets(
    node: ast.AST, importer: str, is_package: bool, known: Mapping[str, Path]
) -> list[str]:
    """The modules an import statement brings in: what it names, and for `from M import x`
    M and (when x is a module of its own) M.x."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    assert isinstance(node, ast.ImportFrom)
    module = _absolute(importer, is_package, node)
    named = [f"{module}.{alias.name}" for alias in node.names]
    return [module, *(name for name in named if name in known)]


def read_imports(root: Path, package: str = "ghapp") -> list[Import]:
    """Every import in a package's sources, one entry per module brought in."""
    known = _modules(root, package)
    found = []
    for importer, path in known.items():
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source, str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            statement = " ".join((ast.get_source_segment(source, node) or "").split())
            where = path.relative_to(root)
            for target in _targets(node, importer, path.name == "__init__.py", known):
                found.append(Import(importer, where, node.lineno, statement, target))
    return found


def _runs(target: str, importer: str, known: Mapping[str, Path]) -> Iterator[str]:
    """The modules of the package that importing `target` runs, for `importer`: the longest
    known module it names and the packages above it, but not the importer's own packages."""
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        if name in known and name != importer and not importer.startswith(name + "."):
            yield name


def layer_violations(imports: list[Import], rules: Mapping[str, tuple[str, ...]]) -> list[str]:
    """One line per import a rule forbids, naming the module, the statement and the rule."""
    problems = []
    for item in imports:
        for layer, forbidden in rules.items():
            if not _within(item.importer, layer):
                continue
            for name in forbidden:
                if _within(item.target, name):
                    problems.append(
                        f"{item.where()}  ({item.importer} imports {item.target}: "
                        f"{layer} must not import {name})"
                    )
    return sorted(set(problems))


def import_cycles(imports: list[Import], root: Path, package: str = "ghapp") -> list[str]:
    """One report per group of modules that import each other (at any depth): a shortest
    cycle through the group, each step with the statement that makes it."""
    known = _modules(root, package)
    edges: dict[str, dict[str, Import]] = {name: {} for name in known}
    for item in imports:
        for ran in _runs(item.target, item.importer, known):
            edges[item.importer].setdefault(ran, item)
    reports = []
    for group in _strongly_connected(edges):
        start = min(group)
        steps = _shortest_cycle(start, group, edges)
        lines = [f"{a} -> {b}  via {edges[a][b].where()}" for a, b in steps]
        reports.append(f"cycle through {sorted(group)}:\n  " + "\n  ".join(lines))
    return reports


def _strongly_connected(edges: Mapping[str, Mapping[str, Import]]) -> list[set[str]]:
    """Groups of two or more modules that reach each other (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(group)
    return groups


def _shortest_cycle(
    start: str, group: set[str], edges: Mapping[str, Mapping[str, Import]]
) -> list[tuple[str, str]]:
    """The steps of a shortest path from `start` back to itself inside `group`."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(edges[node]):
            if child == start:
                path = [(node, start)]
                while node != start:
                    path.append((came_from[node], node))
                    node = came_from[node]
                return path[::-1]
            if child in group and child not in came_from:
                came_from[child] = node
                queue.append(child)
    raise AssertionError(f"{start} is in a group of modules but on no cycle")


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return read_imports(ROOT)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_imports_point_toward_the_core(imports: list[Import], layer: str) -> None:
    problems = layer_violations(imports, {layer: FORBIDDEN[layer]})
    assert not problems, "imports pointing the wrong way:\n" + "\n".join(problems)


def test_no_module_imports_one_that_imports_it(imports: list[Import]) -> None:
    cycles = import_cycles(imports, ROOT)
    assert not cycles, "modules that import each other:\n" + "\n".join(cycles)


def test_every_layer_of_the_rules_exists() -> None:
    known = _modules(ROOT, "ghapp")
    assert all(layer in known for layer in FORBIDDEN)
    assert all(name in known for name in EDGES)


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_the_check_names_a_wrong_way_import_in_a_function_and_under_type_checking(
    tmp_path: Path,
) -> None:
    root = _package(
        tmp_path,
        {
            "ghapp/__init__.py": "",
            "ghapp/core/__init__.py": "",
            "ghapp/core/rules.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from ghapp.web.app import App\n"
                "def load():\n"
                "    import sqlalchemy.ext.asyncio\n"
            ),
            "ghapp/web/__init__.py": "",
            "ghapp/web/app.py": "from ghapp.core import rules\nfrom ghapp import simulator\n",
            "ghapp/simulator/__init__.py": "",
        },
    )
    problems = layer_violations(read_imports(root), FORBIDDEN)
    assert problems == [
        "ghapp/core/rules.py:3: from ghapp.web.app import App  "
        "(ghapp.core.rules imports ghapp.web.app: ghapp.core must not import ghapp.web)",
        "ghapp/core/rules.py:5: import sqlalchemy.ext.asyncio  "
        "(ghapp.core.rules imports sqlalchemy.ext.asyncio: ghapp.core must not import sqlalchemy)",
        "ghapp/web/app.py:2: from ghapp import simulator  "
        "(ghapp.web.app imports ghapp.simulator: ghapp.web must not import ghapp.simulator)",
    ]


def test_the_check_finds_a_cycle_at_any_depth_through_a_package(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "ghapp/__init__.py": "",
            "ghapp/a.py": "from ghapp.pkg.b import thing\n",
            # Importing ghapp.pkg.b runs ghapp/pkg/__init__.py, which imports ghapp.c.
            "ghapp/pkg/__init__.py": "from ghapp import c\n",
            "ghapp/pkg/b.py": "from ghapp.pkg import sibling\nthing = 1\n",
            "ghapp/pkg/sibling.py": "",
            "ghapp/c.py": "def late():\n    from . import a\n",
        },
    )
    cycles = import_cycles(read_imports(root), root)
    assert cycles == [
        "cycle through ['ghapp.a', 'ghapp.c', 'ghapp.pkg']:\n"
        "  ghapp.a -> ghapp.pkg  via ghapp/a.py:1: from ghapp.pkg.b import thing\n"
        "  ghapp.pkg -> ghapp.c  via ghapp/pkg/__init__.py:1: from ghapp import c\n"
        "  ghapp.c -> ghapp.a  via ghapp/c.py:2: from . import a"
    ]
    # A module's own package is started before it: b importing its package is no cycle.
    assert not any("ghapp.pkg.b ->" in cycle for cycle in cycles)
