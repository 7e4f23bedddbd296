"""A declared protocol as a run records it, and rebuilt from that record without its file.

`regrade`, `validate`, `merge`, the leaderboard and `--baseline` must decide a user's protocol
(an `Experiment` registered in a test file or conftest.py) long after the run, on another
machine, and for the leaderboard from an untrusted submission. Two ways were open: import the
declaring file again, or record the declaration as data. Importing runs the submitter's code
(arbitrary code on the leaderboard host) and lets the submitter define the rule that checks
their own numbers, and a file that changed since the run decides with another rule. So a run
records each declared protocol as data (`declaration`): its checks with each rule as
`rules.rule_data` (type and fields), its conditions, windows, grading and turns, and a digest
of all of it. The tools rebuild the rules from `rules.RULES` only (`RecordedProtocol`): no code
from the run is executed, the pinned thresholds (alpha) still apply, and a built-in protocol
is never taken from a record. A check whose rule is a Python function is recorded by name; its
tests cannot be decided from the record, and the tools say so (the leaderboard rejects the
submission). The leaderboard also requires every accepted submission that declares a protocol
name to declare it with the same digest (`leaderboard.check_same_declarations`), so a column
of the same name is the same experiment.

The run's declarations go to `protocols.json` in the run directory when the suite starts and
into `summary.json` (`declarations`), which is what the tools read.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from introspection_bench.errors import ConfigError
from introspection_bench.protocols.base import Cell, Verdict
from introspection_bench.protocols.registry import is_builtin
from introspection_bench.protocols.rules import Rule, rule_data, rule_from_data

DECLARATIONS_FILE = "protocols.json"


def _code_name(value: Any) -> str:
    return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', repr(value))}"


def _plain(value: Any) -> Any:
    """Declaration fields as JSON data (dataclasses as dicts, code by its name)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {name: _plain(getattr(value, name)) for name in value.__dataclass_fields__}
    if callable(value):
        return {"code": _code_name(value)}
    return repr(value)


def declaration(experiment: Any) -> dict[str, Any]:
    """What a run records of a declared `Experiment` (JSON data, with its `digest`)."""
    checks = []
    for check in experiment.checks:
        data = rule_data(check.rule)
        entry: dict[str, Any] = {"name": check.name, "per": check.per, "rule": data}
        if data is None:
            entry["code"] = _code_name(check.rule)
        checks.append(entry)
    body = {
        "name": experiment.name,
        "version": str(experiment.version),
        "checks": checks,
        "conditions": [_plain(c) for c in experiment.conditions],
        "spans": [_plain(s) for s in experiment.spans],
        "grading": _plain(experiment.grading),
        "turns": _plain(experiment.turns),
        "samples": _plain(experiment.samples),
        "max_new_tokens": experiment.max_new_tokens,
        "temperature": experiment.temperature,
    }
    return body | {"digest": declaration_digest(body)}


def declaration_digest(data: Mapping[str, Any]) -> str:
    """sha256 (16 hex digits) of a declaration without its digest."""
    body = {k: v for k, v in data.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RecordedCheck:
    """One test of a recorded protocol."""

    name: str
    per: str
    rule: Rule | None
    """None: the rule was code (`code` names it) and cannot be rebuilt."""
    code: str | None = None


@dataclass(frozen=True)
class RecordedProtocol:
    """A declared protocol rebuilt from a run's record: the runner's protocol contract, no trials.

    It decides tests (`evaluate`) like the live `Experiment` did; it cannot build trials.
    """

    NAME: str
    VERSION: str
    checks: tuple[RecordedCheck, ...]
    digest: str

    @property
    def TESTS(self) -> tuple[str, ...]:  # noqa: N802
        """The names of its suite tests."""
        return tuple(check.name for check in self.checks)

    def check(self, test: str) -> RecordedCheck:
        """The check named `test`.

        Raises:
            ConfigError: When the protocol has no such test.

        """
        for check in self.checks:
            if check.name == test:
                return check
        raise ConfigError(f"{self.NAME} has no test {test!r}; its tests: {', '.join(self.TESTS)}")

    def evaluate(
        self,
        session: Any,
        records: Sequence[Any],
        test: str,
        cell: Cell,
        thresholds: Mapping[str, Any],
    ) -> Verdict:
        """The verdict of `test` at `cell` by its recorded rule.

        Raises:
            ConfigError: When the rule was a Python function (not carried by the record).

        """
        check = self.check(test)
        if check.rule is None:
            raise ConfigError(
                f"test {test!r} of declared protocol {self.NAME} is decided by the Python "
                f"function {check.code}, which a run's record cannot carry; decide it with a rule "
                "from introspection_bench.rules (Exceeds, NotAbove, UpperBoundBelow) so it can "
                "be re-decided from the records"
            )
        return check.rule.decide(self.NAME, session, records, test, cell, thresholds)


def rebuild(data: Mapping[str, Any]) -> RecordedProtocol:
    """A `RecordedProtocol` from one `declaration` (no code of the run is executed).

    Raises:
        ConfigError: For a built-in name, a malformed entry, an unknown rule type, or a digest
            that does not match the declaration (edited after the run).

    """
    try:
        name = str(data["name"])
        if is_builtin(name):
            raise ConfigError(
                f"declaration {name!r} names a built-in protocol; built-ins are never taken "
                "from a run's record"
            )
        if declaration_digest(data) != data.get("digest"):
            raise ConfigError(f"declaration {name!r}: digest does not match its content")
        checks = tuple(
            RecordedCheck(
                name=str(c["name"]),
                per=str(c.get("per", "cell")),
                rule=None if c.get("rule") is None else rule_from_data(c["rule"]),
                code=c.get("code"),
            )
            for c in data["checks"]
        )
    except (KeyError, TypeError, AttributeError) as error:
        raise ConfigError(f"malformed protocol declaration {str(data)[:80]}: {error!r}") from error
    return RecordedProtocol(name, str(data.get("version", "1")), checks, str(data["digest"]))


def rebuild_all(declarations: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    """Test name -> its `RecordedProtocol`, for every declaration of a run.

    Raises:
        ConfigError: See `rebuild`; also when a test name is declared twice or is a built-in's.

    """
    from introspection_bench.runner import TEST_OWNERS

    owners: dict[str, Any] = {}
    for data in (declarations or {}).values():
        protocol = rebuild(data)
        for test in protocol.TESTS:
            if test in TEST_OWNERS or test in owners:
                raise ConfigError(f"declared test {test!r} of {protocol.NAME} is already taken")
            owners[test] = protocol
    return owners


def declarations_of(experiments: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """Protocol name -> `declaration`, for the declared (non built-in) experiments given."""
    return {e.NAME: declaration(e) for e in experiments if not is_builtin(e.NAME)}


def write_declarations(run_dir: Path, experiments: Sequence[Any]) -> Path:
    """Write the run's `protocols.json` (atomically; every worker writes the same content)."""
    path = Path(run_dir) / DECLARATIONS_FILE
    staging = path.with_suffix(f".{os.getpid()}.tmp")
    staging.write_text(json.dumps(declarations_of(experiments), indent=2, sort_keys=True))
    staging.replace(path)
    return path


def read_declarations(run_dir: Path) -> dict[str, Any]:
    """The run's `protocols.json`, or {} when it has none (a run of built-ins only)."""
    path = Path(run_dir) / DECLARATIONS_FILE
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text(encoding="utf-8")))
