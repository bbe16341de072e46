"""Which deployment a successful run made, and whether what was read of a repository's
deployments answers that: the decisions behind the `deployed_url` lookup, without I/O.

GitHub names no workflow run on a deployment; a run's deployment is one of its head commit
whose status links to the run's job page (`.../actions/runs/<run id>/job/<id>`). A page of a
repository's deployments, newest first (GitHub's GraphQL API gives 100 at a time), answers the
lookups of every run dispatched since its oldest deployment was created: after an outage one
request settles a hundred successes instead of two requests each (see docs/scale.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

# GitHub's clock against ours (the same margin the run listings use).
CLOCK_SKEW = timedelta(seconds=10)
# Pages of one repository read for one round of lookups before the rest go the REST way: a
# run dispatched long ago in a busy repository is two REST requests, not thirty pages.
MAX_PAGES = 10


@dataclass(frozen=True)
class StatusSeen:
    """One status of a deployment: its state in lower case (as REST writes it), its URLs."""

    state: str
    environment_url: str | None = None
    log_url: str | None = None


@dataclass(frozen=True)
class DeploymentSeen:
    """A deployment as read from GitHub, with the statuses that came with it."""

    commit: str
    environment: str | None
    created_at: datetime | None
    statuses: tuple[StatusSeen, ...] = ()
    database_id: int | None = None


@dataclass(frozen=True)
class UrlLookup:
    """One successful run whose environment URL is wanted."""

    repository: str
    run_id: int
    head_sha: str
    # The environment the request named (`inputs.environment`): preferred when the run
    # deployed to several.
    environment: str | None
    # The run's deployment is not older than this (its dispatch, less the clock skew).
    since: datetime
    # By this time (ours) the run had completed, so its statuses existed: what was read
    # before it cannot answer.
    completed: datetime


def made_by_run(status: StatusSeen, run_id: int) -> bool:
    """Whether a status belongs to this run: its log URL is the run's job page (or names no
    run at all, as a status written by hand may not)."""
    link = status.log_url or ""
    return f"/runs/{run_id}/" in f"{link}/" or "/runs/" not in link


def url_of(deployment: DeploymentSeen, run_id: int) -> str | None:
    """The environment URL of a `success` status this run gave the deployment, if any."""
    for status in deployment.statuses:
        if status.state == "success" and status.environment_url and made_by_run(status, run_id):
            return status.environment_url
    return None


def choose_url(deployments: Iterable[DeploymentSeen], lookup: UrlLookup) -> str | None:
    """The run's environment URL among deployments (newest first): the one in the requested
    environment if the run deployed to several, else the newest."""
    first: str | None = None
    for deployment in deployments:
        if deployment.commit != lookup.head_sha:
            continue
        url = url_of(deployment, lookup.run_id)
        if url is None:
            continue
        if lookup.environment is not None and deployment.environment == lookup.environment:
            return url
        first = first or url
    return first


@dataclass
class Page:
    """One page of a repository's deployments, newest first, as GitHub answered it."""

    deployments: tuple[DeploymentSeen, ...]
    has_next: bool
    end_cursor: str | None


@dataclass
class RepositoryWindow:
    """A repository's deployments read so far (newest first), from one starting read; only
    those with a successful status that names an environment URL are kept (no other can be
    a run's answer), and how far back the reading went."""

    fetched_at: datetime
    deployments: list[DeploymentSeen] = field(default_factory=list)
    end_cursor: str | None = None
    complete: bool = False
    pages: int = 0
    oldest: datetime | None = None

    def add(self, page: Page) -> None:
        """Take the next (older) page."""
        for deployment in page.deployments:
            kept = tuple(s for s in deployment.statuses if s.state == "success"
                         and s.environment_url)
            if kept:
                self.deployments.append(replace(deployment, statuses=kept))
        if page.deployments:
            self.oldest = page.deployments[-1].created_at
        self.end_cursor = page.end_cursor
        self.complete = not page.has_next or page.end_cursor is None
        self.pages += 1

    def fresh_for(self, lookup: UrlLookup) -> bool:
        """Read after the run completed: it would show the run's statuses."""
        return self.fetched_at >= lookup.completed

    def reaches(self, lookup: UrlLookup) -> bool:
        """Reads back to the run's dispatch, or to the repository's first deployment."""
        oldest = self.oldest
        return self.complete or (oldest is not None and oldest <= lookup.since)

    def answers(self, lookup: UrlLookup) -> bool:
        """Whether the lookup's answer is in what was read."""
        return self.fresh_for(lookup) and self.reaches(lookup)


@dataclass(frozen=True)
class PageWanted:
    """The next page to read of a repository: from the newest (`after` None) or further."""

    repository: str
    after: str | None


def next_page(window: RepositoryWindow | None, lookups: Sequence[UrlLookup]) -> PageWanted | None:
    """What to read next for a repository's waiting lookups (None: nothing more from this
    window; the lookups it does not answer go the REST way)."""
    if not lookups:
        return None
    repository = lookups[0].repository
    if window is None or not all(window.fresh_for(lookup) for lookup in lookups):
        return PageWanted(repository, None)
    if all(window.reaches(lookup) for lookup in lookups):
        return None
    if window.complete or window.pages >= MAX_PAGES:
        return None
    return PageWanted(repository, window.end_cursor)


def lookup_of(
    *,
    repository: str,
    run_id: int,
    head_sha: str,
    inputs: Mapping[str, object],
    environment: str,
    dispatched_at: datetime,
    run_completed_at: datetime | None,
    run_completed_seen_at: datetime | None,
    now: datetime,
) -> UrlLookup:
    """The lookup of a deployment's run, from what the record knows."""
    named = inputs.get("environment")
    # When ghapp learnt of the completion the statuses existed; GitHub's completion time
    # (its clock, plus the skew) may be earlier, which lets one read answer a whole backlog.
    candidates = [t for t in (run_completed_seen_at,) if t is not None]
    if run_completed_at is not None:
        candidates.append(run_completed_at + CLOCK_SKEW)
    return UrlLookup(
        repository=repository,
        run_id=run_id,
        head_sha=head_sha,
        environment=named if isinstance(named, str) and named else environment,
        since=dispatched_at - CLOCK_SKEW,
        completed=min(candidates) if candidates else now,
    )
