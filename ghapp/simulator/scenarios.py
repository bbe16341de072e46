"""What a sandbox repository's deploy does: scenarios, from a YAML file or over HTTP.

A scenario (every field optional; the default succeeds after 2 s):

    {"outcome": "failure", "after_seconds": 2, "step": "Deploy on the server",
     "log": ["ssh: connect to host 203.0.113.7 port 22: Connection refused"],
     "url": "https://shop.example.com", "lose_webhooks": "none", "github_errors_for_seconds": 0}

`attach(sim, book)` makes a simulator install any repository on first use with a `deploy.yml`
whose job and steps are the template's (`ghapp template deploy`) and whose runs follow its
scenario, and serves `PUT/GET/DELETE /sandbox/scenarios/{owner}/{repo}`.

Scenarios are bounded (docs/limits.md): one is at most MAX_SCENARIO_BYTES of JSON (a `PUT`
body past it is refused `413` before it is read whole), and at most MAX_SCENARIOS repositories
have their own (`409` past it; replacing or deleting one is always possible).
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from ghapp.simulator import sandbox_gate
from ghapp.simulator.model import Job, Step, Workflow
from ghapp.simulator.simulator import Simulator

DEFAULT_KEY = "default"
# A scenario's JSON (mostly its log lines), and how many repositories may have their own.
MAX_SCENARIO_BYTES = 64 * 1024
MAX_SCENARIOS = 100
# Where the template deploys: a failure names it by default.
DEFAULT_STEP = "Deploy on the server"
_NAME = re.compile(r"[A-Za-z0-9._-]+")
# What "lose_webhooks" drops: nothing, what tells that the run ended, or every webhook of the run.
_LOST: dict[str, frozenset[str]] = {
    "none": frozenset(),
    "completed": frozenset({"workflow_run.completed", "workflow_job.completed"}),
    "all": frozenset({"workflow_run", "workflow_job", "deployment_status"}),
}


class ScenarioError(ValueError):
    """A scenario (or scenarios file) that does not validate; the message names the field."""


class TooManyScenarios(ScenarioError):
    """MAX_SCENARIOS repositories have their own scenario already."""


class EnvironmentProtection(BaseModel):
    """An environment's protection: ghapp's deployment protection rule, reviewers, a timer."""

    model_config = ConfigDict(extra="forbid")

    ghapp_rule: bool = False
    reviewers: list[str] = Field(default_factory=list, max_length=6)
    wait_timer: int = Field(default=0, ge=0, le=43200)


class Scenario(BaseModel):
    """What the next deploys of a repository do."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    outcome: Literal["success", "failure", "cancelled", "timed_out"] = "success"
    after_seconds: float = Field(default=2.0, ge=0, le=3600)
    url: str | None = Field(default=None, max_length=2000)
    step: str = Field(default=DEFAULT_STEP, min_length=1, max_length=200)
    log: list[str] = Field(default_factory=list, max_length=2000)
    lose_webhooks: Literal["none", "completed", "all"] = "none"
    github_errors_for_seconds: float = Field(default=0.0, ge=0, le=3600)
    # What the run's steps append to $GHAPP_OUTPUTS (uploaded as `ghapp-outputs`).
    outputs: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^=\s]+$")],
        Annotated[str, StringConstraints(max_length=1000, pattern=r"^[^\r\n]*$")],
    ] | None = Field(default=None, max_length=20)
    # The gate: environments with ghapp's rule hold their runs until the App answers.
    environments: dict[str, EnvironmentProtection] = Field(default_factory=dict, max_length=20)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s/]+\S*", value):
            raise ValueError("must be an http or https URL")
        return value

    @field_validator("log")
    @classmethod
    def _log_size(cls, value: list[str]) -> list[str]:
        # The JSON of the lines, as a PUT would carry them (escapes count).
        size = len(json.dumps(value).encode())
        if size > MAX_SCENARIO_BYTES:
            raise ValueError(f"at most {MAX_SCENARIO_BYTES} bytes of JSON (these are {size})")
        return value


def describe_errors(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """Pydantic's errors as `{"field", "message"}` pairs a person can read."""
    found = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(body)"
        found.append({"field": prefix + where, "message": error["msg"]})
    return found


def parse_scenario(data: Any, prefix: str = "") -> Scenario:
    """A Scenario from JSON-like data, or a ScenarioError naming each bad field."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        errors = describe_errors(exc, prefix)
        raise ScenarioError("; ".join(f"{e['field']}: {e['message']}" for e in errors)) from None


def check_repository(full_name: str) -> str:
    """`owner/repo` with GitHub's characters, or a ScenarioError."""
    owner, _, name = full_name.partition("/")
    if not all(_NAME.fullmatch(part) and part not in (".", "..") for part in (owner, name)):
        raise ScenarioError(f"{full_name!r}: expected owner/repo (letters, digits, '.', '_', '-')")
    return f"{owner}/{name}"


class ScenarioBook:
    """The default scenario and each repository's own (names compared case-insensitively)."""

    def __init__(
        self, scenarios: Mapping[str, Scenario] | None = None, default: Scenario | None = None
    ) -> None:
        """Start with these repositories' scenarios and this default (else: success after 2 s)."""
        self.default = default or Scenario()
        self._own: dict[str, Scenario] = {}
        # Set from the test thread of `ghapp.testing` while the sandbox's loop reads it.
        self._lock = threading.Lock()
        for repository, scenario in (scenarios or {}).items():
            self.set(repository, scenario)

    @classmethod
    def from_yaml(cls, path: str | Path) -> ScenarioBook:
        """Read a scenarios file: a mapping of `owner/repo` (or `default`) to scenarios."""
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ScenarioError(f"{path}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise ScenarioError(f"{path}: not YAML: {exc}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ScenarioError(
                f"{path}: expected a mapping of owner/repo (or default) to a scenario"
            )
        book = cls()
        for key, value in data.items():
            scenario = parse_scenario(value if value is not None else {}, prefix=f"{key}.")
            if key == DEFAULT_KEY:
                book.default = scenario
            else:
                try:
                    book.set(check_repository(str(key)), scenario)
                except ScenarioError as exc:
                    raise ScenarioError(f"{path}: {exc}") from None
        return book

    def own(self, repository: str) -> Scenario | None:
        """The repository's own scenario, if one was set."""
        with self._lock:
            return self._own.get(repository.lower())

    def get(self, repository: str) -> Scenario:
        """The scenario in force for a repository: its own, else the default."""
        return self.own(repository) or self.default

    def set(self, repository: str, scenario: Scenario) -> None:
        """Give a repository its own scenario (TooManyScenarios past MAX_SCENARIOS)."""
        key = repository.lower()
        with self._lock:
            if key not in self._own and len(self._own) >= MAX_SCENARIOS:
                raise TooManyScenarios(
                    f"at most {MAX_SCENARIOS} repositories have their own scenario: DELETE "
                    "one first, or change the default"
                )
            self._own[key] = scenario

    def reset(self, repository: str) -> None:
        """Back to the default scenario."""
        with self._lock:
            self._own.pop(repository.lower(), None)


def default_url(repository: str) -> str:
    """Where a succeeding deploy says it went when the scenario names no `url`."""
    owner, _, name = repository.lower().partition("/")
    return f"https://{name}.{owner}.example"


@functools.cache
def template_steps() -> tuple[tuple[str, str], ...]:
    """The steps of the deploy job of `ghapp template deploy`: (name, `uses:` or `run:` script)."""
    import yaml

    from ghapp.templates import deploy_template

    job = yaml.safe_load(deploy_template())["jobs"]["deploy"]
    steps = []
    for step in job["steps"]:
        command = str(step.get("uses") or step.get("run") or "").rstrip("\n")
        steps.append((str(step.get("name") or f"Run {command}"), command))
    return tuple(steps)


@functools.cache
def template_inputs() -> dict[str, Any]:
    """The `workflow_dispatch` inputs of `ghapp template deploy` (`traceparent` included)."""
    import yaml

    from ghapp.templates import deploy_template

    on = yaml.safe_load(deploy_template())[True]
    return dict(on["workflow_dispatch"]["inputs"])


def workflow_for(repository: str, scenario: Scenario) -> Workflow:
    """The template's deploy.yml (its job and step names) with runs that end as the scenario
    says: a failure in a step the template does not have takes DEFAULT_STEP's place."""
    names = [name for name, _ in template_steps()]
    commands = dict(template_steps())
    if scenario.outcome != "success" and scenario.step not in names:
        names[names.index(DEFAULT_STEP)] = scenario.step
    ending = scenario.step if scenario.outcome != "success" else names[-1]
    ran = names[: names.index(ending)]  # the scripted steps before the one it ends in
    steps = []
    for name in names:
        ends_here = scenario.outcome != "success" and name == scenario.step
        # A success prints the scenario's lines where the template deploys.
        output = scenario.log if ends_here or (scenario.outcome == "success"
                                               and name == DEFAULT_STEP) else ()
        steps.append(
            Step(
                name,
                command=commands.get(name, name),
                output=list(output),
                fail=ends_here and scenario.outcome in ("failure", "timed_out"),
                cancelled=ends_here and scenario.outcome == "cancelled",
            )
        )
    job = Job(
        name="deploy",
        environment="production",
        environment_url=scenario.url or default_url(repository),
        steps=steps,
        outputs=scenario.outputs,
    )
    return Workflow(
        file="deploy.yml",
        name="Deploy",
        jobs=[job],
        inputs=template_inputs(),
        timeout=scenario.outcome == "timed_out",
        # The simulator's moves share the time: the start, one per step up to the last one
        # that runs ("Set up job" comes first), and the end.
        phase_delay=scenario.after_seconds / (len(ran) + 3),
        lose_webhooks=_LOST[scenario.lose_webhooks],
        errors_after_dispatch=scenario.github_errors_for_seconds,
    )


def _error(status: int, error: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": error, "message": message, **extra}, status=status)


async def _bounded_body(request: web.Request) -> bytes | None:
    """The body, or None past MAX_SCENARIO_BYTES (never more than that is held)."""
    if request.content_length is not None and request.content_length > MAX_SCENARIO_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(16 * 1024):
        size += len(chunk)
        if size > MAX_SCENARIO_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


ApplyScenario = Callable[[str, "Scenario | None"], None]


def attach(sim: Simulator, book: ScenarioBook) -> ApplyScenario:
    """Install repositories on demand and serve the scenario routes (call before `start`).

    Returns `apply(repository, scenario)`: set a repository's scenario (None: back to the
    default), from the simulator's event loop."""

    def install(owner: str, name: str) -> None:
        full_name = f"{owner}/{name}"
        repo = sim.add_repository(full_name, default_branch="main")
        repo.add_workflow(workflow_for(full_name, book.get(full_name)))
        protect(repo.full_name)

    def protect(full_name: str) -> None:
        repo = sim.world.repo_of(*full_name.split("/", 1))
        if repo is not None:
            repo.environments = {
                name: protection.model_dump()
                for name, protection in book.get(full_name).environments.items()
            }

    def refresh(full_name: str) -> None:
        # A repository already installed follows its new scenario from its next dispatch on;
        # a run under way keeps the workflow it started with.
        repo = sim.world.repo_of(*full_name.split("/", 1))
        if repo is not None:
            repo.add_workflow(workflow_for(repo.full_name, book.get(full_name)))
            protect(repo.full_name)

    def apply(full_name: str, scenario: Scenario | None) -> None:
        if scenario is None:
            book.reset(full_name)
        else:
            book.set(full_name, scenario)
        refresh(full_name)

    def repository_of(request: web.Request) -> str:
        return check_repository(f"{request.match_info['owner']}/{request.match_info['repo']}")

    async def put(request: web.Request) -> web.Response:
        try:
            full_name = repository_of(request)
        except ScenarioError as exc:
            return _error(422, "invalid_repository", str(exc))
        body = await _bounded_body(request)
        if body is None:
            return _error(
                413, "too_large", f"a scenario is at most {MAX_SCENARIO_BYTES} bytes of JSON"
            )
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return _error(400, "invalid_json", "the body is not JSON")
        try:
            scenario = Scenario.model_validate(data)
        except ValidationError as exc:
            errors = describe_errors(exc)
            message = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
            return _error(422, "invalid_scenario", message, errors=errors)
        try:
            apply(full_name, scenario)
        except TooManyScenarios as exc:
            return _error(409, "too_many_scenarios", str(exc))
        return web.json_response(scenario.model_dump())

    async def get(request: web.Request) -> web.Response:
        try:
            full_name = repository_of(request)
        except ScenarioError as exc:
            return _error(422, "invalid_repository", str(exc))
        return web.json_response(book.get(full_name).model_dump())

    async def delete(request: web.Request) -> web.Response:
        try:
            full_name = repository_of(request)
        except ScenarioError as exc:
            return _error(422, "invalid_repository", str(exc))
        apply(full_name, None)
        return web.Response(status=204)

    path = "/sandbox/scenarios/{owner}/{repo}"
    sim.on_unknown_repository = install
    sim.extra_routes = [
        web.put(path, put), web.get(path, get), web.delete(path, delete),
        *sandbox_gate.routes(sim, check_repository),
    ]
    return apply
