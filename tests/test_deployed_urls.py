"""The `deployed_url` of successes reconciliation finds: read in batches through GitHub's
GraphQL API (the simulator executes it against a subset of GitHub's schema), the REST way
when GraphQL answers an error or is not there, and the rule that prefers the environment the
request named."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from graphql import parse, validate

from ghapp.core.deployed_urls import (
    MAX_PAGES,
    DeploymentSeen,
    Page,
    PageWanted,
    RepositoryWindow,
    StatusSeen,
    UrlLookup,
    choose_url,
    next_page,
)
from ghapp.core.deploys import new_deployment
from ghapp.core.models import DeploymentRequest
from ghapp.github.client import GitHubClient, GraphQLRefused
from ghapp.github.graphql import deployments_query, graphql_url, read_pages
from ghapp.simulator import Job, Step, Workflow
from ghapp.simulator.graphql_api import schema
from ghapp.simulator.stack import Stack
from ghapp.simulator.state import RunState
from ghapp.store import SqlStore

URL = "https://${{ inputs.environment }}.example.com/run/${{ github.run_id }}"


def deploy_workflow(*, preview: bool = False) -> Workflow:
    """A deploy whose job deploys to `inputs.environment` at a URL naming the run; with
    `preview`, a second job (started after it, so its deployment is the newer) deploys a
    preview too."""
    jobs = [Job(name="deploy", steps=[Step("Deploy", command="./deploy.sh")],
                environment="${{ inputs.environment }}", environment_url=URL)]
    if preview:
        jobs.append(Job(name="preview", steps=[Step("Preview", command="./preview.sh")],
                        environment="preview",
                        environment_url="https://preview.example.com/${{ github.run_id }}"))
    return Workflow(file="deploy.yml", name="Deploy", jobs=jobs)


def expected_url(run: RunState, environment: str = "production") -> str:
    return f"https://{environment}.example.com/run/{run.id}"


# -- the pure rules ------------------------------------------------------------------------

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def seen(commit: str, environment: str, run_id: int, url: str | None, *,
         minutes_ago: int = 0, state: str = "success") -> DeploymentSeen:
    status = StatusSeen(state, url, f"https://github.com/a/b/actions/runs/{run_id}/job/7")
    return DeploymentSeen(commit, environment, NOW - timedelta(minutes=minutes_ago), (status,))


def lookup(run_id: int, *, environment: str | None = "production", since_minutes: int = 30,
           completed: datetime = NOW) -> UrlLookup:
    return UrlLookup("a/b", run_id, "c0ffee", environment,
                     NOW - timedelta(minutes=since_minutes), completed)


def test_the_run_named_environment_wins_over_a_newer_deployment() -> None:
    deployments = [seen("c0ffee", "preview", 12, "https://preview"),
                   seen("c0ffee", "production", 12, "https://prod", minutes_ago=1)]
    assert choose_url(deployments, lookup(12)) == "https://prod"
    assert choose_url(deployments, lookup(12, environment=None)) == "https://preview"
    assert choose_url(deployments, lookup(12, environment="staging")) == "https://preview"


def test_only_the_runs_own_successful_status_counts() -> None:
    deployments = [seen("c0ffee", "production", 123, "https://other-run"),
                   seen("c0ffee", "production", 12, None),
                   seen("c0ffee", "production", 12, "https://failed", state="failure"),
                   seen("beef", "production", 12, "https://other-commit")]
    # Run 12 is not run 123 (a prefix of its id), and the rest gave no successful URL.
    assert choose_url(deployments, lookup(12)) is None
    assert choose_url(deployments, UrlLookup("a/b", 123, "c0ffee", None, NOW, NOW)) == (
        "https://other-run")


def test_a_window_answers_runs_it_reaches_back_to_and_was_read_after() -> None:
    window = RepositoryWindow(fetched_at=NOW)
    window.add(Page((seen("c0ffee", "production", 1, "u", minutes_ago=5),), True, "c1"))
    assert window.answers(lookup(1, since_minutes=10)) is False  # older runs may be further
    assert next_page(window, [lookup(1, since_minutes=10)]) == PageWanted("a/b", "c1")
    assert window.answers(lookup(1, since_minutes=4))
    # Read before the run completed: its success may not have been there yet.
    late = lookup(1, since_minutes=4, completed=NOW + timedelta(seconds=1))
    assert not window.answers(late)
    assert next_page(window, [late]) == PageWanted("a/b", None)
    window.add(Page((), False, None))
    assert window.answers(lookup(1, since_minutes=60))


def test_paging_stops_after_max_pages() -> None:
    window = RepositoryWindow(fetched_at=NOW)
    for n in range(MAX_PAGES):
        window.add(Page((seen("c0ffee", "p", 1, "u", minutes_ago=n),), True, f"c{n}"))
    assert next_page(window, [lookup(1, since_minutes=600)]) is None


def test_graphql_url_beside_github_com_and_enterprise_server() -> None:
    assert graphql_url("https://api.github.com") == "https://api.github.com/graphql"
    assert graphql_url("https://ghe.example.com/api/v3/") == "https://ghe.example.com/api/graphql"
    assert graphql_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080/graphql"


def test_the_query_sent_is_valid_against_githubs_schema() -> None:
    query, variables = deployments_query([PageWanted("acme/a", None), PageWanted("acme/b", "x")])
    assert validate(schema(), parse(query)) == []
    assert variables == {"owner0": "acme", "name0": "a", "after0": None,
                         "owner1": "acme", "name1": "b", "after1": "x"}
    # The schema is a real one: a field GitHub does not have is refused.
    wrong = query.replace("environmentUrl", "environment_url", 1)
    assert validate(schema(), parse(wrong)) != []


def test_an_answer_is_read_into_pages_and_gaps() -> None:
    data: dict[str, Any] = {
        "r0": {"deployments": {
            "pageInfo": {"hasNextPage": True, "endCursor": "abc"},
            "nodes": [{"databaseId": 5, "commitOid": "c0ffee", "environment": "production",
                       "createdAt": "2026-12-01T12:00:00Z",
                       "latestStatus": {"state": "INACTIVE", "environmentUrl": None,
                                        "logUrl": None},
                       "statuses": {"nodes": [{"state": "SUCCESS", "environmentUrl": "https://x",
                                               "logUrl": "https://g/a/b/actions/runs/9/job/1"}]}}],
        }},
        "r1": None,
    }
    first, second = read_pages(data, 2)
    assert second is None
    assert first is not None and first.has_next and first.end_cursor == "abc"
    (deployment,) = first.deployments
    # The latest status is `inactive` (a newer deployment replaced it): the success is found
    # among its statuses all the same.
    assert choose_url(first.deployments, UrlLookup("a/b", 9, "c0ffee", None, NOW, NOW)) == (
        "https://x")
    assert deployment.created_at == NOW and deployment.database_id == 5


# -- against the simulator -----------------------------------------------------------------


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """ghapp with webhooks lost and runs held: what it learns comes from reconciliation."""
    stack = await Stack.start(f"sqlite:///{tmp_path / 'ghapp.db'}", poll_after=3600)
    stack.sim.faults.drop_webhooks = True
    stack.sim.auto = False
    yield stack
    await stack.close()


async def completed_while_down(stack: Stack, repository: str, count: int,
                               environment: str = "production") -> list[RunState]:
    runs = []
    for _ in range(count):
        run = await stack.sim.dispatch(repository, inputs={"environment": environment})
        await stack.sim.finish(run.id)
        runs.append(run)
    return runs


def outage(stack: Stack, seconds: int = 600) -> None:
    """Move everything the simulator did back in time: it happened while ghapp was down."""
    for run in stack.sim.runs.values():
        run.created -= seconds
        run.run_started -= seconds
        run.updated -= seconds
    for deployment in stack.sim.world.deployments.values():
        deployment.created -= seconds
        for status in deployment.statuses:
            status.created -= seconds


async def remember(stack: Stack, runs: list[RunState]) -> dict[str, RunState]:
    """Store the deployments ghapp had dispatched for these runs before it went down."""
    store = SqlStore(stack.settings.database_url)
    await store.open()
    ids = {}
    try:
        for run in runs:
            request = DeploymentRequest(repository=run.repo.full_name, ref="main",
                                        inputs=dict(run.inputs))
            record = new_deployment(
                f"dep_{uuid.uuid4().hex[:24]}", request, ref="main",
                callback_url=stack.receiver.url, installation_id=run.repo.installation_id,
                run_id=run.id, html_url=f"https://github.com/x/actions/runs/{run.id}",
                now=datetime.fromtimestamp(run.created, UTC) - timedelta(seconds=1),
            )
            await store.create(record)
            ids[record.id] = run
    finally:
        await store.close()
    return ids


async def reconcile(stack: Stack, runs: list[RunState]) -> tuple[dict[str, str | None], int]:
    """Restart ghapp; every verdict's deployed_url by run id; the index of its first request."""
    await stack.stop_ghapp()
    ids = await remember(stack, runs)
    first = len(stack.sim.requests)
    await stack.start_ghapp()
    urls = {}
    for deployment_id, run in ids.items():
        callback = await stack.receiver.wait_for(deployment_id, timeout=60)
        verdict = callback.deployment["verdict"]
        assert verdict["status"] == "success"
        urls[str(run.id)] = verdict["deployed_url"]
    await asyncio.sleep(0.2)
    assert len(stack.receiver.delivered()) == len(ids), "one callback each"
    return urls, first


async def test_a_backlog_of_successes_is_read_in_a_few_graphql_requests(stack: Stack) -> None:
    await stack.stop_ghapp()
    runs = []
    for name in ("acme/shop", "acme/api", "acme/web"):
        stack.sim.add_repository(name).add_workflow(deploy_workflow())
        runs += await completed_while_down(stack, name, 50)
    outage(stack)
    urls, first = await reconcile(stack, runs)
    assert urls == {str(run.id): expected_url(run) for run in runs}
    counts = stack.sim.request_counts(since=first)
    # Three repositories fit one query of 100 deployments each (their listings may come
    # apart: a query each at most).
    assert 1 <= counts["graphql"] <= 3, counts
    assert counts["deployments"] == 0, counts
    graphql = [r for r in stack.sim.requests[first:] if r.kind == "graphql"]
    assert all(r.status == 200 and r.path == "/graphql" for r in graphql)


async def test_a_repository_past_one_page_is_read_page_by_page(stack: Stack) -> None:
    await stack.stop_ghapp()
    stack.sim.add_repository("acme/shop").add_workflow(deploy_workflow())
    runs = await completed_while_down(stack, "acme/shop", 230)
    outage(stack)
    urls, first = await reconcile(stack, runs)
    assert urls == {str(run.id): expected_url(run) for run in runs}
    counts = stack.sim.request_counts(since=first)
    # 230 deployments are three pages; what was read answers every run.
    assert counts["graphql"] == 3, counts
    assert counts["deployments"] == 0


async def test_the_environment_the_request_named_is_preferred(stack: Stack) -> None:
    await stack.stop_ghapp()
    stack.sim.add_repository("acme/shop").add_workflow(deploy_workflow(preview=True))
    staging = await completed_while_down(stack, "acme/shop", 2, environment="staging")
    production = await completed_while_down(stack, "acme/shop", 2)
    urls, _ = await reconcile(stack, staging + production)
    # Each run's preview deployment is newer, yet the requested environment's URL is given.
    assert urls == {**{str(r.id): expected_url(r, "staging") for r in staging},
                    **{str(r.id): expected_url(r) for r in production}}


async def test_runs_completed_just_now_are_read_fresh(stack: Stack) -> None:
    await stack.stop_ghapp()
    stack.sim.add_repository("acme/shop").add_workflow(deploy_workflow())
    runs = await completed_while_down(stack, "acme/shop", 120)
    urls, first = await reconcile(stack, runs)
    # What was read before ghapp saw a run completed does not answer for it: read again (a
    # request answers every run seen meanwhile), never a wrong or missing URL.
    assert urls == {str(run.id): expected_url(run) for run in runs}
    assert stack.sim.request_counts(since=first)["graphql"] < len(runs) / 2


async def test_graphql_errors_fall_back_to_rest_with_the_same_verdicts(stack: Stack) -> None:
    await stack.stop_ghapp()
    stack.sim.add_repository("acme/shop").add_workflow(deploy_workflow(preview=True))
    runs = await completed_while_down(stack, "acme/shop", 6)
    runs += await completed_while_down(stack, "acme/shop", 2, environment="staging")
    stack.sim.faults.graphql_errors = 1000
    urls, first = await reconcile(stack, runs)
    assert urls == {str(r.id): expected_url(r, str(r.inputs["environment"])) for r in runs}
    counts = stack.sim.request_counts(since=first)
    assert counts["graphql"] >= 1
    # The REST way: the deployments of the run's commit, then statuses.
    assert counts["deployments"] >= 2 * len(runs), counts


async def test_no_graphql_api_means_rest_without_asking_again(stack: Stack) -> None:
    await stack.stop_ghapp()
    stack.sim.add_repository("acme/shop").add_workflow(deploy_workflow())
    runs = await completed_while_down(stack, "acme/shop", 4)
    stack.sim.faults.graphql_missing = True
    urls, first = await reconcile(stack, runs)
    assert urls == {str(run.id): expected_url(run) for run in runs}
    assert stack.sim.request_counts(since=first)["graphql"] == 1


async def client_of(stack: Stack, session: aiohttp.ClientSession, api_url: str) -> GitHubClient:
    return GitHubClient(session, app_id=str(stack.sim.app_id),
                        private_key=stack.sim.private_key_pem, api_url=api_url)


async def test_enterprise_server_is_asked_at_api_graphql(stack: Stack) -> None:
    stack.sim.add_repository("acme/shop").add_workflow(deploy_workflow())
    run = (await completed_while_down(stack, "acme/shop", 1))[0]
    stack.sim.faults.ghes = True
    installation = run.repo.installation_id
    async with aiohttp.ClientSession() as session:
        ghes = await client_of(stack, session, stack.sim.ghes_api_url)
        (page,) = await ghes.deployment_pages(installation, [PageWanted("acme/shop", None)])
        assert page is not None
        assert [d.database_id for d in page.deployments] == list(stack.sim.world.deployments)
        # github.com's path is not there on a GHES host: the client says GraphQL is missing.
        wrong = await client_of(stack, session, stack.sim.api_url)
        with pytest.raises(GraphQLRefused) as refused:
            await wrong.deployment_pages(installation, [PageWanted("acme/shop", None)])
        assert refused.value.missing
    assert [r.path for r in stack.sim.requests if r.kind == "graphql"] == [
        "/api/graphql", "/graphql"]


async def test_graphql_is_counted_apart_with_its_own_rate_limit(stack: Stack) -> None:
    stack.sim.add_repository("acme/shop").add_workflow(deploy_workflow())
    stack.sim.add_repository("other/repo").add_workflow(deploy_workflow())
    await completed_while_down(stack, "acme/shop", 1)
    installation = stack.sim.repos["acme/shop"].installation_id
    headers: list[dict[str, str]] = []
    async with aiohttp.ClientSession() as session:
        client = await client_of(stack, session, stack.sim.api_url)
        client.observers.append(lambda _u, _s, h, _i: headers.append(dict(h)))
        pages = await client.deployment_pages(
            installation, [PageWanted("acme/shop", None), PageWanted("other/repo", None)])
    # Another installation's repository is not found (GitHub's NOT_FOUND), the other answers.
    assert pages[0] is not None and len(pages[0].deployments) == 1 and pages[1] is None
    answer = {k.lower(): v for k, v in headers[-1].items()}
    assert answer["x-ratelimit-resource"] == "graphql"
    bucket = stack.sim.rate_limits.bucket(f"graphql:inst:{installation}")
    assert int(answer["x-ratelimit-remaining"]) == bucket.limit - 1 == bucket.remaining
    core = stack.sim.rate_limits.bucket(f"inst:{installation}")
    assert core.used == 0, "GraphQL costs nothing of the REST budget"
    assert stack.sim.request_counts()["graphql"] == 1


async def test_the_simulators_graphql_pages_with_cursors(stack: Stack) -> None:
    stack.sim.add_repository("acme/shop").add_workflow(deploy_workflow())
    runs = await completed_while_down(stack, "acme/shop", 5)
    token = stack.sim.installation_token("acme/shop")
    query = """query($after: String) { repository(owner: "acme", name: "shop") {
      deployments(first: 2, after: $after, orderBy: {field: CREATED_AT, direction: DESC}) {
        totalCount pageInfo { hasNextPage endCursor }
        nodes { databaseId latestStatus { state environmentUrl } } } } }"""
    seen_ids: list[int] = []
    after = None
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        while time.monotonic() - started < 10:
            async with session.post(f"{stack.sim.api_url}/graphql",
                                    json={"query": query, "variables": {"after": after}},
                                    headers={"Authorization": f"bearer {token}"}) as response:
                body = await response.json()
            connection = body["data"]["repository"]["deployments"]
            assert connection["totalCount"] == 5
            seen_ids += [n["databaseId"] for n in connection["nodes"]]
            assert all(n["latestStatus"]["state"] == "SUCCESS" for n in connection["nodes"])
            if not connection["pageInfo"]["hasNextPage"]:
                break
            after = connection["pageInfo"]["endCursor"]
        # Without a token: GitHub's 401.
        async with session.post(f"{stack.sim.api_url}/graphql", json={"query": query}) as r:
            assert r.status == 401
    assert len(seen_ids) == len(runs) and seen_ids == sorted(seen_ids, reverse=True)
