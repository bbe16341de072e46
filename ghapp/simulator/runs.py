"""How a run moves: queued -> in_progress -> completed, and the webhooks each move sends."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ghapp.simulator import logs, payloads
from ghapp.simulator.artifacts import OUTPUTS_FILE, ArtifactState, outputs_text, zip_of
from ghapp.simulator.clock import now_s
from ghapp.simulator.model import Annotation, Job, Step, Workflow, as_annotation
from ghapp.simulator.state import (
    DeploymentState,
    DeploymentStatusState,
    JobState,
    Repository,
    RunState,
    StepState,
    World,
)

INPUT_REF = re.compile(r"\$\{\{\s*inputs\.([A-Za-z0-9_-]+)\s*\}\}")
RUN_ID_REF = re.compile(r"\$\{\{\s*github\.run_id\s*\}\}")
STEP_END = {"success": "success", "failure": "failure", "cancelled": "cancelled",
            "timed_out": "cancelled"}


@dataclass
class Outgoing:
    """A webhook to send; ``closes_run`` marks a run's last one (for the reorder fault)."""

    event: str
    action: str | None
    payload: dict[str, Any]
    run_id: int | None = None
    closes_run: bool = False
    lost: bool = False


def _lost(run: RunState, event: str, action: str | None) -> bool:
    """Whether the run's workflow says this webhook never arrives."""
    names = run.workflow.lose_webhooks
    return bool(names) and (event in names or f"{event}.{action}" in names)


def display_title(wf: Workflow, inputs: dict[str, Any]) -> str:
    """The run's title: ``run-name`` rendered, or the workflow's name when inputs are missing."""
    template = wf.run_name
    if not template:
        return wf.name
    if any(name not in inputs for name in INPUT_REF.findall(template)):
        return wf.name
    rendered = INPUT_REF.sub(lambda m: str(inputs[m.group(1)]), template).strip()
    return rendered or wf.name


def render_group(wf: Workflow, inputs: dict[str, Any]) -> str:
    """The run's concurrency group: the workflow's template with inputs (or their defaults)."""
    return render_inputs(wf, inputs, wf.concurrency or "")


def render_inputs(wf: Workflow, inputs: dict[str, Any], template: str) -> str:
    """A template with `${{ inputs.NAME }}` replaced by the inputs (or their defaults)."""
    specs = wf.input_specs()

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in inputs:
            return str(inputs[name])
        return str(specs.get(name, {}).get("default", ""))

    return INPUT_REF.sub(value, template)


def render_for_run(run: RunState, template: str) -> str:
    """A job's `environment` or its URL, with `${{ inputs.NAME }}` and `${{ github.run_id }}`
    (as a workflow writes `environment: ${{ inputs.environment }}`)."""
    text = render_inputs(run.workflow, run.inputs, template)
    return RUN_ID_REF.sub(str(run.id), text)


def plan_steps(job: Job) -> list[StepState]:
    """The job's steps with GitHub's "Set up job" and "Complete job" around the scripted ones."""
    specs = list(job.steps)
    if not specs or specs[0].name != "Set up job":
        specs.insert(0, Step("Set up job"))
    if len(specs) == 1 or specs[-1].name != "Complete job":
        specs.append(Step("Complete job"))
    last = len(specs) - 1
    return [
        StepState(i + 1, spec, "setup" if i == 0 else "complete" if i == last else "user")
        for i, spec in enumerate(specs)
    ]


class RunPlayer:
    """Moves runs through their phases; every move returns the webhooks to send, in order."""

    def __init__(self, world: World) -> None:
        self.world = world

    # -- payloads -------------------------------------------------------------------------

    def _run_event(self, run: RunState, action: str, closes: bool = False) -> Outgoing:
        body = payloads.envelope(
            self.world, run.repo, action,
            workflow=payloads.run_workflow(self.world, run),
            workflow_run=payloads.workflow_run(self.world, run),
        )
        return Outgoing("workflow_run", action, body, run.id, closes,
                        _lost(run, "workflow_run", action))

    def _job_event(self, run: RunState, job: JobState, action: str) -> Outgoing:
        body = payloads.envelope(
            self.world, run.repo, action,
            workflow_job=payloads.job(self.world, run, job, webhook=True),
        )
        return Outgoing("workflow_job", action, body, run.id,
                        lost=_lost(run, "workflow_job", action))

    def _status_event(self, run: RunState, dep: DeploymentState) -> Outgoing:
        body = payloads.envelope(
            self.world, run.repo, "created",
            deployment_status=payloads.deployment_status(self.world, dep, dep.statuses[-1]),
            deployment=payloads.deployment(self.world, dep),
            workflow=payloads.run_workflow(self.world, run),
            workflow_run=payloads.workflow_run(self.world, run),
        )
        return Outgoing("deployment_status", "created", body, run.id,
                        lost=_lost(run, "deployment_status", "created"))

    # -- runs -----------------------------------------------------------------------------

    def _new_jobs(self, run: RunState, attempt: int, now: int) -> list[JobState]:
        specs = run.workflow.job_specs()
        jobs = []
        for spec in specs:
            job = JobState(next(self.world.ids.job), run.id, attempt, spec, created=now)
            self.world.jobs[job.id] = job
            jobs.append(job)
        return jobs

    def create_run(self, repo: Repository, wf: Workflow, branch: str,
                   inputs: dict[str, Any]) -> tuple[RunState, list[Outgoing]]:
        """A dispatched run, queued: ``workflow_run.requested`` and each job's ``queued``."""
        now = now_s()
        run = RunState(
            id=next(self.world.ids.run), repo=repo, workflow=wf,
            run_number=self.world.next_run_number(wf), head_branch=branch,
            head_sha=repo.head_sha(branch), display_title=display_title(wf, inputs),
            inputs=dict(inputs), created=now, check_suite_id=next(self.world.ids.check_suite),
            updated=now, run_started=now,
        )
        run.attempts[1] = self._new_jobs(run, 1, now)
        self.world.runs[run.id] = run
        events = self._queued_events(run)
        if wf.concurrency:
            run.group = render_group(wf, inputs)
            events += self._enter_group(run)
        return run, events

    # -- concurrency groups (cancel-in-progress: false) -----------------------------------

    def _group_runs(self, run: RunState) -> list[RunState]:
        return [
            other for other in self.world.runs.values()
            if other is not run and other.group == run.group and other.status != "completed"
        ]

    def _enter_group(self, run: RunState) -> list[Outgoing]:
        """A run joins its group: it waits if another holds the group, and GitHub keeps only
        the newest waiting run, cancelling an older one before it starts."""
        others = self._group_runs(run)
        if not others:
            return []
        run.waiting = True
        events: list[Outgoing] = []
        for older in others:
            if older.waiting:
                events += self.cancel_waiting(older)
        return events

    def cancel_waiting(self, run: RunState) -> list[Outgoing]:
        """Cancel a waiting run for a newer one of its group, with GitHub's annotation."""
        events = self.cancel(run)
        message = (f"Canceling since a higher priority waiting request for '{run.group}' "
                   "exists")
        for job in run.jobs:
            job.annotations = [Annotation(message, "failure")]
        return events

    def _leave_group(self, run: RunState) -> None:
        """A run of a group completed: the run waiting in the group (at most one) may start."""
        if run.group is None:
            return
        for other in self._group_runs(run):
            if other.waiting:
                other.waiting = False
                other.run_started = max(other.run_started, run.updated)

    def _queued_events(self, run: RunState) -> list[Outgoing]:
        events = [self._run_event(run, "requested")]
        events += [self._job_event(run, job, "queued") for job in run.jobs]
        return events

    def rerun(self, run: RunState) -> list[Outgoing]:
        """A new attempt of a completed run, queued, following the file's current script."""
        now = max(now_s(), run.updated)
        run.workflow = run.repo.workflows.get(run.workflow.file, run.workflow)
        run.attempt += 1
        run.status, run.conclusion, run.cancel_requested = "queued", None, False
        run.run_started = run.updated = now
        run.attempts[run.attempt] = self._new_jobs(run, run.attempt, now)
        return self._queued_events(run)

    def begin(self, run: RunState, *, stepwise: bool = False) -> list[Outgoing]:
        """queued -> in_progress: the run starts, and so do the jobs that need nothing.

        At once, each job is busy in its last scripted step; `stepwise`, in its first, and
        `step` moves it on (a `workflow_job.in_progress` each time, as GitHub shows it)."""
        now = max(now_s(), run.run_started)
        run.status, run.updated = "in_progress", now
        events = [self._run_event(run, "in_progress")]
        for job in run.jobs:
            if not job.spec.needs:
                events += self._begin_job(run, job, now, stepwise=stepwise)
        return events

    def step(self, run: RunState) -> list[Outgoing]:
        """Each running job finishes its current step and starts the next (none: nothing left)."""
        events = []
        for job in run.jobs:
            if job.status == "in_progress" and job.shown < job.pivot:
                self._reveal(job, job.shown + 1)
                events.append(self._job_event(run, job, "in_progress"))
        return events

    def complete(self, run: RunState) -> list[Outgoing]:
        """in_progress -> completed: every job ends (jobs with ``needs`` run or are skipped)."""
        events: list[Outgoing] = []
        by_name = {job.name: job for job in run.jobs}
        pending = [job for job in run.jobs if job.status != "completed"]
        while pending:
            progressed = False
            for job in list(pending):
                needed = [by_name[n] for n in job.spec.needs if n in by_name]
                if any(n.status != "completed" for n in needed if n is not job):
                    continue
                pending.remove(job)
                progressed = True
                if job.status == "in_progress":
                    events += self._complete_job(run, job)
                    continue
                start = max([n.completed or 0 for n in needed] + [run.updated])
                if run.cancel_requested:
                    self._end_unstarted(job, "cancelled", max(start, now_s()))
                    events.append(self._job_event(run, job, "completed"))
                elif all(n.conclusion == "success" for n in needed):
                    events += self._begin_job(run, job, start)
                    events += self._complete_job(run, job)
                else:
                    self._end_unstarted(job, "skipped", start)
                    events.append(self._job_event(run, job, "completed"))
            if not progressed:  # a cycle in needs: GitHub refuses such files; skip them
                for job in pending:
                    self._end_unstarted(job, "skipped", run.updated)
                    events.append(self._job_event(run, job, "completed"))
                pending = []
        run.status = "completed"
        run.conclusion = self._run_conclusion(run)
        run.updated = max([now_s(), run.updated] + [j.completed or 0 for j in run.jobs])
        self._leave_group(run)
        events.append(self._run_event(run, "completed", closes=True))
        return events

    def cancel(self, run: RunState) -> list[Outgoing]:
        """Cancel a run that has not completed: its running steps end ``cancelled``."""
        run.cancel_requested = True
        if run.status in ("queued", "waiting"):
            now = max(now_s(), run.created)
            events = []
            for job in run.jobs:
                self._end_unstarted(job, "cancelled", now)
                events.append(self._job_event(run, job, "completed"))
            run.status, run.conclusion, run.updated = "completed", "cancelled", now
            if not run.waiting:
                self._leave_group(run)
            run.waiting = False
            events.append(self._run_event(run, "completed", closes=True))
            return events
        for job in run.jobs:
            if job.status == "in_progress":
                job.outcome = "cancelled"
        return self.complete(run)

    def reject(self, run: RunState, message: str) -> list[Outgoing]:
        """A waiting run a protection rule (or a reviewer) rejected: it ends `failure` without
        starting, its jobs annotated with the reason, as GitHub ends it."""
        now = max(now_s(), run.created)
        events = []
        for job in run.jobs:
            self._end_unstarted(job, "failure", now)
            job.annotations = [Annotation(message, "failure")]
            events.append(self._job_event(run, job, "completed"))
        run.status, run.conclusion, run.updated = "completed", "failure", now
        if not run.waiting:
            self._leave_group(run)
        run.waiting = False
        events.append(self._run_event(run, "completed", closes=True))
        return events

    @staticmethod
    def _run_conclusion(run: RunState) -> str:
        found = {job.conclusion for job in run.jobs}
        if run.cancel_requested or "cancelled" in found:
            return "cancelled"
        for conclusion in ("timed_out", "failure"):
            if conclusion in found:
                return conclusion
        return "success"

    # -- jobs -----------------------------------------------------------------------------

    def _end_unstarted(self, job: JobState, conclusion: str, when: int) -> None:
        job.status, job.conclusion = "completed", conclusion
        job.started = job.completed = when
        job.steps = []

    @staticmethod
    def _reveal(job: JobState, current: int) -> None:
        """Steps before `current` done (as planned), `current` running, the rest queued."""
        job.shown = current
        for i, step in enumerate(job.steps):
            if i < current:
                step.status, step.conclusion = "completed", "success"
                step.started, step.completed = step.window
            elif i == current:
                step.status, step.conclusion = "in_progress", None
                step.started, step.completed = step.window[0], None
            else:
                step.status, step.conclusion, step.started, step.completed = (
                    "queued", None, None, None)

    def _begin_job(self, run: RunState, job: JobState, start: int,
                   stepwise: bool = False) -> list[Outgoing]:
        job.steps = plan_steps(job.spec)
        flagged = [i for i, s in enumerate(job.steps[:-1]) if s.spec.fail or s.spec.cancelled]
        if run.workflow.timeout:
            job.pivot = flagged[0] if flagged else max(len(job.steps) - 2, 0)
            job.outcome = "timed_out"
        elif flagged:
            job.pivot = flagged[0]
            job.outcome = "cancelled" if job.steps[job.pivot].spec.cancelled else "failure"
        else:
            job.pivot, job.outcome = max(len(job.steps) - 2, 0), "success"
        job.status, job.started = "in_progress", start
        job.runner_id = 1 + job.id % 20
        job.runner_name = f"GitHub Actions {job.runner_id}"
        padded = max(job.pivot - 1, 0)
        t = start
        for i, step in enumerate(job.steps[: job.pivot + 1]):
            step.padding = job.spec.log_padding_bytes if i == padded else 0
            step.conclusion = "success" if i < job.pivot else STEP_END[job.outcome]
            step.lines = logs.step_lines(run, job, step)
            seconds = logs.step_seconds(len(step.lines), step.padding)
            step.window = (t, t + seconds)
            t += seconds
        for step in job.steps[job.pivot + 1 :]:
            step.window = (t, t + 1) if step.kind == "complete" else (t, t)
        self._reveal(job, 0 if stepwise else job.pivot)
        events = [self._job_event(run, job, "in_progress")]
        if job.spec.environment:
            environment = render_for_run(run, job.spec.environment)
            # A gated environment's deployment was made when the gate was asked: reused.
            made = self.world.deployments.get(run.gate_deployments.get(environment, 0))
            dep = made or DeploymentState(
                id=next(self.world.ids.deployment), repo=run.repo, sha=run.head_sha,
                ref=run.head_branch, environment=environment,
                created=start,
                run_id=run.id, job_id=job.id,
            )
            self.world.deployments[dep.id] = dep
            job.deployment_id = dep.id
            self._add_status(run, job, dep, "in_progress", start)
            events.append(self._status_event(run, dep))
        return events

    def _add_status(self, run: RunState, job: JobState, dep: DeploymentState, state: str,
                    when: int) -> None:
        url = f"{self.world.web_url}/{run.repo.full_name}/actions/runs/{run.id}/job/{job.id}"
        env_url = render_for_run(run, job.spec.environment_url or "") if state == "success" else ""
        dep.statuses.append(DeploymentStatusState(
            next(self.world.ids.deployment_status), state, when, env_url, url))

    def _complete_job(self, run: RunState, job: JobState) -> list[Outgoing]:
        self._reveal(job, job.pivot)
        pivot = job.steps[job.pivot]
        pivot.status, pivot.conclusion = "completed", STEP_END[job.outcome]
        pivot.completed = pivot.window[1]
        pivot.lines = logs.step_lines(run, job, pivot)
        for step in job.steps[job.pivot + 1 :]:
            step.status = "completed"
            step.started, step.completed = step.window
            if step.kind == "complete":
                step.conclusion = "success"
                step.lines = logs.step_lines(run, job, step)
            else:
                step.conclusion = "skipped"
        job.status, job.conclusion = "completed", job.outcome
        job.completed = job.steps[-1].window[1]
        job.annotations = self._annotations(run, job)
        self._upload_outputs(run, job)
        events = []
        if job.deployment_id is not None:
            dep = self.world.deployments[job.deployment_id]
            state = "success" if job.outcome == "success" else "failure"
            self._add_status(run, job, dep, state, job.completed)
            events.append(self._status_event(run, dep))
        events.append(self._job_event(run, job, "completed"))
        return events

    def _upload_outputs(self, run: RunState, job: JobState) -> None:
        # The template's last step, `if: always()`: the $GHAPP_OUTPUTS file as an artifact.
        spec = job.spec
        if spec.outputs is None and spec.outputs_text is None:
            return
        text = spec.outputs_text if spec.outputs_text is not None else outputs_text(
            dict(spec.outputs or {}))
        artifact = ArtifactState(next(self.world.ids.artifact), run.id, spec.outputs_artifact,
                                 zip_of({OUTPUTS_FILE: text.encode()}), job.completed or 0)
        self.world.artifacts[artifact.id] = artifact

    def _annotations(self, run: RunState, job: JobState) -> list[Annotation]:
        found: list[Annotation] = []
        for step in job.steps:
            if not step.has_log:
                continue
            found += [as_annotation(a) for a in step.spec.annotations]
            if step.conclusion == "failure":
                found.append(Annotation(step.spec.failure_message, "failure"))
            elif step.conclusion == "cancelled" and job.outcome == "timed_out":
                message = logs.timeout_message(job, run.workflow.timeout_minutes)
                found.append(Annotation(message, "failure"))
            elif step.conclusion == "cancelled":
                found.append(Annotation(logs.CANCELED, "failure"))
        found += [as_annotation(a) for a in job.spec.annotations]
        return found
