"""Repository files the simulator serves: the workflow YAML a Workflow script stands for."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

from ghapp.simulator.model import Job, Workflow
from ghapp.simulator.state import Repository


def _q(value: Any) -> str:
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(value)


def job_key(job: Job) -> str:
    """The job's id in the YAML (``deploy (prod, 3.11)`` -> ``deploy-prod-3-11``)."""
    return re.sub(r"[^a-z0-9_]+", "-", job.name.lower()).strip("-") or "job"


def workflow_yaml(wf: Workflow) -> str:
    """The workflow file's text, declaring the inputs the script declares."""
    if wf.content is not None:
        return wf.content
    lines = [f"name: {_q(wf.name)}"]
    if wf.run_name:
        lines.append(f"run-name: {_q(wf.run_name)}")
    lines.append("on:")
    if wf.dispatchable:
        specs = wf.input_specs()
        lines.append("  workflow_dispatch:" if specs else "  workflow_dispatch: {}")
        if specs:
            lines.append("    inputs:")
            for name, spec in specs.items():
                lines.append(f"      {name}:")
                if not spec:
                    lines.append("        required: false")
                for key, value in spec.items():
                    lines.append(f"        {key}: {_q(value)}")
    else:
        lines += ["  push:", "    branches: [main]"]
    lines += ["permissions:", "  contents: read", "  deployments: write", "jobs:"]
    jobs = wf.job_specs()
    keys = {job.name: job_key(job) for job in jobs}
    for job in jobs:
        lines += [f"  {keys[job.name]}:", f"    name: {_q(job.name)}",
                  f"    runs-on: {job.runs_on}"]
        if wf.timeout_minutes != 360:
            lines.append(f"    timeout-minutes: {wf.timeout_minutes}")
        if job.needs:
            lines.append(f"    needs: [{', '.join(keys.get(n, n) for n in job.needs)}]")
        if job.environment:
            lines += ["    environment:", f"      name: {_q(job.environment)}"]
            if job.environment_url:
                lines.append(f"      url: {_q(job.environment_url)}")
        lines.append("    steps:")
        user_steps = [s for s in job.steps if s.name not in ("Set up job", "Complete job")]
        if not user_steps:
            lines.append("      - run: 'true'")
        for step in user_steps:
            if step.is_action:
                lines.append(f"      - uses: {step.run_command}")
                if step.name != f"Run {step.run_command}":
                    lines.append(f"        name: {_q(step.name)}")
                continue
            lines.append(f"      - name: {_q(step.name)}")
            command = step.run_command
            if "\n" in command:
                lines.append("        run: |")
                lines += [f"          {text}" for text in command.splitlines()]
            else:
                lines.append(f"        run: {_q(command)}")
    return "\n".join(lines) + "\n"


def git_blob_sha(data: bytes) -> str:
    """The git blob id of a file's bytes."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def contents_json(api_url: str, web_url: str, repo: Repository, ref: str, path: str,
                  text: str) -> dict[str, Any]:
    """``GET /repos/{o}/{r}/contents/{path}`` for a file."""
    data = text.encode()
    sha = git_blob_sha(data)
    encoded = base64.encodebytes(data).decode()
    api = f"{api_url}/repos/{repo.full_name}"
    html = f"{web_url}/{repo.full_name}/blob/{ref}/{path}"
    return {
        "type": "file",
        "encoding": "base64",
        "size": len(data),
        "name": path.rsplit("/", 1)[-1],
        "path": path,
        "content": encoded,
        "sha": sha,
        "url": f"{api}/contents/{path}?ref={ref}",
        "git_url": f"{api}/git/blobs/{sha}",
        "html_url": html,
        "download_url": f"https://raw.githubusercontent.com/{repo.full_name}/{ref}/{path}",
        "_links": {"self": f"{api}/contents/{path}?ref={ref}", "git": f"{api}/git/blobs/{sha}",
                   "html": html},
    }
