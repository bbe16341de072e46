"""Why a deploy failed: a first-match classifier over the failing step, its log and annotations.

The rules are data (`rules/causes.yml`, plus the user's `CAUSE_RULES_PATH` tried first); this
module only loads, checks and applies them. Their patterns run in time linear in the text
(`rule_patterns`: RE2), since a job's log is written by whoever can push a workflow. Pure code:
no I/O except reading a rules file.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, cast, get_args

from ghapp.core.enums import CauseCategory
from ghapp.core.models import Cause, FailedJob
from ghapp.core.rule_patterns import Pattern, PatternError, Prefilter, encode

CATEGORIES = frozenset(get_args(CauseCategory))
_PATTERN_FIELDS = ("step", "log", "annotation", "reason")
_KNOWN_FIELDS = frozenset({"id", "category", "hint", "retryable", *_PATTERN_FIELDS})
_RULE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,80}")
_ERROR_MARKER = "##[error]"
EVIDENCE_LIMIT = 500
UNKNOWN_HINT = (
    "Nothing in the log matched a known cause: read the failing step's excerpt in the report."
)


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the file and the bad rule."""


@dataclass(frozen=True)
class Rule:
    """One compiled rule: every pattern it names must match."""

    id: str
    category: CauseCategory
    hint: str
    retryable: bool
    step: Pattern | None = None
    log: Pattern | None = None
    annotation: Pattern | None = None
    reason: Pattern | None = None


@dataclass(frozen=True)
class Failure:
    """What one failed job (or a verdict without jobs) tells: the classifier's input."""

    reason: str | None
    step: str | None = None
    log: str = ""
    annotations: Sequence[str] = ()


class CauseRules:
    """An ordered, compiled rule set; `classify` returns the first matching rule's cause.

    Safe to share between threads: classifying runs in worker threads (see work/failures.py).
    """

    def __init__(self, rules: Iterable[Rule], *, then_builtin: bool = False) -> None:
        self._own = tuple(rules)
        # The built-in rules are read on first use: a server that never sees a failure never
        # loads PyYAML or compiles them (idle memory).
        self._then_builtin = then_builtin
        self._all: tuple[Rule, ...] | None = None
        self._prefilter = Prefilter(())
        # A rule's place -> its `log` pattern's place in the prefilter.
        self._filtered: dict[int, int] = {}
        self._lock = threading.Lock()

    @property
    def rules(self) -> tuple[Rule, ...]:
        """Every rule, in the order they are tried."""
        if self._all is None:
            with self._lock:
                if self._all is None:
                    rules = self._own + (builtin_rules() if self._then_builtin else ())
                    logs = [(i, rule.log) for i, rule in enumerate(rules) if rule.log is not None]
                    self._prefilter = Prefilter([pattern for _, pattern in logs])
                    self._filtered = {i: k for k, (i, _) in enumerate(logs)}
                    self._all = rules  # last: readers without the lock see it complete
        return self._all

    def __len__(self) -> int:
        return len(self.rules)

    def classify(self, failure: Failure) -> Cause:
        """The cause of one failure: the first rule all of whose patterns match, else unknown."""
        rules = self.rules
        scan = _Scan(failure.log, self._prefilter)
        for place, rule in enumerate(rules):
            evidence = _match(rule, failure, scan, self._filtered.get(place))
            if evidence is not False:
                return Cause(
                    category=rule.category,
                    retryable=rule.retryable,
                    rule=rule.id,
                    hint=rule.hint,
                    evidence=evidence if evidence is not None else _first_error(failure),
                )
        return Cause(
            category="unknown",
            retryable=False,
            rule="unknown",
            hint=UNKNOWN_HINT,
            evidence=_first_error(failure),
        )

    def classify_all(self, failures: Sequence[Failure]) -> Cause:
        """The cause of a verdict: the first failed job whose cause is known, else the first."""
        causes = [self.classify(failure) for failure in failures]
        known = next((cause for cause in causes if cause.category != "unknown"), None)
        return known or (causes[0] if causes else self.classify(Failure(reason=None)))


def classify_jobs(rules: CauseRules, reason: str, jobs: Sequence[FailedJob]) -> Cause:
    """The cause of a failed run from its failed jobs (the run's reason alone when none)."""
    failures = [
        Failure(
            reason=reason,
            step=job.failed_step.name if job.failed_step else None,
            log=job.log_excerpt,
            annotations=[a.message for a in job.annotations],
        )
        for job in jobs
    ]
    return rules.classify_all(failures or [Failure(reason=reason)])


class _Scan:
    """One excerpt, prepared once for every rule: its UTF-8 bytes, and the rules it may match."""

    def __init__(self, text: str, prefilter: Prefilter) -> None:
        self.data = encode(text)
        self._prefilter = prefilter
        self._candidates: frozenset[int] | None = None
        self._filtered = False

    def may_match(self, filtered: int | None) -> bool:
        """False when the prefilter rules out the `log` pattern at this place in it."""
        if filtered is None:
            return True
        if not self._filtered:
            self._candidates = self._prefilter.candidates(self.data)
            self._filtered = True
        return self._candidates is None or filtered in self._candidates


def _match(rule: Rule, failure: Failure, scan: _Scan, filtered: int | None) -> str | bool | None:
    """The evidence line when the rule matches (None: matched without a line), else False."""
    if rule.reason is not None and not rule.reason.search(failure.reason or ""):
        return False
    if rule.step is not None and not rule.step.search(failure.step or ""):
        return False
    evidence: str | None = None
    if rule.annotation is not None:
        found = next((a for a in failure.annotations if rule.annotation.search(a)), None)
        if found is None:
            return False
        evidence = found
    if rule.log is not None:
        if not scan.may_match(filtered):
            return False
        # One search over the excerpt (not one per line): then the line around the match.
        at = rule.log.find(scan.data)
        if at is None:
            return False
        evidence = _line_at(scan.data, at)
    return _clean(evidence) if evidence is not None else None


def _line_at(data: bytes, position: int) -> str:
    start = data.rfind(b"\n", 0, position) + 1
    end = data.find(b"\n", position)
    return data[start : end if end >= 0 else len(data)].decode("utf-8", "surrogatepass")


def _clean(line: str) -> str:
    line = line.strip().removeprefix(_ERROR_MARKER).strip()
    return line if len(line) <= EVIDENCE_LIMIT else line[: EVIDENCE_LIMIT - 3] + "..."


def _first_error(failure: Failure) -> str | None:
    lines = [line for line in failure.log.splitlines() if line.strip()]
    marked = next((line for line in lines if _ERROR_MARKER in line), None)
    chosen = marked or next(iter(failure.annotations), None) or (lines[0] if lines else None)
    return _clean(chosen) if chosen else None


# --- loading ------------------------------------------------------------------------------


def parse_rules(document: Any, *, origin: str) -> list[Rule]:
    """Rules from a parsed YAML document (a list of mappings), or RulesError naming the rule."""
    if document is None:
        return []
    if not isinstance(document, list):
        raise RulesError(f"{origin}: the top level must be a list of rules")
    rules = []
    seen: set[str] = set()
    for index, item in enumerate(document, start=1):
        rule = _rule(item, origin=origin, index=index)
        if rule.id in seen:
            raise RulesError(f"{origin}: rule {index} ({rule.id}): the id is used twice")
        seen.add(rule.id)
        rules.append(rule)
    return rules


def _rule(item: Any, *, origin: str, index: int) -> Rule:
    name = f"rule {index}"
    if isinstance(item, Mapping) and isinstance(item.get("id"), str):
        name += f" ({item['id']})"

    def bad(problem: str) -> RulesError:
        return RulesError(f"{origin}: {name}: {problem}")

    if not isinstance(item, Mapping):
        raise bad("must be a mapping with id, category, hint and patterns")
    unknown = sorted(str(key) for key in item if key not in _KNOWN_FIELDS)
    if unknown:
        raise bad(f"unknown field {unknown[0]!r} (known: {', '.join(sorted(_KNOWN_FIELDS))})")
    rule_id = item.get("id")
    if not isinstance(rule_id, str) or not _RULE_ID.fullmatch(rule_id):
        raise bad("'id' must be 1 to 80 letters, digits or '_', '.', ':', '-'")
    category = item.get("category")
    if category not in CATEGORIES:
        raise bad(f"'category' must be one of {', '.join(sorted(CATEGORIES))}")
    hint = item.get("hint")
    if not isinstance(hint, str) or not hint.strip():
        raise bad("'hint' must be a non-empty sentence")
    retryable = item.get("retryable", category == "transient")
    if not isinstance(retryable, bool):
        raise bad("'retryable' must be true or false")
    patterns: dict[str, Pattern] = {}
    for field in _PATTERN_FIELDS:
        source = item.get(field)
        if source is None:
            continue
        if not isinstance(source, str) or not source:
            raise bad(f"'{field}' must be a non-empty regular expression")
        try:
            patterns[field] = Pattern(source)
        except PatternError as exc:
            raise bad(f"'{field}' {exc}") from None
    if not patterns:
        raise bad("names none of step, log, annotation, reason")
    return Rule(
        id=rule_id,
        category=cast(CauseCategory, category),
        hint=" ".join(hint.split()),
        retryable=retryable,
        **patterns,
    )


def load_file(path: Path) -> list[Rule]:
    """The rules of one YAML file, or RulesError (one line, naming the file and the rule)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    # Start-up checks the file, then the server uses it: the same text compiles once.
    return list(_parse_text(text, str(path)))


@functools.lru_cache(maxsize=8)
def _parse_text(text: str, origin: str) -> tuple[Rule, ...]:
    import yaml  # only when there are rules to read (idle memory)

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid"
        raise RulesError(f"{origin}: not valid YAML{where} ({problem})") from None
    return tuple(parse_rules(document, origin=origin))


@functools.cache
def builtin_rules() -> tuple[Rule, ...]:
    """The rules shipped in the package (read and compiled once per process)."""
    import yaml

    source = resources.files("ghapp.core").joinpath("rules/causes.yml")
    document = yaml.safe_load(source.read_text(encoding="utf-8"))
    return tuple(parse_rules(document, origin="ghapp/core/rules/causes.yml"))


def load_rules(user_path: Path | None = None) -> CauseRules:
    """The user's rules (tried first) followed by the built-in ones."""
    user = load_file(user_path) if user_path is not None else []
    return CauseRules(user, then_builtin=True)


@functools.cache
def default_rules() -> CauseRules:
    """The built-in rules alone, for callers without settings (tests, tools)."""
    return CauseRules((), then_builtin=True)
