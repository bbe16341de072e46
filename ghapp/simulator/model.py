"""Scripts that tell the simulator what a workflow does, and the fault switches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_EXIT_ERROR = "Process completed with exit code 1."


@dataclass
class Annotation:
    """A check-run annotation a step or job produces (GitHub lists them per job)."""

    message: str
    level: str = "warning"
    path: str = ".github"
    start_line: int = 1
    end_line: int | None = None
    title: str | None = None
    raw_details: str | None = None


AnnotationLike = Annotation | dict[str, Any]


def as_annotation(value: AnnotationLike) -> Annotation:
    """Accept an Annotation or a dict with the same keys (``annotation_level`` also works)."""
    if isinstance(value, Annotation):
        return value
    data = dict(value)
    if "annotation_level" in data:
        data["level"] = data.pop("annotation_level")
    return Annotation(**data)


@dataclass
class Step:
    """One step of a job: succeeds, fails with ``error``, or is cancelled while it runs."""

    name: str
    fail: bool = False
    error: str | None = None
    output: Sequence[str] = ()
    command: str | None = None
    cancelled: bool = False
    annotations: Sequence[AnnotationLike] = ()

    @property
    def run_command(self) -> str:
        """What the ``##[group]Run ...`` line names: the command, not the step's name."""
        if self.command:
            return self.command
        if self.name.startswith("Run "):
            return self.name[4:]
        return self.name

    @property
    def is_action(self) -> bool:
        """True for ``uses:`` steps such as ``actions/checkout@v4``."""
        cmd = self.run_command
        return "@" in cmd and " " not in cmd and "/" in cmd

    @property
    def failure_message(self) -> str:
        """The ``##[error]`` text of a failing step."""
        return self.error or DEFAULT_EXIT_ERROR


@dataclass
class Job:
    """One job of a workflow; ``needs`` names jobs that must succeed before it starts."""

    name: str
    steps: Sequence[Step] = ()
    environment: str | None = None
    environment_url: str | None = None
    needs: Sequence[str] = ()
    annotations: Sequence[AnnotationLike] = ()
    log_padding_bytes: int = 0
    runs_on: str = "ubuntu-latest"
    # What the job's steps appended to $GHAPP_OUTPUTS, uploaded when the job ends (success or
    # failure) as `outputs_artifact`; `outputs_text`, when set, is the file's exact content.
    outputs: Mapping[str, str] | None = None
    outputs_text: str | None = None
    outputs_artifact: str = "ghapp-outputs"


def _default_inputs(declares_ghapp_id: bool) -> dict[str, dict[str, Any]]:
    inputs: dict[str, dict[str, Any]] = {
        "environment": {
            "description": "Target environment",
            "required": False,
            "default": "production",
            "type": "string",
        },
        "version": {"description": "Version to deploy", "required": False, "type": "string"},
    }
    if declares_ghapp_id:
        inputs["ghapp_id"] = {
            "description": "Correlation id set by ghapp",
            "required": False,
            "type": "string",
        }
    return inputs


@dataclass
class Workflow:
    """A workflow file of a repository and the script its runs follow."""

    file: str
    name: str
    jobs: Sequence[Job] = ()
    declares_ghapp_id: bool = True
    dispatchable: bool = True
    inputs: dict[str, Any] | None = None
    timeout: bool = False
    timeout_minutes: int = 360
    run_name: str | None = None
    content: str | None = None
    id: int = 0
    # Per-run knobs the sandbox's scenarios set: seconds between a run's phases (the
    # simulator's step_delay when None), webhooks of its runs that are lost ("event" or
    # "event.action"), and seconds of 502s from the whole API once one of its runs is dispatched.
    phase_delay: float | None = None
    lose_webhooks: frozenset[str] = frozenset()
    errors_after_dispatch: float = 0.0
    # `concurrency.group` with `cancel-in-progress: false`, e.g. "deploy-${{ inputs.environment }}":
    # one run of a group at a time, and only the newest waiting run is kept.
    concurrency: str | None = None

    def __post_init__(self) -> None:
        if self.inputs is None:
            self.inputs = _default_inputs(self.declares_ghapp_id)
        if self.run_name is None and "ghapp_id" in self.inputs:
            self.run_name = "Deploy ${{ inputs.ghapp_id }}"

    @property
    def path(self) -> str:
        """The file's path in the repository."""
        return f".github/workflows/{self.file}"

    def job_specs(self) -> list[Job]:
        """The scripted jobs, or a plain checkout-and-deploy job when none were given."""
        if self.jobs:
            return list(self.jobs)
        steps = (Step("Run actions/checkout@v4"), Step("Deploy", command="./deploy.sh"))
        return [Job(name="deploy", steps=steps)]

    def input_specs(self) -> dict[str, dict[str, Any]]:
        """Declared inputs as dicts (a plain string value is taken as the description)."""
        specs: dict[str, dict[str, Any]] = {}
        for key, value in (self.inputs or {}).items():
            if isinstance(value, dict):
                specs[key] = value
            else:
                specs[key] = {"description": "" if value is None else str(value)}
        return specs


@dataclass
class Faults:
    """Fault switches; the counting ones are consumed one per request."""

    drop_webhooks: bool | set[str] = False
    delay_webhooks: float = 0.0
    duplicate_webhooks: bool = False
    reorder_webhooks: bool = False
    hold_webhooks: bool = False
    server_errors: int = 0
    secondary_rate_limit: int = 0
    retry_after: int = 1
    ghes: bool = False
    logs_not_ready: int = 0
    # The dispatch is answered only once its run has finished and all its webhooks were sent:
    # the App hears of the run before it learns the run's id (the early-run race).
    webhooks_before_answer: bool = False
    # The log host misbehaving, on every log request while set: it sends one byte a second
    # (`stall_logs`), resets the connection before answering (`reset_logs`), promises more
    # than it sends and hangs up (`cut_logs`), or answers 302 to this Location
    # (`redirect_logs`: another host and port, or a URL that is not HTTP at all).
    stall_logs: bool = False
    reset_logs: bool = False
    cut_logs: bool = False
    redirect_logs: str | None = None
    # The API host takes a dispatch and holds its answer this many seconds (the dispatch
    # still happens when the request arrives): GitHub accepting and answering late.
    dispatch_answer_delay: float = 0.0
    # The API host takes a dispatch, then resets the connection instead of answering.
    reset_dispatch_answer: bool = False
    # The API host takes this many dispatches (each run starts) and answers each 502: GitHub
    # failing after it created the run.
    error_after_dispatch: int = 0
    # Every API request answers 502 until this time.monotonic() (GitHub down for a while).
    server_errors_until: float = 0.0
    # GraphQL: this many queries answered with GitHub's "Something went wrong" error; or no
    # GraphQL API at all (404, as on a server without it).
    graphql_errors: int = 0
    graphql_missing: bool = False

    def drops(self, event: str, action: str | None) -> bool:
        """Whether a delivery of ``event``/``action`` is to be dropped."""
        if isinstance(self.drop_webhooks, bool):
            return self.drop_webhooks
        names = {event, f"{event}.{action}"} if action else {event}
        return bool(names & self.drop_webhooks)
