"""What the webhook handlers read of a delivery, with the types GitHub sends, and the cheap
first look at a workflow_run or workflow_job body that tells most of them are not ghapp's."""

from __future__ import annotations

from typing import Annotated, Any, NamedTuple

from pydantic import Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

# A run id, attempt, installation id...: GitHub's are positive and fit a signed 64-bit integer
# (what PostgreSQL's BIGINT holds); anything else is not GitHub's.
_Id = Annotated[int, Field(strict=True, ge=0, lt=2**63)]
_Text = Annotated[str | None, Field(strict=True)]


class _Run(TypedDict, total=False):
    """What the handlers read of a `workflow_run` object; other fields are not looked at."""

    id: _Id
    run_attempt: _Id | None
    workflow_id: _Id | None
    status: _Text
    conclusion: _Text
    html_url: _Text
    head_sha: _Text
    head_branch: _Text
    event: _Text
    display_title: _Text
    created_at: _Text
    path: _Text


class _RunFields(TypedDict, total=False):
    id: _Id
    event: Any
    display_title: Any
    created_at: Any


class _PayloadHead(TypedDict, total=False):
    action: Any
    workflow_run: _RunFields


# Most of an organisation's workflow_run stream is CI runs ghapp did not dispatch; to see that,
# a few fields suffice. Validating against this shape skips the rest of the 20 KiB body without
# building it into Python objects (about a third of the cost of parsing it all). A run id that
# is not GitHub's sends the body to the closer look (and its 400); a run found to be one of
# ghapp's has all its fields checked there (`PAYLOAD`).
_HEAD = TypeAdapter(_PayloadHead)


class _Installation(TypedDict, total=False):
    id: _Id


class _Repository(TypedDict, total=False):
    full_name: _Text


class _DeploymentStatus(TypedDict, total=False):
    state: _Text
    environment_url: _Text


class _Payload(TypedDict, total=False):
    """The fields of a delivery the handlers read, with the types GitHub sends."""

    action: _Text
    workflow_run: _Run | None
    installation: _Installation | None
    repository: _Repository | None
    deployment_status: _DeploymentStatus | None


# A signed delivery whose fields have impossible types or values is answered 400, not 500.
PAYLOAD = TypeAdapter(_Payload)


class RunHead(NamedTuple):
    """What the webhook path reads of a workflow_run body before deciding to parse it all."""

    action: str | None
    run_id: int | None  # None: not a dispatched run, so not one of ghapp's
    title: str
    created_at: Any


def is_run_id(value: Any) -> bool:
    """Whether a value can be GitHub's run id (a positive 64-bit integer)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def run_head(raw: bytes) -> RunHead | None:
    """The few fields of a workflow_run body that say whether it can be ghapp's; None: look closer.

    None when the body is not the usual shape (not JSON, not an object, `workflow_run` not an
    object...): the caller parses it whole, to answer 400 or handle it as usual.
    """
    try:
        head = _HEAD.validate_json(raw)
    except ValidationError:
        return None
    run = head.get("workflow_run")
    if run is None:
        return None
    action = head.get("action")
    run_id = run.get("id")
    dispatched = run.get("event") == "workflow_dispatch" and is_run_id(run_id)
    title = run.get("display_title")
    return RunHead(
        action=action if isinstance(action, str) else None,
        run_id=run_id if dispatched else None,
        title=title if isinstance(title, str) else "",
        created_at=run.get("created_at"),
    )


class _JobFields(TypedDict, total=False):
    run_id: Any


class _JobPayloadHead(TypedDict, total=False):
    action: Any
    workflow_job: _JobFields
    # Checked here too, as for runs: an impossible installation id is a 400, whoever's job.
    installation: _Installation | None


# Several workflow_job deliveries come per workflow_run one, nearly all of runs ghapp did not
# dispatch: the run id says so, from a 10 KB body read no further than that.
_JOB_HEAD = TypeAdapter(_JobPayloadHead)


def job_head(raw: bytes) -> tuple[str | None, int | None] | None:
    """(action, run id or None) of a workflow_job body; None: not the usual shape, look closer."""
    try:
        head = _JOB_HEAD.validate_json(raw)
    except ValidationError:
        return None
    job = head.get("workflow_job")
    if job is None:
        return None
    action = head.get("action")
    run_id = job.get("run_id")
    return (action if isinstance(action, str) else None, run_id if is_run_id(run_id) else None)
