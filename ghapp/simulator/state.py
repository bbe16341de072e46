"""What the simulated GitHub knows: installations, repositories, runs, jobs, deployments."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any

from ghapp.simulator.artifacts import ArtifactState
from ghapp.simulator.clock import now_s
from ghapp.simulator.model import Annotation, Job, Step, Workflow

APP_PERMISSIONS: dict[str, str] = {
    "actions": "write",
    "checks": "read",
    "contents": "read",
    "deployments": "write",
    "members": "read",
    "metadata": "read",
    "secrets": "write",
}
APP_EVENTS: list[str] = [
    "deployment_protection_rule",
    "deployment_review",
    "deployment_status",
    "workflow_job",
    "workflow_run",
]


class Ids:
    """Id sequences; each kind starts where GitHub's ids of that kind roughly are today."""

    def __init__(self) -> None:
        self.account = itertools.count(81_000_001)
        self.repo = itertools.count(700_000_001)
        self.installation = itertools.count(50_000_001)
        self.workflow = itertools.count(120_000_001)
        self.run = itertools.count(10_000_000_001)
        self.job = itertools.count(30_000_000_001)
        self.check_suite = itertools.count(40_000_000_001)
        self.deployment = itertools.count(2_100_000_001)
        self.deployment_status = itertools.count(3_200_000_001)
        self.delivery = itertools.count(90_000_000_001)
        self.artifact = itertools.count(5_000_000_001)


def sha1_hex(text: str) -> str:
    """A stable 40-hex id derived from ``text``."""
    return hashlib.sha1(text.encode()).hexdigest()


@dataclass
class Installation:
    """An installation of the App on one account."""

    id: int
    account: str
    created: int = field(default_factory=now_s)
    permissions: dict[str, str] = field(default_factory=lambda: dict(APP_PERMISSIONS))
    events: list[str] = field(default_factory=lambda: list(APP_EVENTS))
    suspended: bool = False


@dataclass
class Repository:
    """A repository the App is installed on, with its branches, workflows and secrets."""

    id: int
    owner: str
    name: str
    default_branch: str
    installation_id: int
    ids: Ids
    private: bool = True
    created: int = field(default_factory=now_s)
    branches: set[str] = field(default_factory=set)
    tags: set[str] = field(default_factory=set)
    heads: dict[str, str] = field(default_factory=dict)
    workflows: dict[str, Workflow] = field(default_factory=dict)
    secrets: dict[str, bytes] = field(default_factory=dict)
    secret_times: dict[str, int] = field(default_factory=dict)
    # Environment name -> its secrets' names (upper case) -> when each was set.
    environment_secrets: dict[str, dict[str, int]] = field(default_factory=dict)
    # Environment name -> its protection: {"ghapp_rule": bool, "reviewers": [...],
    # "wait_timer": minutes} (the gate: ghapp as a custom deployment protection rule).
    environments: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.branches.add(self.default_branch)

    @property
    def full_name(self) -> str:
        """``owner/name``."""
        return f"{self.owner}/{self.name}"

    def add_workflow(self, workflow: Workflow) -> Workflow:
        """Add (or replace) a workflow file; gives it an id if it has none."""
        old = self.workflows.get(workflow.file)
        if not workflow.id:
            workflow.id = old.id if old else next(self.ids.workflow)
        self.workflows[workflow.file] = workflow
        return workflow

    def workflow(self, key: str) -> Workflow | None:
        """Find a workflow by file name or numeric id."""
        if key in self.workflows:
            return self.workflows[key]
        for wf in self.workflows.values():
            if str(wf.id) == key:
                return wf
        return None

    def resolve_ref(self, ref: str) -> str | None:
        """The branch or tag a ref names, or None when the repository has no such ref."""
        for prefix, names in (("refs/heads/", self.branches), ("refs/tags/", self.tags)):
            if ref.startswith(prefix):
                short = ref[len(prefix) :]
                return short if short in names else None
        if ref in self.branches or ref in self.tags:
            return ref
        return None

    def head_sha(self, branch: str) -> str:
        """The commit a branch points at (fixed per branch unless set in ``heads``)."""
        return self.heads.get(branch) or sha1_hex(f"{self.full_name}@{branch}")


@dataclass
class StepState:
    """A step as it runs: ``kind`` is ``setup``, ``user`` or ``complete``."""

    number: int
    spec: Step
    kind: str
    status: str = "queued"
    conclusion: str | None = None
    started: int | None = None
    completed: int | None = None
    window: tuple[int, int] = (0, 0)
    lines: list[str] = field(default_factory=list)
    padding: int = 0

    @property
    def name(self) -> str:
        """The step's name."""
        return self.spec.name

    @property
    def has_log(self) -> bool:
        """Steps that ran wrote log lines; skipped and pending ones did not."""
        return self.started is not None and self.conclusion not in ("skipped", None)


@dataclass
class JobState:
    """A job of one run attempt."""

    id: int
    run_id: int
    attempt: int
    spec: Job
    created: int
    status: str = "queued"
    conclusion: str | None = None
    started: int | None = None
    completed: int | None = None
    steps: list[StepState] = field(default_factory=list)
    pivot: int = 0
    # The step the job is in, as shown (the simulator moves it on step by step).
    shown: int = 0
    outcome: str = "success"
    runner_id: int | None = None
    runner_name: str | None = None
    deployment_id: int | None = None
    annotations: list[Annotation] = field(default_factory=list)
    log_requests: int = 0

    @property
    def name(self) -> str:
        """The job's name."""
        return self.spec.name


@dataclass
class RunState:
    """A workflow run; ``jobs`` are the latest attempt's."""

    id: int
    repo: Repository
    workflow: Workflow
    run_number: int
    head_branch: str
    head_sha: str
    display_title: str
    inputs: dict[str, Any]
    created: int
    check_suite_id: int
    event: str = "workflow_dispatch"
    attempt: int = 1
    status: str = "queued"
    conclusion: str | None = None
    updated: int = 0
    run_started: int = 0
    attempts: dict[int, list[JobState]] = field(default_factory=dict)
    cancel_requested: bool = False
    # The workflow's `concurrency` group as rendered for this run; `waiting`: another run of
    # the group holds it, and this one may not start yet.
    group: str | None = None
    waiting: bool = False
    # The gate: who triggered each attempt (absent: the App's bot), each gated environment's
    # state this attempt ("pending", "approved", "rejected") and the deployment made for it.
    actors: dict[int, str] = field(default_factory=dict)
    gates: dict[str, str] = field(default_factory=dict)
    gate_deployments: dict[str, int] = field(default_factory=dict)
    # Environments whose required reviewers this attempt waits for: "pending", "approved"...
    reviews: dict[str, str] = field(default_factory=dict)
    waiting_since: int = 0
    # The reviews given (GET .../approvals): environment, state, reviewer, comment.
    approvals: list[tuple[str, str, str, str]] = field(default_factory=list)

    @property
    def jobs(self) -> list[JobState]:
        """The jobs of the latest attempt."""
        return self.attempts.get(self.attempt, [])


@dataclass
class DeploymentStatusState:
    """One status of a deployment."""

    id: int
    state: str
    created: int
    environment_url: str = ""
    log_url: str = ""
    description: str = ""


@dataclass
class DeploymentState:
    """A deployment a job with an ``environment`` creates when it starts."""

    id: int
    repo: Repository
    sha: str
    ref: str
    environment: str
    created: int
    run_id: int
    job_id: int
    statuses: list[DeploymentStatusState] = field(default_factory=list)

    @property
    def updated(self) -> int:
        """When the latest status was added."""
        return self.statuses[-1].created if self.statuses else self.created


@dataclass
class World:
    """Everything the simulated GitHub holds, plus the URLs its payloads name."""

    app_id: int
    app_slug: str
    app_name: str
    client_id: str
    api_url: str = "http://127.0.0.1"
    web_url: str = "https://github.com"
    ids: Ids = field(default_factory=Ids)
    created: int = field(default_factory=now_s)
    accounts: dict[str, int] = field(default_factory=dict)
    installations: dict[int, Installation] = field(default_factory=dict)
    repos: dict[str, Repository] = field(default_factory=dict)
    runs: dict[int, RunState] = field(default_factory=dict)
    jobs: dict[int, JobState] = field(default_factory=dict)
    deployments: dict[int, DeploymentState] = field(default_factory=dict)
    run_numbers: dict[int, int] = field(default_factory=dict)
    # Uploaded artifacts by id (a run's, in upload order: see ghapp.simulator.artifacts).
    artifacts: dict[int, ArtifactState] = field(default_factory=dict)

    def account_id(self, login: str) -> int:
        """The id of an account (user, organization or bot), made up on first use."""
        if login not in self.accounts:
            self.accounts[login] = next(self.ids.account)
        return self.accounts[login]

    def repo_of(self, owner: str, name: str) -> Repository | None:
        """A repository by owner and name, case-insensitively like GitHub."""
        wanted = f"{owner}/{name}".lower()
        for full_name, repo in self.repos.items():
            if full_name.lower() == wanted:
                return repo
        return None

    def add_repository(
        self, full_name: str, default_branch: str, installation_id: int | None, private: bool
    ) -> Repository:
        """Create a repository; without an installation id it joins its owner's installation."""
        existing = self.repo_of(*full_name.split("/", 1)) if "/" in full_name else None
        if existing is not None:
            return existing
        owner, _, name = full_name.partition("/")
        if not owner or not name or "/" in name:
            raise ValueError(f"repository must be owner/name, got {full_name!r}")
        if installation_id is None:
            found = [i for i in self.installations.values() if i.account == owner]
            installation_id = found[0].id if found else next(self.ids.installation)
        if installation_id not in self.installations:
            self.installations[installation_id] = Installation(installation_id, owner)
        self.account_id(owner)
        repo = Repository(
            id=next(self.ids.repo),
            owner=owner,
            name=name,
            default_branch=default_branch,
            installation_id=installation_id,
            ids=self.ids,
            private=private,
        )
        self.repos[full_name] = repo
        return repo

    def next_run_number(self, workflow: Workflow) -> int:
        """Run numbers count per workflow."""
        self.run_numbers[workflow.id] = self.run_numbers.get(workflow.id, 0) + 1
        return self.run_numbers[workflow.id]
