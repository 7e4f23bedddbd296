"""Grading outside a suite run: a file of responses, or a finished run re-graded by another judge.

`grade_cases_file` grades any responses (e.g. from another harness) on the criteria of
`judges.base.CRITERIA`. `regrade_run` re-grades a run directory's trials without loading the
model, writes the new records and summary beside the originals (`trials.<judge>.jsonl`,
`summary.<judge>.json`, `<judge>` being the file-safe `name@version`), recomputes the verdicts
with the protocol modules, and measures how well the two judges agree (`judge_agreement`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from introspection_bench.errors import (
    GradingInputError,
    IntrospectionBenchError,
    JudgeError,
    RecordsError,
)
from introspection_bench.judges.base import CRITERIA, Grade, GradeRequest, Judge
from introspection_bench.records import RUN_FILE, TRIALS_FILE, RecordStore, TrialRecord

if TYPE_CHECKING:
    from introspection_bench.session import RunConfig

#: Fields each input line must have, per grading protocol (`word` may be null only for
#: `injected_thought`, whose control trials have no word).
REQUIRED_FIELDS: Mapping[str, tuple[str, ...]] = {
    "injected_thought": ("response", "word"),
    "alternative_prompt": ("response", "word"),
    "prefill": ("response", "word"),
    "thought_vs_text": ("response", "word", "options"),
    "yes_no": ("response", "question"),
}


@dataclass(frozen=True)
class GradedFile:
    """What `grade_cases_file` wrote."""

    path: Path
    """The output JSONL file."""
    judge: str
    """The judge as `name@version`."""
    n: int
    """Lines graded."""
    n_errors: int
    """Lines whose grade failed (`error` set, no criteria)."""
    first_error: str | None = None
    """The first failed line's error (e.g. an unreachable endpoint, with its URL and fix)."""


@dataclass(frozen=True)
class Agreement:
    """How well two judges agree on one criterion, over the trials both graded."""

    criterion: str
    """`<grading protocol>.<criterion>`, e.g. `injected_thought.affirms`."""
    n: int
    """Trials graded without error by both judges."""
    agreement: float | None
    """Share of those trials with the same value; None when n is 0."""
    kappa: float | None
    """Cohen's kappa; None when undefined (n is 0, or one value only throughout)."""
    kappa_low: float | None = None
    """Lower end of kappa's 95% interval (asymptotic), clipped to [-1, 1]."""
    kappa_high: float | None = None
    """Upper end of kappa's 95% interval, clipped to [-1, 1]."""


@dataclass(frozen=True)
class VerdictChange:
    """A test whose verdict differs between the original and the re-graded summary."""

    test: str
    cell: str
    """The cell's label (`layer=0.67,strength=1`)."""
    before: bool
    after: bool


@dataclass(frozen=True)
class RegradeResult:
    """What `regrade_run` wrote and measured."""

    trials_path: Path
    summary_path: Path
    judge: str
    """The new judge, `name@version`."""
    previous_judges: tuple[str, ...]
    """The judges of the original records (usually one)."""
    n_graded: int
    """Trials re-graded (trials without a grading protocol are copied unchanged)."""
    n_errors: int
    """Re-graded trials whose grade failed."""
    agreement: tuple[Agreement, ...]
    verdict_changes: tuple[VerdictChange, ...]
    notes: tuple[str, ...] = ()
    """Caveats for the reader (e.g. thresholds of another version than the original run)."""


# --- grading a file of responses -----------------------------------------------------------


def grade_cases_file(
    input_path: str | Path, output_path: str | Path, protocol: str, judge: Judge
) -> GradedFile:
    """Grade every line of a JSONL file of responses and write them with their grades.

    Each output line repeats the input object and adds `grades` (criterion -> value),
    `evidence`, `judge` (`name@version`) and `error` (set when the judge failed on that line).

    Args:
        input_path: JSONL, one object per line with the fields of `REQUIRED_FIELDS[protocol]`
            (plus `question` where the protocol uses it); blank lines are skipped.
        output_path: Where to write the graded lines (replaced atomically).
        protocol: A key of `CRITERIA`.
        judge: The judge.

    Returns:
        What was written.

    Raises:
        GradingInputError: For an unknown protocol, an unreadable file, or a bad line (the
            message names the file, the line and the fix); nothing is written then.

    """
    rows, requests = read_cases_file(input_path, protocol)
    grades = judge.grade_many(requests)
    label = f"{judge.name}@{judge.version}"
    lines = [
        json.dumps(_graded_row(row, grade, label), ensure_ascii=False)
        for row, grade in zip(rows, grades, strict=True)
    ]
    path = Path(output_path)
    _write_lines(path, lines)
    failed = [grade.error for grade in grades if grade.error]
    return GradedFile(path, label, len(rows), len(failed), failed[0] if failed else None)


def read_cases_file(
    path: str | Path, protocol: str
) -> tuple[list[dict[str, Any]], list[GradeRequest]]:
    """Parse and check a JSONL file of responses to grade under `protocol`.

    Returns:
        The input objects and their grade requests, in file order.

    Raises:
        GradingInputError: See `grade_cases_file`.

    """
    if protocol not in CRITERIA:
        raise GradingInputError(
            f"unknown protocol {protocol!r}; use one of: {', '.join(sorted(CRITERIA))}"
        )
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise GradingInputError(f"cannot read {source}: {error}") from error
    rows, requests = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            row = _parse_line(line, f"{source}:{number}", protocol)
            rows.append(row)
            requests.append(_request_from_row(row, protocol))
    if not rows:
        raise GradingInputError(f"{source} holds no lines to grade; write one JSON object per line")
    return rows, requests


def _parse_line(line: str, where: str, protocol: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise GradingInputError(
            f"{where}: not valid JSON ({error.msg} at column {error.colno}); "
            "write one JSON object per line"
        ) from error
    if not isinstance(row, dict):
        raise GradingInputError(f"{where}: a {type(row).__name__}, not a JSON object")
    required = REQUIRED_FIELDS[protocol]
    missing = [name for name in required if name not in row]
    if missing:
        raise GradingInputError(
            f"{where}: missing field {', '.join(repr(m) for m in missing)}; every line of "
            f"--protocol {protocol} needs {', '.join(required)}"
            + (" (word null for a control trial)" if protocol == "injected_thought" else "")
        )
    _check_types(row, where, protocol)
    return row


def _check_types(row: Mapping[str, Any], where: str, protocol: str) -> None:
    if not isinstance(row["response"], str):
        raise GradingInputError(f"{where}: 'response' must be a string, not {row['response']!r}")
    word = row.get("word")
    if word is None and "word" in REQUIRED_FIELDS[protocol] and protocol != "injected_thought":
        raise GradingInputError(
            f"{where}: 'word' is null; --protocol {protocol} needs the concept word"
        )
    if word is not None and not isinstance(word, str):
        raise GradingInputError(f"{where}: 'word' must be a string or null, not {word!r}")
    question = row.get("question")
    if question is not None and not isinstance(question, str):
        raise GradingInputError(f"{where}: 'question' must be a string, not {question!r}")
    if protocol == "yes_no" and not question:
        raise GradingInputError(f"{where}: 'question' is empty; give the yes/no question asked")
    given = row.get("protocol")
    if given is not None and given != protocol:
        raise GradingInputError(
            f"{where}: the line says protocol {given!r} but --protocol is {protocol!r}; "
            "grade each protocol's lines in their own file"
        )
    if protocol == "thought_vs_text":
        options = row["options"]
        if (
            not isinstance(options, list)
            or len(options) < 2
            or not all(isinstance(o, str) for o in options)
        ):
            raise GradingInputError(
                f"{where}: 'options' must be a list of at least 2 candidate words, not {options!r}"
            )


def _request_from_row(row: Mapping[str, Any], protocol: str) -> GradeRequest:
    word = row.get("word")
    return GradeRequest(
        protocol=protocol,
        response=row["response"],
        word=word.lower() if isinstance(word, str) else None,
        question=row.get("question"),
        options=tuple(row.get("options") or ()),
    )


def _graded_row(row: Mapping[str, Any], grade: Grade, label: str) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in ("grades", "evidence", "judge", "error")}
    out["grades"] = dict(grade.criteria)
    out["evidence"] = dict(grade.evidence)
    out["judge"] = grade.judge or label
    out["error"] = grade.error
    return out


# --- re-grading a finished run -------------------------------------------------------------

_REQUESTS: Mapping[str, Callable[[TrialRecord], GradeRequest | None]] = {
    "injected_thought": lambda r: GradeRequest(
        protocol="injected_thought",
        response=r.completion,
        word=None if r.condition == "control" else r.concept,
    ),
    "alternative_prompt": lambda r: GradeRequest(
        protocol="alternative_prompt",
        response=r.completion,
        word=r.concept,
        question=r.extra.get("question"),
    ),
    "prefill": lambda r: GradeRequest(protocol="prefill", response=r.completion, word=r.concept),
    "thought_vs_text": lambda r: (
        GradeRequest(
            protocol="thought_vs_text",
            response=r.completion,
            word=r.concept,
            options=tuple(r.extra.get("options") or ()),
        )
        if r.condition == "think"
        else None
    ),
    "yes_bias": lambda r: GradeRequest(
        protocol="yes_no", response=r.completion, question=r.extra.get("question")
    ),
}


def request_for(record: TrialRecord) -> GradeRequest | None:
    """The grade request of a finished trial, as its protocol module built it.

    A declared protocol's trial records its request (`extra["grade_request"]`), so a user's
    protocol is re-graded without its declaring file.

    Returns:
        The request, or None for trials no judge grades (`intentional_control`, the
        `thought_vs_text` repeat trials, which are scored by substring match).

    """
    build = _REQUESTS.get(record.protocol)
    if build is not None:
        return build(record)
    recorded = record.extra.get("grade_request")  # a declared protocol's trial carries its own
    if not isinstance(recorded, Mapping) or not recorded.get("protocol"):
        return None
    return GradeRequest(
        protocol=str(recorded["protocol"]),
        response=record.completion,
        word=recorded.get("word"),
        question=recorded.get("question"),
        options=tuple(recorded.get("options") or ()),
    )


def judge_slug(label: str) -> str:
    """A judge's `name@version` made safe for a file name.

    `openai:gpt-4o-mini@1` -> `openai-gpt-4o-mini@1`; the "@" marks re-graded copies of a
    run's files, which are never read as record shards.
    """
    slug = re.sub(r"[^A-Za-z0-9._@-]+", "-", label).strip("-.")
    return slug if "@" in slug else f"{slug}@"


def regrade_run(
    run_dir: str | Path,
    judge: Judge,
    thresholds: Mapping[str, Any],
) -> RegradeResult:
    """Re-grade a finished run's trials with `judge` and decide its tests again (no model).

    Writes `trials.<judge>.jsonl` (every record, re-graded where a judge grades it) and
    `summary.<judge>.json` (the original summary's tests, decided on the new grades) beside the
    originals, which are left untouched.

    Args:
        run_dir: A run directory with `run.json`, `trials.jsonl` and `summary.json`.
        judge: The new judge.
        thresholds: The pass rules (`runner.load_thresholds`).

    Returns:
        Paths written, counts, per-criterion agreement and the verdicts that changed.

    Raises:
        RecordsError: When the directory lacks a file of a finished run or holds malformed ones.
        JudgeError: When so many trials failed to grade that a test cannot be decided (the
            re-graded trials are written; no summary is).

    """
    from introspection_bench.protocols.base import Cell
    from introspection_bench.runner import verdicts_from_records
    from introspection_bench.summary import build_summary, load_summary, save_summary

    started = time.monotonic()
    run = Path(run_dir)
    summary = load_summary(run)
    config = _config_of(run, summary)
    records = sorted(RecordStore(run).all(), key=lambda r: r.trial_id)
    if not records:
        raise RecordsError(f"{run} has no trials in {TRIALS_FILE}; re-grade a finished run")
    label = f"{judge.name}@{judge.version}"
    todo = [(record, request) for record in records if (request := request_for(record))]
    grades = judge.grade_many([request for _, request in todo])
    regraded = {r.trial_id: _regraded(r, g, label) for (r, _), g in zip(todo, grades, strict=True)}
    new_records = [regraded.get(r.trial_id, r) for r in records]
    slug = judge_slug(label)
    trials_path = run / f"trials.{slug}.jsonl"
    _write_lines(trials_path, [r.to_json() for r in new_records])

    identity = dict(summary.get("identity") or {})
    if "n_layers" not in identity:
        raise RecordsError(
            f"{run}/summary.json has no identity.n_layers; re-run the suite to write a full summary"
        )
    notes = _threshold_notes(identity, thresholds)
    identity.update(judge=label, thresholds_version=str(thresholds.get("version")))
    tests = [
        (v["test"], Cell(v["cell"]["layer"], v["cell"]["strength"])) for v in summary["verdicts"]
    ]
    n_errors = sum(1 for grade in grades if grade.error)
    try:
        verdicts = verdicts_from_records(
            config,
            new_records,
            int(identity["n_layers"]),
            thresholds,
            tests=tests,
            identity=identity,
            declarations=summary.get("declarations"),
        )
    except IntrospectionBenchError as error:
        if not n_errors:
            raise
        first = next(grade.error for grade in grades if grade.error)
        raise JudgeError(
            f"{n_errors} of {len(todo)} trials failed to grade with {label} (first: {first}), "
            f"too many to decide the tests ({error}); the re-graded trials are in {trials_path}; "
            "check the judge (--judge, --judge-url) and run regrade again"
        ) from error
    elapsed_s = float(summary.get("elapsed_s") or 0.0) + time.monotonic() - started
    new_summary = build_summary(
        config, new_records, verdicts, elapsed_s=elapsed_s, declarations=summary.get("declarations")
    )
    new_summary["regraded_from"] = {
        "summary": "summary.json",
        "judge": (summary.get("identity") or {}).get("judge"),
    }
    summary_path = save_summary(new_summary, run, f"summary.{slug}.json")
    agreement = tuple(judge_agreement(records, new_records))
    previous = tuple(sorted({r.judge for r, _ in todo if r.judge}))
    # Kept beside the run so its report can state how far the two judges agree.
    _write_lines(
        run / f"agreement.{slug}.json",
        [
            json.dumps(
                {"judges": [*previous, label], "criteria": [asdict(a) for a in agreement]}, indent=2
            )
        ],
    )
    return RegradeResult(
        trials_path=trials_path,
        summary_path=summary_path,
        judge=label,
        previous_judges=previous,
        n_graded=len(todo),
        n_errors=n_errors,
        agreement=agreement,
        verdict_changes=tuple(_verdict_changes(summary["verdicts"], new_summary["verdicts"])),
        notes=notes,
    )


def _config_of(run: Path, summary: Mapping[str, Any]) -> RunConfig:
    """The run's RunConfig from run.json (device and batch size from the summary)."""
    from introspection_bench.session import RunConfig

    try:
        key = json.loads((run / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise RecordsError(
            f"cannot read {run / RUN_FILE} ({error}); re-grade a run directory written by the suite"
        ) from error
    old = summary.get("config") or {}
    try:
        return RunConfig.from_key(
            key, device=old.get("device", "auto"), batch_size=old.get("batch_size")
        )
    except (TypeError, AttributeError, IntrospectionBenchError) as error:
        raise RecordsError(
            f"{run / RUN_FILE} does not match this version's run configuration ({error}); "
            "re-grade it with the introspection-bench version that wrote it"
        ) from error


def _regraded(record: TrialRecord, grade: Grade, label: str) -> TrialRecord:
    return replace(
        record,
        grades=dict(grade.criteria),
        evidence=dict(grade.evidence),
        judge=grade.judge or label,
        error=grade.error,
    )


def _threshold_notes(identity: Mapping[str, Any], thresholds: Mapping[str, Any]) -> tuple[str, ...]:
    before, now = identity.get("thresholds_version"), str(thresholds.get("version"))
    if before is not None and str(before) != now:
        return (
            f"the run was decided under thresholds version {before}, the re-graded summary "
            f"under version {now}: verdict changes may come from the thresholds too",
        )
    return ()


def _verdict_changes(
    before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]
) -> list[VerdictChange]:
    old = {(v["test"], v["cell"]["label"]): bool(v["passed"]) for v in before}
    return [
        VerdictChange(v["test"], v["cell"]["label"], old[key], bool(v["passed"]))
        for v in after
        if (key := (v["test"], v["cell"]["label"])) in old and old[key] != bool(v["passed"])
    ]


# --- agreement between two judges ----------------------------------------------------------


def judge_agreement(before: Iterable[TrialRecord], after: Iterable[TrialRecord]) -> list[Agreement]:
    """Per-criterion agreement between two gradings of the same trials (matched by trial id).

    Only trials that both judges graded without error count; criteria are named
    `<grading protocol>.<criterion>` (a yes_bias trial is graded as `yes_no`).

    Returns:
        One `Agreement` per criterion seen, sorted by name.

    """
    pairs: dict[str, list[tuple[Any, Any]]] = {}
    new = {r.trial_id: r for r in after}
    for old in before:
        request = request_for(old)
        other = new.get(old.trial_id)
        if request is None or other is None or old.error or other.error:
            continue
        for criterion in CRITERIA.get(request.protocol, ()):
            if criterion in old.grades and criterion in other.grades:
                pairs.setdefault(f"{request.protocol}.{criterion}", []).append(
                    (old.grades[criterion], other.grades[criterion])
                )
    return [_agreement(name, pairs[name]) for name in sorted(pairs)]


def _agreement(criterion: str, pairs: Sequence[tuple[Any, Any]]) -> Agreement:
    import numpy as np
    from statsmodels.stats.inter_rater import cohens_kappa

    n = len(pairs)
    if not n:
        return Agreement(criterion, 0, None, None)
    raw = sum(1 for a, b in pairs if a == b) / n
    categories = sorted({json.dumps(value) for pair in pairs for value in pair})
    if len(categories) < 2:
        return Agreement(criterion, n, raw, None)
    index = {category: i for i, category in enumerate(categories)}
    table = np.zeros((len(categories), len(categories)))
    for a, b in pairs:
        table[index[json.dumps(a)], index[json.dumps(b)]] += 1
    with np.errstate(divide="ignore", invalid="ignore"):
        result = cohens_kappa(table)
    kappa = float(result.kappa)
    if not np.isfinite(kappa):
        return Agreement(criterion, n, raw, None)
    low, high = (
        max(-1.0, float(result.kappa_low)),
        min(1.0, float(result.kappa_upp)),
    )
    return Agreement(criterion, n, raw, kappa, low, high)


def format_agreement(rows: Sequence[Agreement]) -> str:
    """The agreement table as aligned text lines (criterion, n, raw agreement, kappa [95%])."""
    lines = [f"{'criterion':<38} {'n':>5} {'agree':>7} {'kappa':>7}  95% interval"]
    for row in rows:
        agree = "-" if row.agreement is None else f"{row.agreement:.1%}"
        kappa = "-" if row.kappa is None else f"{row.kappa:.2f}"
        interval = (
            f"[{row.kappa_low:.2f}, {row.kappa_high:.2f}]"
            if row.kappa_low is not None and row.kappa_high is not None
            else "(undefined: one value only)"
            if row.n and row.kappa is None
            else ""
        )
        lines.append(f"{row.criterion:<38} {row.n:>5} {agree:>7} {kappa:>7}  {interval}")
    return "\n".join(lines)


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    """Write JSON lines atomically (a temporary file in the same folder, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".tmp")
    staging.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    staging.replace(path)
