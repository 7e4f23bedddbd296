"""Checking one submitted run against its own records, for `validate` and the leaderboard.

Nothing a summary claims is trusted: `recompute` decides every test of the run's configuration
again from trials.jsonl with the protocol modules' own `evaluate` and the pinned thresholds,
and each metric, interval, p-value and verdict of the summary is compared with the result.
A declared (user) protocol is decided by the rule its summary records as data, rebuilt from
`protocols.rules` (no submitted code is imported); a rule recorded only as code is rejected.
`regrade_sample` re-grades a deterministic sample of the completions with the offline rule
judge and rejects disagreement beyond that judge's measured error (fixtures/grading).
`content_digest` lets the leaderboard find the same trials submitted under two identities.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from introspection_bench.errors import IntrospectionBenchError
from introspection_bench.judges.base import Judge
from introspection_bench.records import TRIALS_FILE, TrialRecord, read_records
from introspection_bench.summary import SUMMARY_FILE, load_summary

#: Metrics a submission must carry (name, condition): the controls critics require.
REQUIRED_CONTROLS = (
    ("injected_thought.false_positive", "control"),
    ("injected_thought.random_affirms", "random_vector"),
    ("yes_bias.affirmative", "none"),
    ("yes_bias.affirmative", "injected"),
)
#: At most this many completions are re-graded per submission (a smoke run has 264 trials).
REGRADE_SAMPLE = 400
#: The criteria the verdicts are decided on; intermediate ones (coherent, ...) feed these.
DECISIVE_CRITERIA = ("success", "affirms", "choice", "claims_intent", "affirmative")
#: At most this many mismatches are listed one by one.
_MAX_LISTED = 5
_REL, _ABS = 1e-6, 1e-9


@dataclass
class Submission:
    """One submitted run and what validation found."""

    source: str
    summary: dict[str, Any] | None = None
    """The summary as submitted."""
    records: list[TrialRecord] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    """Why it was rejected; empty when accepted."""
    recomputed: dict[str, Any] | None = None
    """The summary with metrics and verdicts recomputed from the records (what is shown)."""
    values: dict[str, Any] = field(default_factory=dict)
    """Leaderboard column -> `leaderboard.Value`, from `recomputed`."""

    @property
    def accepted(self) -> bool:
        """True when no validation step found a problem."""
        return not self.reasons


@dataclass(frozen=True)
class Checks:
    """What a submission is checked against."""

    thresholds: Mapping[str, Any]
    """The pinned pass rules (suites/thresholds.toml)."""
    judge: Judge
    """The offline rule judge that re-grades the sample."""
    judge_accuracy: Mapping[str, Mapping[str, Any]]
    """`judges.accuracy.measure_accuracy` of `judge` on fixtures/grading."""
    sample_size: int = REGRADE_SAMPLE


@cache
def default_checks() -> Checks:
    """The pinned thresholds, the installed rule judge and its measured accuracy (once)."""
    from introspection_bench.judges.base import build_judge
    from introspection_bench.thresholds import default_thresholds_path, load_thresholds

    judge = build_judge("rule")
    return Checks(load_thresholds(default_thresholds_path()), judge, measured_accuracy(judge))


def measured_accuracy(judge: Judge) -> dict[str, dict[str, Any]]:
    """The judge's accuracy on fixtures/grading, measured once per judge version and fixtures.

    Cached in `<cache root>/judge_accuracy/` (measuring the rule judge takes 1-2 min on 2 CPU
    cores), keyed by the judge's `name@version` and the fixtures' sha256.
    """
    from introspection_bench.judges.accuracy import load_labelled_cases, measure_accuracy
    from introspection_bench.models import cache_root
    from introspection_bench.report import GRADING_FIXTURES

    digest = hashlib.sha256()
    for path in sorted(GRADING_FIXTURES.glob("*.jsonl")):
        digest.update(path.read_bytes())
    label = f"{judge.name}@{judge.version}"
    name = "".join(c if c.isalnum() or c in "@.-" else "-" for c in label)
    cached = cache_root() / "judge_accuracy" / f"{name}-{digest.hexdigest()[:16]}.json"
    if cached.is_file():
        return dict(json.loads(cached.read_text(encoding="utf-8")))
    table = measure_accuracy(judge, load_labelled_cases(GRADING_FIXTURES))
    cached.parent.mkdir(parents=True, exist_ok=True)
    staging = cached.with_suffix(".tmp")
    staging.write_text(json.dumps(table, indent=2), encoding="utf-8")
    staging.replace(cached)
    return table


# -- one submission ----------------------------------------------------------------------------


def load_submission(path: Path, checks: Checks | None = None) -> Submission:
    """Read a submission (run dir or summary.json) and run every per-submission check.

    Args:
        path: A run directory, or its summary.json.
        checks: Thresholds, judge and accuracy to check against (default: `default_checks`).

    Returns:
        The submission; `reasons` is empty when it is valid on its own.

    """
    path = Path(path)
    run_dir = path if path.is_dir() else path.parent
    submission = Submission(str(path))
    try:
        submission.summary = load_summary(run_dir / SUMMARY_FILE if path.is_dir() else path)
    except IntrospectionBenchError as error:
        submission.reasons.append(f"schema: {error}")
        return submission
    trials = run_dir / TRIALS_FILE
    if not trials.is_file():
        submission.reasons.append(
            f"no {TRIALS_FILE} beside the summary: its metrics cannot be checked"
        )
        return submission
    try:
        submission.records = list(read_records(trials))
    except IntrospectionBenchError as error:
        submission.reasons.append(f"trials: {error}")
        return submission
    checks = checks or default_checks()
    submission.reasons.extend(check_identity(submission.summary, submission.records, checks))
    submission.recomputed, mismatches = recompute(
        submission.summary, submission.records, checks.thresholds
    )
    submission.reasons.extend(mismatches)
    if submission.recomputed is not None:
        submission.reasons.extend(regrade_sample(submission.records, checks))
    return submission


def pinned_stimuli_hash() -> str:
    """sha256 of the package's pinned stimuli (fixtures/paper_stimuli.json)."""
    from introspection_bench.stimuli import load_stimuli

    return load_stimuli().sha256


def check_identity(
    summary: Mapping[str, Any], records: Sequence[TrialRecord], checks: Checks
) -> list[str]:
    """Reasons to reject: stimuli, thresholds, controls, counts and the records' identity."""
    reasons = []
    identity = summary["identity"]
    stimuli, pinned = identity["stimuli_hash"], pinned_stimuli_hash()
    if stimuli != pinned:
        reasons.append(
            f"stimuli hash {stimuli[:12]}... is not the pinned paper_stimuli.json "
            f"({pinned[:12]}...)"
        )
    version = str(checks.thresholds.get("version"))
    if str(identity.get("thresholds_version")) != version:
        reasons.append(
            f"decided under thresholds version {identity.get('thresholds_version')}; this "
            f"leaderboard pins version {version} (suites/thresholds.toml)"
        )
    present = {(m["name"], m["condition"]) for m in summary["metrics"]}
    missing = [f"{n}[{c}]" for n, c in REQUIRED_CONTROLS if (n, c) not in present]
    if missing:
        reasons.append(f"required controls missing: {', '.join(missing)}")
    if summary["n_trials"] != len(records):
        reasons.append(
            f"summary counts {summary['n_trials']} trials, trials.jsonl holds {len(records)}"
        )
    judge = identity["judge"]
    foreign = sorted({r.judge for r in records if r.grades and r.judge != judge})
    if foreign:
        reasons.append(f"records graded by {', '.join(foreign)}, summary says {judge}")
    for name, label in (("stimuli_hash", "stimuli hash"), ("model", "model")):
        other = sorted({str(getattr(r, name)) for r in records} - {str(identity[name])})
        if other:
            reasons.append(f"records carry another {label} ({other[0][:40]}) than the summary")
    fingerprints = sorted({r.model_fingerprint for r in records})
    if fingerprints and fingerprints != [identity["model_fingerprint"]]:
        reasons.append(
            f"records carry model fingerprint {', '.join(f[:12] for f in fingerprints)}, "
            f"the summary {identity['model_fingerprint'][:12]}"
        )
    return reasons


def recompute(
    summary: Mapping[str, Any], records: Sequence[TrialRecord], thresholds: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, list[str]]:
    """Decide every test of the run's configuration from its records; compare with the summary.

    Args:
        summary: The submitted summary.
        records: Its trials.jsonl.
        thresholds: The pinned pass rules.

    Returns:
        The summary with recomputed `metrics`, `verdicts`, `complete` and `incomplete` (None
        when the records cannot be evaluated), and one reason per mismatch.

    """
    from introspection_bench.runner import verdicts_from_records
    from introspection_bench.session import RunConfig
    from introspection_bench.summary import expected_tests, flat_metrics, incompleteness

    identity = summary["identity"]
    declarations = summary.get("declarations") or {}
    try:
        config = RunConfig.from_key(dict(summary["config"]))
        n_layers = int(identity["n_layers"])
        gaps = incompleteness(config, records, summary["verdicts"], declarations)
    except (IntrospectionBenchError, KeyError, TypeError, ValueError, AttributeError) as error:
        return None, [f"cannot read the run's configuration from its summary: {error!r}"]
    reasons = [f"incomplete run: {'; '.join(gaps)}"] if gaps else []
    if summary.get("complete") is False and not gaps:
        reasons.append("the summary marks the run incomplete")
    try:  # declared protocols: rules rebuilt from the summary's data, no submitted code runs
        verdicts = verdicts_from_records(
            config,
            records,
            n_layers,
            thresholds,
            tests=expected_tests(config, declarations),
            identity=identity,
            declarations=declarations,
        )
    except (IntrospectionBenchError, KeyError, TypeError, ValueError, AttributeError) as error:
        # Boundary of an untrusted submission: any failure to evaluate it is its rejection
        # (a partial run's missing trials are already said above).
        return None, reasons or [f"cannot recompute the verdicts from {TRIALS_FILE}: {error!r}"]
    shown = [{k: v for k, v in verdict.items() if k != "identity"} for verdict in verdicts]
    recomputed = dict(summary) | {
        "metrics": flat_metrics(verdicts),
        "verdicts": shown,
        "complete": not gaps,
        "incomplete": gaps,
    }
    mismatches = _metric_mismatches(summary["metrics"], recomputed["metrics"])
    mismatches += _verdict_mismatches(summary["verdicts"], shown, str(thresholds.get("version")))
    if gaps:  # the undecided tests of a partial run are said once, in `reasons`
        mismatches = [m for m in mismatches if not m.endswith("missing from the summary")]
    if len(mismatches) > _MAX_LISTED + 1:
        more = len(mismatches) - _MAX_LISTED
        mismatches = [*mismatches[:_MAX_LISTED], f"... and {more} more mismatches"]
    return recomputed, reasons + mismatches


def _describe(metric: Mapping[str, Any]) -> str:
    interval = metric.get("interval") or {"low": metric.get("low"), "high": metric.get("high")}
    head = f"{metric['k']}/{metric['n']} = " if metric.get("k") is not None else ""
    return f"{head}{metric['estimate']:.4g} [{interval['low']:.4g}, {interval['high']:.4g}]"


def _numbers(metric: Mapping[str, Any]) -> list[tuple[str, Any]]:
    interval = metric.get("interval") or {"low": metric.get("low"), "high": metric.get("high")}
    params = metric.get("params") or {}
    return [
        ("k", metric.get("k")),
        ("n", metric.get("n")),
        ("estimate", metric.get("estimate")),
        ("low", interval.get("low")),
        ("high", interval.get("high")),
        *sorted((f"params.{k}", v) for k, v in params.items()),
    ]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, int | float):
        return bool(a == b)
    if not isinstance(b, int | float):
        return False
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=_REL, abs_tol=_ABS)


def _differs(claimed: Mapping[str, Any], found: Mapping[str, Any]) -> list[str]:
    mine, theirs = dict(_numbers(claimed)), dict(_numbers(found))
    return [
        name
        for name in sorted(set(mine) | set(theirs))
        if not _same(mine.get(name), theirs.get(name))
    ]


def _metric_mismatches(
    claimed: Sequence[Mapping[str, Any]], found: Sequence[Mapping[str, Any]]
) -> list[str]:
    recomputed = {m["key"]: m for m in found}
    problems = []
    for metric in claimed:
        other = recomputed.get(metric["key"])
        if other is None:
            problems.append(f"{metric['key']}: in the summary, not given by {TRIALS_FILE}")
            continue
        fields = _differs(metric, other)
        if fields:
            problems.append(
                f"{metric['key']}: summary {_describe(metric)}, {TRIALS_FILE} gives "
                f"{_describe(other)} (differs in {', '.join(fields)})"
            )
    listed = {m["key"] for m in claimed}
    problems += [f"{key}: missing from the summary" for key in recomputed if key not in listed]
    return problems


def _verdict_mismatches(
    claimed: Sequence[Mapping[str, Any]], found: Sequence[Mapping[str, Any]], version: str
) -> list[str]:
    from introspection_bench.summary import metric_key

    recomputed = {(v["test"], v["cell"]["label"]): v for v in found}
    status = {True: "PASS", False: "FAIL"}
    problems = []
    for verdict in claimed:
        where = f"{verdict['test']}[{verdict['cell']['label']}]"
        other = recomputed.get((verdict["test"], verdict["cell"]["label"]))
        if other is None:
            problems.append(f"verdict {where} is not a test of the run's configuration")
            continue
        if bool(verdict["passed"]) != bool(other["passed"]):
            problems.append(
                f"verdict {where}: summary says {status[bool(verdict['passed'])]}, "
                f"{TRIALS_FILE} with thresholds version {version} gives "
                f"{status[bool(other['passed'])]}"
            )
        theirs = {
            metric_key(m["name"], m["condition"], m["layer"], m["strength"]): m
            for m in other["metrics"]
        }
        for metric in verdict["metrics"]:
            key = metric_key(
                metric["name"], metric["condition"], metric["layer"], metric["strength"]
            )
            if key not in theirs or _differs(metric, theirs[key]):
                problems.append(f"verdict {where}: its metric {key} differs from {TRIALS_FILE}")
                break
    return problems


# -- re-grading a sample -----------------------------------------------------------------------


def regrade_sample(records: Sequence[TrialRecord], checks: Checks) -> list[str]:
    """Re-grade a deterministic sample with the rule judge; reject disagreement beyond its error.

    The sample is the `checks.sample_size` graded trials first in sha256(content, trial id)
    order, where content hashes every record with its grades: the sample is fixed for a
    submission, and changing any grade draws a new one. Per decisive criterion, the number of
    disagreements is tested against the judge's measured error on fixtures/grading (the upper
    end of its Wilson 95% interval): one-sided exact binomial test, Holm over the criteria, at
    the thresholds' alpha.

    Returns:
        One reason per criterion whose disagreement is significantly above the judge's error.

    """
    from introspection_bench.grading import request_for
    from introspection_bench.stats import binomial_above, holm, rate

    graded = [
        (record, request)
        for record in records
        if record.grades and not record.error and (request := request_for(record))
    ]
    seed = content_digest(records, with_grades=True)
    graded.sort(key=lambda pair: hashlib.sha256(f"{seed}:{pair[0].trial_id}".encode()).digest())
    sample = graded[: checks.sample_size]
    grades = checks.judge.grade_many([request for _, request in sample])
    counts: dict[str, list[int]] = {}
    for (record, _), grade in zip(sample, grades, strict=True):
        if grade.error:
            continue
        for criterion in DECISIVE_CRITERIA:
            if criterion in record.grades and criterion in grade.criteria:
                seen = counts.setdefault(criterion, [0, 0])
                seen[0] += int(record.grades[criterion] != grade.criteria[criterion])
                seen[1] += 1
    tested = []
    for criterion, (disagree, n) in sorted(counts.items()):
        row = checks.judge_accuracy.get(criterion)
        if row is None or not n:
            continue
        n_cases = int(row["n"])
        wrong = n_cases - round(float(row["accuracy"]) * n_cases)
        tolerated = rate(wrong, n_cases).high
        tested.append((criterion, disagree, n, tolerated, binomial_above(disagree, n, tolerated)))
    if not tested:
        return []
    alpha = float(checks.thresholds["alpha"])
    label = f"{checks.judge.name}@{checks.judge.version}"
    return [
        f"re-graded {len(sample)} sampled completions with {label}: {criterion} disagrees on "
        f"{rate(disagree, n).describe()} of them, above the judge's measured error "
        f"(at most {tolerated:.1%}, fixtures/grading; Holm p={p_holm:.2g})"
        for (criterion, disagree, n, tolerated, _), p_holm in zip(
            tested, holm([t[-1] for t in tested]), strict=True
        )
        if p_holm < alpha
    ]


def content_digest(records: Sequence[TrialRecord], *, with_grades: bool = False) -> str:
    """sha256 of what the trials are, without who claims them (model name, fingerprint).

    Two submissions with the same digest ran the same trials and got the same completions:
    the same run, whatever identity it is submitted under.
    """
    digest = hashlib.sha256()
    for record in sorted(records, key=lambda r: r.trial_id):
        digest.update(
            json.dumps(_content(record, with_grades), sort_keys=True, default=str).encode()
        )
    return digest.hexdigest()


def record_digests(records: Sequence[TrialRecord]) -> set[str]:
    """One content hash per record (identity and grades left out), to measure overlap."""
    return {
        hashlib.sha256(
            json.dumps(_content(r, False), sort_keys=True, default=str).encode()
        ).hexdigest()
        for r in records
    }


def _content(record: TrialRecord, with_grades: bool) -> dict[str, Any]:
    content = {
        "trial_id": record.trial_id,
        "seed": record.seed,
        "prompt": record.prompt,
        "completion": record.completion,
        "injected_norm": record.injected_norm,
        "norm_ratio": record.norm_ratio,
        "extra": record.extra,
    }
    if with_grades:
        content["grades"] = record.grades
    return content
