"""The run's outputs in the verdict, over real HTTP: the request names them, the job uploads the
`ghapp-outputs` artifact, ghapp lists it, follows GitHub's 302 to the storage host without the
token and reads the zip, bounded; a deployment that named none costs no artifact call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ghapp.core import outputs
from ghapp.core.models import DeploymentRequest
from ghapp.simulator import Job, Step, Workflow
from ghapp.simulator.stack import Stack

DIGEST = "sha256:" + "ab" * 32


def workflow(*, fail: bool = False, **job: object) -> Workflow:
    steps = [Step("Build"), Step("Deploy", command="./deploy.sh", fail=fail)]
    return Workflow(
        file="deploy.yml",
        name="Deploy",
        jobs=[Job(name="deploy", steps=steps, environment="production",
                  environment_url="https://out.example.com", **job)],  # type: ignore[arg-type]
    )


@pytest.fixture
async def outputs_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    stack = await Stack.start(f"sqlite:///{tmp_path / 'ghapp.db'}")
    repos = {
        "acme/out": workflow(outputs={"image_digest": DIGEST, "version": "1.2.3"}),
        "acme/outfail": workflow(fail=True, outputs={"version": "9.9"}),
        "acme/none": workflow(),
        "acme/big": workflow(outputs_text="version=1\n" + "x" * (70 * 1024) + "\n"),
        "acme/nasty": workflow(
            outputs_text="color=\x1b[31mred\x07\nversion=1\nversion=2=two\nnoeq\n"
        ),
    }
    # Two jobs, each uploading `ghapp-outputs-<job>` (upload-artifact refuses one name twice).
    repos["acme/multi"] = Workflow(file="deploy.yml", name="Deploy", jobs=[
        Job(name="build", steps=[Step("Build")], outputs_artifact="ghapp-outputs-build",
            outputs={"image_digest": DIGEST, "version": "from-build"}),
        Job(name="deploy", steps=[Step("Deploy")], needs=["build"],
            outputs_artifact="ghapp-outputs-deploy", outputs={"version": "from-deploy"}),
    ])
    for repository, wf in repos.items():
        stack.sim.add_repository(repository, default_branch="main").add_workflow(wf)
    yield stack
    await stack.close()


async def verdict_of(stack: Stack, repository: str, **body: object) -> dict[str, object]:
    status, answer = await stack.deploy(repository, **body)
    assert status == 202, answer
    callback = await stack.receiver.wait_for(answer["id"])
    return dict(callback.deployment["verdict"])


async def test_asked_and_present_outputs_come_back_and_the_token_stays_off_storage(
    outputs_stack: Stack,
) -> None:
    stack = outputs_stack
    verdict = await verdict_of(stack, "acme/out", outputs=["image_digest", "version"])
    assert verdict["status"] == "success"
    assert verdict["outputs"] == {"image_digest": DIGEST, "version": "1.2.3"}
    assert "Missing" not in str(verdict["summary"])
    # GitHub's 302 was followed to the storage host (another origin), without the token.
    storage = [r for r in stack.sim.requests if r.origin == "logs" and "/artifacts/" in r.path]
    assert len(storage) == 1 and storage[0].status == 200
    assert "Authorization" not in storage[0].headers
    assert stack.sim.log_auth_violations == 0
    assert stack.sim.api_calls(path="/artifacts") == 2  # the listing and the zip's 302


async def test_the_redirect_to_another_host_is_followed_without_the_token(
    outputs_stack: Stack,
) -> None:
    stack = outputs_stack
    # GitHub's storage host by another name than the API's.
    stack.sim.log_url = stack.sim.log_url.replace("127.0.0.1", "localhost")
    verdict = await verdict_of(stack, "acme/out", outputs=["version"])
    assert verdict["outputs"] == {"version": "1.2.3"}
    [storage] = [r for r in stack.sim.requests if r.origin == "logs" and "/artifacts/" in r.path]
    assert storage.headers["Host"].startswith("localhost:")
    assert "Authorization" not in storage.headers
    # The API's own calls all carried the installation token.
    api = [r for r in stack.sim.requests if r.origin == "api" and "/artifacts" in r.path]
    assert api and all(r.headers["Authorization"].startswith("token ") for r in api)


async def test_an_expired_storage_url_is_a_missing_output_not_a_crash(
    outputs_stack: Stack,
) -> None:
    stack = outputs_stack
    stack.sim.log_url_ttl = -5  # GitHub's signed URL has expired by the time it is used
    verdict = await verdict_of(stack, "acme/out", outputs=["version"])
    assert verdict["status"] == "success" and verdict["outputs"] == {}
    assert "answered 403" in str(verdict["summary"])


async def test_every_jobs_artifact_is_read_in_creation_order(outputs_stack: Stack) -> None:
    verdict = await verdict_of(outputs_stack, "acme/multi", outputs=["image_digest", "version"])
    assert verdict["outputs"] == {"image_digest": DIGEST, "version": "from-deploy"}


async def test_a_failed_run_reports_its_outputs_too(outputs_stack: Stack) -> None:
    verdict = await verdict_of(outputs_stack, "acme/outfail", outputs=["version"])
    assert verdict["status"] == "failure"
    assert verdict["outputs"] == {"version": "9.9"}


async def test_asked_and_missing_names_are_absent_and_the_summary_says_which(
    outputs_stack: Stack,
) -> None:
    verdict = await verdict_of(outputs_stack, "acme/out", outputs=["version", "migration"])
    assert verdict["outputs"] == {"version": "1.2.3"}
    assert "Missing output: `migration`." in str(verdict["summary"])
    # A run that uploaded nothing: every name missing, and why.
    verdict = await verdict_of(outputs_stack, "acme/none", outputs=["version"])
    assert verdict["status"] == "success" and verdict["outputs"] == {}
    assert "Missing output: `version` (the run uploaded no `ghapp-outputs` artifact)." in str(
        verdict["summary"]
    )


async def test_not_asked_costs_no_artifact_call(outputs_stack: Stack) -> None:
    stack = outputs_stack
    verdict = await verdict_of(stack, "acme/out")
    assert verdict["status"] == "success" and verdict["outputs"] == {}
    assert stack.sim.api_calls(path="/artifacts") == 0
    assert stack.sim.api_calls("logs", path="/artifacts") == 0


async def test_an_artifact_over_64_kib_is_refused(outputs_stack: Stack) -> None:
    verdict = await verdict_of(outputs_stack, "acme/big", outputs=["version"])
    assert verdict["status"] == "success"
    assert verdict["outputs"] == {}
    assert "over 64 KiB" in str(verdict["summary"])
    assert "Missing output: `version`" in str(verdict["summary"])


async def test_values_are_cleaned_and_later_lines_win(outputs_stack: Stack) -> None:
    verdict = await verdict_of(outputs_stack, "acme/nasty", outputs=["version", "color"])
    assert verdict["outputs"] == {"version": "2=two", "color": "red"}


def test_names_are_checked_and_bounded() -> None:
    assert DeploymentRequest(repository="a/b").outputs == []
    with pytest.raises(ValueError, match="at most 20"):
        DeploymentRequest(repository="a/b", outputs=[f"n{i}" for i in range(21)])
    with pytest.raises(ValueError, match="pattern"):
        DeploymentRequest(repository="a/b", outputs=["a=b"])
    with pytest.raises(ValueError, match="at most once"):
        DeploymentRequest(repository="a/b", outputs=["a", "a"])


def test_parse_and_pick() -> None:
    found = outputs.parse(["a=1\nb = x=y\n", "a=2\n\njunk\n"])
    assert found == {"a": "2", "b": " x=y"}
    assert outputs.pick({"a": "v" * 5000}, ["a", "z"]) == {"a": "v" * 1000}
    assert outputs.is_outputs_artifact("ghapp-outputs-build")
    assert not outputs.is_outputs_artifact("ghapp-outputsx")


async def test_the_page_and_watch_show_outputs_as_quoted_remote_text(
    outputs_stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    from ghapp.cli.deploy import verdict_lines
    from ghapp.core.models import Deployment

    stack = outputs_stack
    _, answer = await stack.deploy("acme/nasty", outputs=["color", "version"])
    await stack.receiver.wait_for(answer["id"])
    assert stack.session is not None
    async with stack.session.get(
        f"{stack.base_url}/deployments/{answer['id']}", headers=stack.auth
    ) as response:
        html = await response.text()
    assert '<code class="output-value">red</code>' in html
    assert "\x1b" not in html
    _, body = await stack.get(f"/api/v1/deployments/{answer['id']}")
    deployment = Deployment.model_validate(body)
    # An older server's text, or a value with markup: printed cleaned and quoted.
    deployment.verdict.outputs["x"] = "`a`\x1b]0;title\x07 b"  # type: ignore[union-attr]
    assert verdict_lines(deployment) == 0
    out = capsys.readouterr().out
    assert "output color = `red`" in out
    assert "output version = `2=two`" in out
    assert "output x = `` `a` b ``" in out
    assert "\x1b" not in out


async def test_the_sandbox_scenario_client_and_agent_verdict_carry_outputs(
    ghapp_sandbox: object,
) -> None:
    from ghapp.langgraph import agent_verdict

    sandbox: Any = ghapp_sandbox
    sandbox.scenario("acme/kit", outputs={"image_digest": DIGEST}, after_seconds=0.2)
    async with sandbox.client() as client:
        deployment = await client.deploy("acme/kit", outputs=["image_digest", "version"])
        done = await client.wait(deployment.id, timeout=20, interval=0.1)
    assert done.verdict is not None and done.verdict.outputs == {"image_digest": DIGEST}
    verdict = agent_verdict(done)
    assert verdict["outputs"] == {"image_digest": DIGEST}
    assert "Missing output: `version`" in verdict["summary"]


async def test_ghapp_deploy_output_watch_prints_them(outputs_stack: Stack, tmp_path: Path) -> None:
    from test_cli_deploy import ghapp

    code, out = await ghapp(
        outputs_stack, tmp_path, "deploy", "acme/out", "--output", "version", "--output",
        "image_digest", "--watch",
    )
    assert code == 0, out
    assert f"output image_digest = `{DIGEST}`" in out.splitlines()
    assert "output version = `1.2.3`" in out.splitlines()


def test_the_state_machine_waits_for_asked_outputs_and_says_when_none_came() -> None:
    """Pure core: a success whose URL webhook came first still reads its outputs; past the
    report deadline the verdict goes without them and the summary says so."""
    from test_deploys import T0, at, env, run

    from ghapp.core import deploys
    from ghapp.core.deploys import DeadlinesChecked, DeployedUrlFound, FindDeployedUrl

    record = deploys.new_deployment(
        "dep_1", DeploymentRequest(repository="acme/shop", outputs=["version"]), ref="main",
        callback_url="http://orch.test/cb", installation_id=7, run_id=4242, html_url=None, now=T0,
    )
    record = deploys.apply(record, env()).record
    done = deploys.apply(record, run("completed", "success", t=3))
    assert done.record.phase == "concluding"
    assert done.actions == [FindDeployedUrl(run_id=4242, head_sha="abc123")]
    read = deploys.apply(done.record, DeployedUrlFound(
        url=None, at=at(4), outputs={"version": "7", "other": "x"}, outputs_problem=None
    )).record
    assert read.verdict is not None and read.verdict.outputs == {"version": "7"}
    assert read.verdict.deployed_url == "https://shop.example.com"
    late = deploys.apply(done.record, DeadlinesChecked(
        at=at(10_000), run_lookup_timeout=600, run_timeout=21600, report_timeout=300
    )).record
    assert late.verdict is not None and late.verdict.outputs == {}
    assert late.verdict.summary.endswith(
        "Missing output: `version` (not read before the verdict)."
    )
