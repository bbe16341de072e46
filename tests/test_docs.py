"""The documentation: the site builds strictly, README stays short, and the reference pages name
every setting, route and command the code has (so a new one cannot ship undocumented)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.routing import Route

from ghapp.cli.main import build_parser
from ghapp.config import Settings
from ghapp.web.app import create_app

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README_MAX = 12 * 1024


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """`mkdocs build --strict`: a broken link or anchor, a missing page or include fails."""
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        # The snippets (template, manifest, benchmarks) are read relative to the root.
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The included files really are in the pages, not just the include lines.
    template = (site / "reference" / "template" / "index.html").read_text()
    assert "workflow_dispatch" in template and "--8&lt;--" not in template
    benchmarks = (site / "benchmarks" / "index.html").read_text()
    assert "Method (summary)" in benchmarks
    assert (site / "operator-page.png").is_file()


def test_readme_fits_on_a_few_screens() -> None:
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_MAX, f"README.md is {size} bytes; at most {README_MAX}: move it to docs/"


def test_readme_links_point_at_files_that_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if "://" not in t]
    assert any(t.startswith("docs/") for t in local), "README links into the docs site"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"


def test_the_readme_commands_are_the_ones_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    test_command = (
        "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/pytest"
    )
    assert test_command in readme
    assert test_command in (ROOT / ".ci" / "run").read_text()
    assert (
        "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/ghapp demo" in readme
    )


def _documented(page: str) -> str:
    return (DOCS / page).read_text()


def test_every_setting_is_documented() -> None:
    names = [name.upper() for name in Settings.model_fields]
    for page in ("reference/settings.md", "configuration.md"):
        text = _documented(page)
        missing = [name for name in names if f"`{name}`" not in text]
        assert not missing, f"docs/{page} does not document {missing}"


def _template(path: str) -> str:
    """A route's path with its parameters' names dropped: `/a/{id}/b` -> `/a/{}/b`."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def test_every_route_is_documented() -> None:
    settings = Settings(_env_file=None)
    routes = [route for route in create_app(settings).routes if isinstance(route, Route)]
    assert routes
    paths = {_template(r.path) for r in routes if r.path != settings.webhook_path}
    text = _template(_documented("reference/http-api.md"))
    missing = sorted(
        path for path in paths if f"`GET {path}" not in text and f"`POST {path}" not in text
    )
    assert not missing, f"docs/reference/http-api.md does not list {missing}"
    assert "`POST $WEBHOOK_PATH`" in text


def _commands(*argv: str) -> list[str]:
    """The subcommands `ghapp ARGV --help` lists."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    listing = out.getvalue().split("positional arguments:", 1)[1].split("options:", 1)[0]
    return re.findall(r"^    (\S+)", listing, flags=re.MULTILINE)


def test_every_command_is_documented() -> None:
    commands = _commands()
    assert {"serve", "demo", "deploy", "watch", "deliveries"} <= set(commands)
    text = _documented("reference/cli.md")
    missing = [c for c in commands if f"## `ghapp {c}`" not in text]
    assert not missing, f"docs/reference/cli.md has no section for {missing}"
    actions = _commands("deliveries")
    assert "redeliver-failed" in actions
    missing = [a for a in actions if f"`ghapp deliveries {a}" not in text]
    assert not missing, f"docs/reference/cli.md does not list deliveries {missing}"


def test_nothing_points_at_the_team_brief() -> None:
    """Code and docs name the docs pages; the team's brief is not in the repository."""
    brief = "DESIGN" + ".md"
    found = [
        str(path.relative_to(ROOT))
        for folder in ("ghapp", "tests", "benchmarks", "examples", "docs")
        for path in (ROOT / folder).rglob("*")
        if path.is_file()
        and path.suffix in (".py", ".md", ".yml", ".yaml", ".toml", ".html")
        and brief in path.read_text(errors="replace")
    ]
    found += [name for name in ("README.md", "mkdocs.yml") if brief in (ROOT / name).read_text()]
    assert not found, f"{brief} is named in {found}"
