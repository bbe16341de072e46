"""`ghapp demo`: the whole loop on this machine against the embedded GitHub simulator."""

from __future__ import annotations

import io
import logging
import secrets
import sys
import tempfile
import textwrap
import time
from dataclasses import replace
from typing import TextIO

from ghapp.core.untrusted import clean
from ghapp.simulator import Workflow
from ghapp.simulator.receiver import ReceivedCallback
from ghapp.simulator.scenarios import Scenario, workflow_for
from ghapp.simulator.stack import Stack

DEMO_TIMEOUT = 45.0


def demo_workflows() -> dict[str, Workflow]:
    """The two repositories of the demo, each running the jobs and steps of the template's
    deploy.yml (`ghapp template deploy`): one deploy that works, one whose server refuses the
    SSH connection."""
    shop = workflow_for("acme/shop", Scenario(url="https://shop.example.com", after_seconds=1.5))
    api = workflow_for(
        "acme/api",
        Scenario(
            outcome="failure",
            after_seconds=1.5,
            log=[
                "Pulling ghcr.io/acme/api on deploy@203.0.113.10",
                "ssh: connect to host 203.0.113.10 port 22: Connection refused",
            ],
        ),
    )
    # ssh's own exit status when it cannot connect; and a one-line script in place of the
    # template's twenty, so that the excerpt the demo (and a stack's failure) shows stays short.
    job = api.jobs[0]
    steps = [
        replace(s, error="Process completed with exit code 255.", command="./deploy.sh")
        if s.fail else s
        for s in job.steps
    ]
    api.jobs = [replace(job, steps=steps)]
    # At the pace of the simulator's step_delay, as the demo and the tests' stacks set it.
    return {
        "acme/shop": replace(shop, phase_delay=None),
        "acme/api": replace(api, phase_delay=None),
    }


def describe(callback: ReceivedCallback, out: TextIO) -> None:
    """Print one verdict readably: one line with its status, then the details, cleaned."""
    text = io.StringIO()
    _describe(callback, text)
    # The verdict quotes the job's names and log: nothing reaches the terminal uncleaned.
    out.write(clean(text.getvalue()))


def _describe(callback: ReceivedCallback, out: TextIO) -> None:
    deployment = callback.deployment
    verdict = deployment.get("verdict") or {}
    run = deployment.get("run") or {}
    status = verdict.get("status", "?")
    signature = "signature ok" if callback.signature_ok else "SIGNATURE WRONG"
    head = f"  {status:<8} {deployment['repository']:<10} run {run.get('id')}"
    if status == "success":
        out.write(f"{head}  deployed to {verdict.get('deployed_url')}  [{signature}]\n")
        return
    out.write(f"{head}  reason={verdict.get('reason')}  [{signature}]\n")
    out.write(f"           {verdict.get('summary')}\n")
    cause = verdict.get("cause") or {}
    if cause:
        retry = "retryable" if cause.get("retryable") else "not retryable"
        rule = cause.get("rule")
        out.write(f"           cause: {cause.get('category')} ({retry}, rule {rule})\n")
        out.write(f"           hint:  {cause.get('hint')}\n")
    for job in verdict.get("failed_jobs") or []:
        step = job.get("failed_step") or {}
        out.write(
            f"           job '{job['name']}' step {step.get('number')} '{step.get('name')}'"
            f"  {job.get('html_url')}\n"
        )
        excerpt = (job.get("log_excerpt") or "").strip()
        if excerpt:
            out.write(textwrap.indent(excerpt, "           | ") + "\n")


async def run_demo(*, verbose: bool = False, out: TextIO | None = None) -> int:
    """Run the demo; 0 when both verdicts arrived, signed."""
    # Looked up now, not at import: whoever runs the demo may have replaced sys.stdout.
    out = out or sys.stdout
    # Quiet while it runs, and as it was afterwards: the caller's logging is not the demo's.
    ghapp_log = logging.getLogger("ghapp")
    level = ghapp_log.level
    if not verbose:
        ghapp_log.setLevel(logging.WARNING)
    try:
        return await _demo(out)
    finally:
        ghapp_log.setLevel(level)


async def _demo(out: TextIO) -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ghapp-demo-") as tmp:
        stack = await Stack.start(
            f"sqlite:///{tmp}/ghapp.db", step_delay=0.15, callback_retry_base=1.0
        )
        try:
            for repository, workflow in demo_workflows().items():
                stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
            out.write(
                "ghapp demo: everything runs on this machine; no GitHub account is used.\n"
                f"  GitHub simulator    {stack.sim.api_url}  (job logs on {stack.sim.log_url})\n"
                f"  ghapp               {stack.base_url}"
                f"  (webhooks at {stack.settings.webhook_path})\n"
                f"  orchestrator        {stack.receiver.url}\n\n"
                "Deploying acme/shop (succeeds) and acme/api (its SSH step fails)...\n"
            )
            deployments = []
            for repository in demo_workflows():
                status, body = await stack.deploy(
                    repository,
                    inputs={"environment": "production"},
                    headers={"Idempotency-Key": secrets.token_hex(8)},
                )
                if status != 202:
                    raise RuntimeError(f"deploying {repository}: {status} {body}")
                deployments.append(body)
                run_id = (body.get("run") or {}).get("id")
                out.write(f"  {body['id']}  {repository:<10} {body['state']}, run {run_id}\n")
            out.write("\nVerdicts, as the orchestrator received them:\n")
            callbacks = [await stack.receiver.wait_for(d["id"], DEMO_TIMEOUT) for d in deployments]
            for callback in callbacks:
                describe(callback, out)
            out.write(f"\nDone in {time.monotonic() - started:.1f} s.\n")
            return 0 if all(c.signature_ok for c in callbacks) else 1
        except TimeoutError:
            out.write("ghapp demo: no verdict arrived in time (run with --verbose to see why)\n")
            return 1
        finally:
            await stack.close()
