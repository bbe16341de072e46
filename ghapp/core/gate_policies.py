"""Gate policies as data (GATE_POLICY_PATH): freeze windows and promotion order, and the pure
evaluation of whether a deploy may pass now. No I/O beyond reading the policy file itself."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKLY = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun)\s+([01]?\d|2[0-3]):([0-5]\d)$")
_WITHIN = re.compile(r"^(\d+)\s*([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}
MINUTES_A_WEEK = 7 * 24 * 60


class PolicyError(ValueError):
    """A policy file that cannot be used: the message names the file and the rule."""


def _minute_of_week(text: str) -> int:
    found = _WEEKLY.match(text.strip().lower())
    if found is None:
        raise ValueError(f"{text!r} is not a weekday and time like 'fri 16:00'")
    day, hour, minute = found.groups()
    return _DAYS.index(day) * 24 * 60 + int(hour) * 60 + int(minute)


class DateFreeze(BaseModel):
    """A freeze between two instants (`to` excluded)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")

    @field_validator("start", "end")
    @classmethod
    def _with_offset(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("needs an offset (e.g. 2026-12-24T00:00:00+01:00)")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> DateFreeze:
        if self.end <= self.start:
            raise ValueError("'to' must come after 'from'")
        return self


class WeeklyFreeze(BaseModel):
    """A freeze every week, e.g. from 'fri 16:00' to 'mon 08:00' in a time zone."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    start: str = Field(alias="from")
    end: str = Field(alias="to")
    timezone: str

    @field_validator("start", "end")
    @classmethod
    def _weekday_time(cls, value: str) -> str:
        _minute_of_week(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone") from None
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> WeeklyFreeze:
        if _minute_of_week(self.start) == _minute_of_week(self.end):
            raise ValueError("'from' and 'to' are the same time")
        return self


class Policy(BaseModel):
    """One policy of the file: a freeze, a weekly freeze or a promotion order."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=100)
    environments: list[str] = Field(min_length=1)
    reason: str = Field(default="", max_length=500)
    freeze: DateFreeze | None = None
    weekly_freeze: WeeklyFreeze | None = None
    promote_after: str | None = None
    within: str | None = None

    @field_validator("within")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None and _WITHIN.match(value.strip()) is None:
            raise ValueError(f"{value!r} is not a duration like '7d', '12h' or '30m'")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Policy:
        kinds = [self.freeze, self.weekly_freeze, self.promote_after]
        if sum(kind is not None for kind in kinds) != 1:
            raise ValueError("needs exactly one of 'freeze', 'weekly_freeze', 'promote_after'")
        if self.within is not None and self.promote_after is None:
            raise ValueError("'within' belongs to 'promote_after'")
        return self

    def applies_to(self, environment: str) -> bool:
        """Whether one of its environment globs matches."""
        return any(fnmatch.fnmatchcase(environment, glob) for glob in self.environments)

    @property
    def window(self) -> timedelta | None:
        """`within` as a duration (None: no limit)."""
        if self.within is None:
            return None
        found = _WITHIN.match(self.within.strip())
        assert found is not None
        return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})

    @property
    def is_freeze(self) -> bool:
        """Whether an override passes it."""
        return self.promote_after is None


@dataclass(frozen=True)
class Policies:
    """The loaded file, in file order (the first blocking policy decides)."""

    items: tuple[Policy, ...] = ()
    source: str | None = None

    def promotions(self, environment: str, kind: str = "deploy") -> list[Policy]:
        """The promotion policies a deploy to `environment` must meet (rollbacks are exempt)."""
        if kind == "rollback":
            return []
        return [p for p in self.items if p.promote_after is not None and p.applies_to(environment)]


def parse_policies(data: Any, source: str = "GATE_POLICY_PATH") -> Policies:
    """Validate parsed YAML/JSON: a list of policies with unique ids."""
    if data is None:
        return Policies((), source)
    if isinstance(data, dict) and "policies" in data:
        data = data["policies"]
    if not isinstance(data, list):
        raise PolicyError(f"{source}: expected a list of policies")
    items: list[Policy] = []
    seen: set[str] = set()
    for number, item in enumerate(data, 1):
        name = item.get("id") if isinstance(item, dict) else None
        label = f"policy {name!r}" if isinstance(name, str) else f"policy #{number}"
        try:
            policy = Policy.model_validate(item)
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"])
            message = problem["msg"].removeprefix("Value error, ")
            raise PolicyError(
                f"{source}: {label}: {where + ': ' if where else ''}{message}"
            ) from None
        if policy.id in seen:
            raise PolicyError(f"{source}: {label}: the id is used twice")
        seen.add(policy.id)
        items.append(policy)
    return Policies(tuple(items), source)


def load_policies(path: Path | None) -> Policies:
    """Read and validate GATE_POLICY_PATH (none: no policies)."""
    if path is None:
        return Policies()
    import yaml  # only when a policies file is set: a server without one never loads it

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise PolicyError(f"{path}: not valid YAML{line}") from None
    return parse_policies(data, str(path))


@dataclass(frozen=True)
class PolicyVerdict:
    """What the policies say about a deploy now: the shape of /api/v1/gate/preview."""

    allowed: bool
    policy: str | None = None
    reason: str = ""
    retry_after: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        """The preview route's body."""
        return {
            "allowed": self.allowed,
            "policy": self.policy,
            "reason": self.reason,
            "retry_after": _iso(self.retry_after),
        }


ALLOWED = PolicyVerdict(True)


def _iso(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ")


def weekly_window_end(freeze: WeeklyFreeze, now: datetime) -> datetime | None:
    """When the weekly window containing `now` ends (UTC-aware), or None when outside it."""
    zone = ZoneInfo(freeze.timezone)
    local = now.astimezone(zone)
    minute = local.weekday() * 24 * 60 + local.hour * 60 + local.minute
    start, end = _minute_of_week(freeze.start), _minute_of_week(freeze.end)
    inside = start <= minute < end if start < end else (minute >= start or minute < end)
    if not inside:
        return None
    ahead = (end - minute) % MINUTES_A_WEEK
    # Wall-clock arithmetic in the zone, so a DST change inside the window is honoured.
    naive = local.replace(tzinfo=None, second=0, microsecond=0) + timedelta(minutes=ahead)
    return naive.replace(tzinfo=zone).astimezone(ZoneInfo("UTC"))


def _blocks(
    policy: Policy, now: datetime, promoted: Mapping[str, datetime | None], kind: str
) -> PolicyVerdict | None:
    reason = policy.reason
    if policy.freeze is not None:
        if policy.freeze.start <= now < policy.freeze.end:
            text = reason or f"frozen until {_iso(policy.freeze.end)}"
            return PolicyVerdict(
                False, policy.id, text, policy.freeze.end.astimezone(ZoneInfo("UTC"))
            )
        return None
    if policy.weekly_freeze is not None:
        ends = weekly_window_end(policy.weekly_freeze, now)
        if ends is not None:
            text = reason or f"weekly freeze until {_iso(ends)}"
            return PolicyVerdict(False, policy.id, text, ends)
        return None
    if kind == "rollback" or policy.promote_after is None:
        return None
    succeeded = promoted.get(policy.promote_after)
    window = policy.window
    if succeeded is not None and (window is None or now - succeeded <= window):
        return None
    text = reason or (
        f"this commit has not succeeded in {policy.promote_after}"
        + (f" within {policy.within}" if policy.within else "")
    )
    return PolicyVerdict(False, policy.id, text, None)


def evaluate(
    policies: Policies | Sequence[Policy],
    *,
    environment: str,
    now: datetime,
    kind: str = "deploy",
    override: bool = False,
    promoted: Mapping[str, datetime | None] | None = None,
) -> PolicyVerdict:
    """The first blocking policy in file order decides; an override passes freezes only.
    `promoted` maps each `promote_after` environment to the same sha's last success there."""
    items = policies.items if isinstance(policies, Policies) else tuple(policies)
    for policy in items:
        if not policy.applies_to(environment) or (override and policy.is_freeze):
            continue
        blocked = _blocks(policy, now, promoted or {}, kind)
        if blocked is not None:
            return blocked
    return ALLOWED
