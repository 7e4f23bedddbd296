"""The versioned run summary (`summary.json`): configuration, identity, versions, metrics, verdicts.

The shape is pinned by `introspection_bench/data/summary.schema.json` (JSON Schema 2020-12):
`save_summary` validates before writing and `load_summary` validates on read, so a summary that
a report, a comparison or a leaderboard reads is always well formed.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from introspection_bench.errors import RecordsError
from introspection_bench.records import TrialRecord

SUMMARY_SCHEMA_VERSION = "1.2"
SUMMARY_FILE = "summary.json"
SCHEMA_PATH = Path(__file__).resolve().parent / "data" / "summary.schema.json"
_PACKAGES = ("introspection-bench", "torch", "transformers", "scipy", "statsmodels", "openai")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape results."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_hash(cwd: Path | None = None) -> str | None:
    """The checkout's commit (with `-dirty`), or None outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        # GIT_OPTIONAL_LOCKS=0: `git status` would otherwise take .git/index.lock to refresh the
        # index, and a run interrupted at that moment leaves the lock behind (the next `git
        # commit` then fails); parallel workers would also contend for it.
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")


def build_summary(
    config: Any,
    records: Sequence[TrialRecord],
    verdicts: Sequence[Mapping[str, Any]],
    *,
    elapsed_s: float,
    declarations: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The summary object: stable field order, one entry per verdict with its metrics.

    `complete` is True only when every test of the configuration (built-in and declared) has a
    verdict and every trial is graded without error; `incomplete` lists why not
    (`incompleteness`). `declarations` are the run's declared protocols as data
    (`protocols.recorded`): what `regrade`, `validate` and the leaderboard decide them by.
    """
    identity = dict(verdicts[0]["identity"]) if verdicts else {}
    ordered = sorted(verdicts, key=lambda v: (v["test"], v["cell"]["label"]))
    declared = dict(declarations or {})
    reasons = incompleteness(config, records, ordered, declared)
    return {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "complete": not reasons,
        "incomplete": reasons,
        "config": config.key() | {"device": config.device, "batch_size": config.batch_size},
        "identity": identity,
        "versions": package_versions(),
        "git": git_hash(),
        "n_trials": len(records),
        "n_errors": sum(1 for r in records if r.error),
        "elapsed_s": round(elapsed_s, 1),
        "protocols": protocol_versions(ordered),
        "graders": sorted({r.judge for r in records if r.judge}),
        "metrics": flat_metrics(ordered),
        "verdicts": [{k: v for k, v in verdict.items() if k != "identity"} for verdict in ordered],
        "declarations": declared,
    }


def expected_tests(
    config: Any, declarations: Mapping[str, Any] | None = None
) -> list[tuple[str, Any]]:
    """Every (test, cell) a full run of `config` decides: what `pytest suites/` parametrizes.

    Args:
        config: The run's `RunConfig`.
        declarations: The run's declared protocols (`summary["declarations"]`): each check
            adds its cells by its `per` (`cell`, `layer` or `run`).

    Returns:
        (test name, `protocols.base.Cell`) pairs, built-in protocols first.

    """
    from introspection_bench.protocols import intentional_control
    from introspection_bench.protocols._common import strengths_for
    from introspection_bench.protocols.base import Cell
    from introspection_bench.runner import PROTOCOL_MODULES

    tests: list[tuple[str, Any]] = []
    for module in PROTOCOL_MODULES:
        for test in module.TESTS:
            if test == "control":
                tests.append((test, Cell(None, None)))
            elif module is intentional_control:
                tests += [(test, Cell(layer, None)) for layer in config.layers]
            else:
                strengths = strengths_for(config, module.NAME)
                tests += [(test, Cell(lr, s)) for lr in config.layers for s in strengths]
    for name, declared in sorted((declarations or {}).items()):
        strengths = strengths_for(config, name)
        for check in declared.get("checks", ()):
            per = check.get("per", "cell")
            if per == "run":
                tests.append((check["name"], Cell(None, None)))
            elif per == "layer":
                tests += [(check["name"], Cell(layer, None)) for layer in config.layers]
            else:
                tests += [(check["name"], Cell(lr, s)) for lr in config.layers for s in strengths]
    return tests


def incompleteness(
    config: Any,
    records: Sequence[TrialRecord],
    verdicts: Sequence[Mapping[str, Any]],
    declarations: Mapping[str, Any] | None = None,
) -> list[str]:
    """Why a run is partial (empty when complete).

    A run is partial when a test of its configuration has no verdict (an interrupted session,
    a `-k` selection, a protocol that raised), a trial was generated but not graded, or a
    trial carries an error (generation or grading failed).

    Args:
        config: The run's `RunConfig`.
        records: Every record of the run.
        verdicts: The verdicts, as plain data (`runner.verdict_data`).
        declarations: The run's declared protocols (their tests are expected too).

    Returns:
        One sentence per kind of gap, with counts and an example.

    """
    from introspection_bench.grading import request_for

    reasons = []
    decided = {(v["test"], v["cell"]["label"]) for v in verdicts}
    missing = [
        f"{test}[{cell.label}]"
        for test, cell in expected_tests(config, declarations)
        if (test, cell.label) not in decided
    ]
    if missing:
        reasons.append(
            f"{len(missing)} test(s) without a verdict: {', '.join(missing[:4])}"
            + (", ..." if len(missing) > 4 else "")
        )
    ungraded = [r for r in records if not r.error and not r.grades and request_for(r)]
    if ungraded:
        reasons.append(
            f"{len(ungraded)} trial(s) generated but not graded (e.g. {ungraded[0].trial_id})"
        )
    failed = describe_errors(records)
    if failed:
        reasons.append(failed)
    return reasons


def describe_errors(records: Sequence[TrialRecord]) -> str | None:
    """One line on the trials that failed (generation or grading), or None when none did.

    The first error is quoted whole: a judge's message names its URL and the fix.
    """
    failed = [r for r in records if r.error]
    if not failed:
        return None
    protocols = sorted({r.protocol for r in failed})
    return (
        f"{len(failed)} of {len(records)} trial(s) with errors ({', '.join(protocols)}); "
        f"first, {failed[0].trial_id}: {failed[0].error}"
    )


def metric_key(name: str, condition: str, layer: int | None, strength: float | None) -> str:
    """Stable metric id: `injected_thought.success[injected]@L20,s0.5` (no `@` for shared controls).

    Args:
        name: `<protocol>.<metric>`.
        condition: The protocol condition.
        layer: Block index, None for cell-independent metrics.
        strength: Dose, None for cell-independent metrics.

    Returns:
        The key.

    """
    cell = ",".join(
        part
        for part in (
            f"L{layer}" if layer is not None else "",
            f"s{strength:g}" if strength is not None else "",
        )
        if part
    )
    return f"{name}[{condition}]" + (f"@{cell}" if cell else "")


def flat_metrics(verdicts: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every metric of the verdicts once, keyed by `metric_key`, params merged, sorted by key.

    The same control metric (e.g. the no-injection false-positive rate) appears in many
    verdicts; it is listed once, with the union of the params the verdicts attached to it.
    """
    merged: dict[str, dict[str, Any]] = {}
    for verdict in verdicts:
        for metric in verdict["metrics"]:
            cell = (metric["layer"], metric["strength"])
            key = metric_key(metric["name"], metric["condition"], *cell)
            entry = merged.setdefault(
                key,
                {
                    "key": key,
                    "name": metric["name"],
                    "protocol": verdict.get("protocol", metric["name"].split(".")[0]),
                    "protocol_version": str(verdict.get("protocol_version", "")),
                    "condition": metric["condition"],
                    "layer": metric["layer"],
                    "strength": metric["strength"],
                    "estimate": metric["estimate"],
                    "k": metric["k"],
                    "n": metric["n"],
                    "interval": {
                        "low": metric["low"],
                        "high": metric["high"],
                        "level": 0.95,
                        "method": metric["method"],
                    },
                    "params": {},
                },
            )
            entry["params"].update(metric.get("params") or {})
    return [merged[key] for key in sorted(merged)]


def protocol_versions(verdicts: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Protocol name -> version, over the verdicts."""
    ordered = sorted(verdicts, key=lambda v: str(v["protocol"]))
    return {v["protocol"]: str(v["protocol_version"]) for v in ordered}


@cache
def _schema() -> dict[str, Any]:
    return dict(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def validate_summary(summary: Mapping[str, Any], source: str = "summary") -> None:
    """Check a summary against the packaged JSON Schema.

    Args:
        summary: The parsed summary.
        source: Where it came from, for the message.

    Raises:
        RecordsError: Naming the first offending field and the schema rule it breaks.

    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(summary), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(part) for part in first.absolute_path) or "(top level)"
        raise RecordsError(
            f"{source} does not match summary schema {SCHEMA_PATH.name} at {where}: {first.message}"
            f" ({len(errors)} error(s)); regenerate it with this version of introspection-bench"
        )


def load_summary(path: Path) -> dict[str, Any]:
    """Read and validate `summary.json` (a file or its run directory).

    Args:
        path: `summary.json` or the run directory holding it.

    Returns:
        The summary as plain JSON data.

    A version 1.0 summary (no flat metrics) is completed with `metrics` and `protocols`
    derived from its verdicts, so callers always see the current shape.

    Raises:
        RecordsError: When the file is missing, is not JSON, or fails the schema.

    """
    path = Path(path)
    if path.is_dir():
        path = path / SUMMARY_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise RecordsError(
            f"cannot read summary {path}: {error}; pass a run directory or its summary.json"
        ) from error
    except json.JSONDecodeError as error:
        raise RecordsError(f"{path} is not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise RecordsError(f"{path} holds {type(data).__name__}, not a summary object")
    validate_summary(data, str(path))
    if "complete" not in data:  # schema 1.0 / 1.1: completeness was not recorded
        data["complete"] = None
        data["incomplete"] = [f"schema {data['schema_version']} summary: completeness not recorded"]
    data.setdefault("protocols", protocol_versions(data["verdicts"]))
    data.setdefault("metrics", flat_metrics(data["verdicts"]))
    return data


def save_summary(summary: Mapping[str, Any], report_dir: Path, name: str = SUMMARY_FILE) -> Path:
    """Validate, then write `summary.json` atomically; returns its path.

    `name` writes another file of the run dir instead (e.g. `summary.<judge>.json`, a re-graded
    summary beside the original).

    A summary that fails the schema is kept as `summary.invalid.json` for inspection (the
    records are untouched, so a rerun rebuilds it), and the error is raised.

    Raises:
        RecordsError: When the summary does not match the schema.

    """
    text = json.dumps(summary, indent=2, default=float)
    path = Path(report_dir) / name
    try:
        validate_summary(json.loads(text), "the new summary")
    except RecordsError as error:
        path.with_name("summary.invalid.json").write_text(text)
        raise RecordsError(f"{error}; kept as {path.with_name('summary.invalid.json')}") from error
    staging = path.with_suffix(".tmp")
    staging.write_text(text)
    staging.replace(path)
    return path
