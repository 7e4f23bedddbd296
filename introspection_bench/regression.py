"""Regression mode: compare a run's metrics to a baseline summary, metric by metric.

Each metric present in both runs is compared two-sided: rates with `stats.proportion_difference`
(current - baseline, Newcombe interval, score-test p), continuous metrics (intentional-control
cosine gaps) with a normal approximation from their 95% intervals. The p-values are Holm-adjusted
over every compared metric. A significant change in the bad direction is a regression: an
introspection metric down, or a control's false-positive rate up. Metrics whose direction has no
meaning (e.g. the apology rate without injection) are reported as `changed`, never as a failure.

Runs with different stimuli, or different versions of a protocol they share, measure different
things and are refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scipy.stats import norm

from introspection_bench.errors import ConfigError
from introspection_bench.stats import holm, proportion_difference

HIGHER_IS_BETTER = 1
LOWER_IS_BETTER = -1
NEUTRAL = 0

#: (metric name, condition) -> which way is good; a name alone covers every condition.
DIRECTIONS: Mapping[tuple[str, str | None], int] = {
    ("injected_thought.success", None): HIGHER_IS_BETTER,
    ("injected_thought.false_positive", None): LOWER_IS_BETTER,
    ("injected_thought.random_affirms", None): LOWER_IS_BETTER,
    ("thought_vs_text.naming", None): HIGHER_IS_BETTER,
    ("thought_vs_text.transcription", None): HIGHER_IS_BETTER,
    ("thought_vs_text.both", None): HIGHER_IS_BETTER,
    ("prefill.apology", "matching"): LOWER_IS_BETTER,
    ("yes_bias.affirmative", None): LOWER_IS_BETTER,
    ("alternative_prompt.success", "injected"): HIGHER_IS_BETTER,
    ("alternative_prompt.success", "none"): LOWER_IS_BETTER,
    ("intentional_control.think_minus_dont", None): HIGHER_IS_BETTER,
    ("intentional_control.dont_minus_baseline", None): HIGHER_IS_BETTER,
}
_Z95 = float(norm.ppf(0.975))


def direction_of(name: str, condition: str) -> int:
    """Which way a metric should move: +1 higher is better, -1 lower is better, 0 no direction."""
    return DIRECTIONS.get((name, condition), DIRECTIONS.get((name, None), NEUTRAL))


@dataclass(frozen=True)
class MetricComparison:
    """One metric in the baseline and the current run."""

    key: str
    """`summary.metric_key` of the metric (name, condition, layer, strength)."""
    baseline: Mapping[str, Any]
    """The baseline's flat metric."""
    current: Mapping[str, Any] | None
    """The current run's flat metric; None when this run did not measure it."""
    direction: int
    difference: float = math.nan
    """current - baseline."""
    low: float = math.nan
    high: float = math.nan
    p_value: float = math.nan
    """Two-sided, unadjusted."""
    p_holm: float = math.nan
    """Holm-adjusted over every compared metric."""
    method: str = ""
    status: str = "missing"
    """`ok`, `regression`, `improvement`, `changed` (significant, no direction) or `missing`."""

    @property
    def failed(self) -> bool:
        """True for a significant change in the bad direction."""
        return self.status == "regression"

    def message(self) -> str:
        """One line with both numbers, the difference, its interval and the adjusted p."""
        before = describe_metric(self.baseline)
        if self.current is None:
            return f"{self.key}: baseline {before}; not measured in this run"
        after = describe_metric(self.current)
        unit = _signed_pct if self.baseline.get("k") is not None else _signed
        return (
            f"{self.status.upper()} {self.key}: baseline {before} -> current {after}; "
            f"difference {unit(self.difference)} [{unit(self.low)}, {unit(self.high)}], "
            f"p={self.p_value:.3g}, Holm p={self.p_holm:.3g} ({self.method})"
        )


@dataclass(frozen=True)
class Comparison:
    """Every metric of a baseline compared to the current run."""

    rows: Sequence[MetricComparison]
    alpha: float
    notes: Sequence[str] = ()
    """Warnings that do not refuse the comparison (e.g. a different judge)."""

    @property
    def regressions(self) -> list[MetricComparison]:
        """Rows that failed."""
        return [row for row in self.rows if row.failed]

    def row(self, key: str) -> MetricComparison:
        """Find the row of one metric key.

        Raises:
            ConfigError: For a key that is not in the baseline, listing a few known keys.

        """
        for row in self.rows:
            if row.key == key:
                return row
        known = ", ".join(r.key for r in self.rows[:5])
        raise ConfigError(f"metric {key!r} is not in the baseline; known: {known}, ...")


def describe_metric(metric: Mapping[str, Any]) -> str:
    """`3/10 = 30.0% [10.8%, 60.3%]`, or `+0.0123 [+0.0010, +0.0230]` for a continuous metric."""
    interval = metric["interval"]
    if metric.get("k") is not None and metric.get("n") is not None:
        return (
            f"{metric['k']}/{metric['n']} = {_pct(metric['estimate'])} "
            f"[{_pct(interval['low'])}, {_pct(interval['high'])}]"
        )
    return (
        f"{_signed(metric['estimate'])} [{_signed(interval['low'])}, {_signed(interval['high'])}]"
    )


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.1f}%"


def _signed_pct(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:+.1f}%"


def _signed(value: float) -> str:
    return "n/a" if value != value else f"{value:+.4f}"


def check_baseline_complete(baseline: Mapping[str, Any]) -> None:
    """Refuse a baseline whose summary says the run is partial.

    Raises:
        ConfigError: Naming why it is incomplete and the fix.

    """
    if baseline.get("complete") is False:
        reasons = "; ".join(baseline.get("incomplete") or ["no reason recorded"])
        raise ConfigError(
            f"refusing an incomplete baseline ({reasons}); finish that run (rerun the same "
            "command into its --report-dir, it resumes) or use a complete run's summary.json"
        )


def check_comparable(
    baseline: Mapping[str, Any],
    current: Mapping[str, Any],
    *,
    allow_grader_change: bool = False,
) -> list[str]:
    """Refuse runs that measure different things; return warnings for lesser differences.

    Args:
        baseline: The baseline summary (or at least its `identity` and `protocols`).
        current: The current summary, same shape.
        allow_grader_change: Compare runs graded by different graders (`graders_of`) anyway,
            with a warning note, instead of refusing them.

    Returns:
        Notes on differences that do not prevent the comparison (thresholds, an allowed
        grader change).

    Raises:
        ConfigError: When the baseline is an incomplete run, the stimuli hashes differ, a
            shared protocol has another version, or (unless allowed) the runs were graded by
            different graders or grader versions (rule@1 vs rule@2, a judge prompt version).

    """
    check_baseline_complete(baseline)
    before, after = baseline["identity"], current["identity"]
    if before["stimuli_hash"] != after["stimuli_hash"]:
        raise ConfigError(
            f"refusing to compare runs on different stimuli: baseline stimuli_hash "
            f"{before['stimuli_hash'][:12]}... vs current {after['stimuli_hash'][:12]}...; "
            "regenerate the baseline with the same fixtures/paper_stimuli.json"
        )
    old, new = baseline.get("protocols", {}), current.get("protocols", {})
    changed = sorted(p for p in set(old) & set(new) if str(old[p]) != str(new[p]))
    if changed:
        versions = ", ".join(f"{p} {old[p]} -> {new[p]}" for p in changed)
        raise ConfigError(
            f"refusing to compare runs with different protocol versions ({versions}); "
            "regenerate the baseline with this version of introspection-bench"
        )
    notes = []
    if baseline.get("complete") is None:
        notes.append("the baseline does not record whether it is complete (schema before 1.2)")
    graders = (graders_of(baseline), graders_of(current))
    if graders[0] and graders[1] and graders[0] != graders[1]:
        which = (
            f"graded by different grader versions: baseline {', '.join(graders[0])}, "
            f"current {', '.join(graders[1])}"
        )
        if not allow_grader_change:
            raise ConfigError(
                f"refusing to compare runs {which} (a difference could come from the grader, "
                "not the model); regrade the older run with the current judge "
                "(`introspection-bench regrade RUN --judge ...` writes summary.<judge>.json) and "
                "compare against that, or pass --allow-grader-change to compare anyway"
            )
        notes.append(f"WARNING: {which}; differences may come from the grader, not the model")
    if before.get("thresholds_version") != after.get("thresholds_version"):
        notes.append(
            f"thresholds version {before.get('thresholds_version')} -> "
            f"{after.get('thresholds_version')}"
        )
    return notes


def graders_of(summary: Mapping[str, Any]) -> tuple[str, ...]:
    """The graders (`name@version`) of a summary's trials: its `graders`, else its judge.

    Ungraded trials (`none`) are left out; an empty tuple means nothing was graded.
    """
    graders = summary.get("graders")
    if graders is None:
        judge = (summary.get("identity") or {}).get("judge")
        graders = [judge] if judge else []
    return tuple(sorted({str(g) for g in graders if g and g != "none"}))


def compare_summaries(
    baseline: Mapping[str, Any],
    current: Mapping[str, Any],
    alpha: float = 0.05,
    *,
    allow_grader_change: bool = False,
) -> Comparison:
    """Compare every metric of `baseline` to `current` (summaries with flat `metrics`).

    Args:
        baseline: The reference summary (see `summary.load_summary`).
        current: The run under test.
        alpha: Family-wise error rate of the Holm procedure.
        allow_grader_change: See `check_comparable`.

    Returns:
        The comparison, one row per baseline metric, in baseline order.

    Raises:
        ConfigError: When the runs are not comparable (`check_comparable`).

    """
    notes = check_comparable(baseline, current, allow_grader_change=allow_grader_change)
    return Comparison(compare_metrics(baseline["metrics"], current["metrics"], alpha), alpha, notes)


def compare_metrics(
    baseline: Sequence[Mapping[str, Any]], current: Sequence[Mapping[str, Any]], alpha: float = 0.05
) -> list[MetricComparison]:
    """Rows for every baseline metric, Holm-adjusted over the metrics measured in both runs."""
    by_key = {m["key"]: m for m in current}
    tested = []
    for metric in baseline:
        other = by_key.get(metric["key"])
        if other is None or not metric.get("n") or not other.get("n"):
            tested.append(
                MetricComparison(
                    metric["key"], metric, other, direction_of(metric["name"], metric["condition"])
                )
            )
            continue
        tested.append(_difference(metric, other))
    compared = [i for i, row in enumerate(tested) if row.method]
    adjusted = holm([tested[i].p_value for i in compared]) if compared else []
    for i, p_holm in zip(compared, adjusted, strict=True):
        tested[i] = _judged(tested[i], p_holm, alpha)
    return tested


def _difference(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> MetricComparison:
    direction = direction_of(baseline["name"], baseline["condition"])
    key = baseline["key"]
    if baseline.get("k") is not None and current.get("k") is not None:
        d = proportion_difference(
            int(current["k"]), int(current["n"]), int(baseline["k"]), int(baseline["n"])
        )
        return MetricComparison(
            key, baseline, current, direction, d.estimate, d.low, d.high, d.p_value, method=d.method
        )
    # Continuous metric: standard errors from the 95% intervals, difference by a z test.
    se = [(m["interval"]["high"] - m["interval"]["low"]) / (2 * _Z95) for m in (current, baseline)]
    difference = float(current["estimate"]) - float(baseline["estimate"])
    se_diff = math.hypot(*se)
    if se_diff > 0:
        p = float(2 * norm.sf(abs(difference) / se_diff))
    else:
        p = 1.0 if difference == 0 else 0.0
    low, high = difference - _Z95 * se_diff, difference + _Z95 * se_diff
    return MetricComparison(
        key, baseline, current, direction, difference, low, high, p, method="normal-approx"
    )


def _judged(row: MetricComparison, p_holm: float, alpha: float) -> MetricComparison:
    status = "ok"
    if p_holm < alpha and row.difference != 0:
        signed = row.direction * row.difference
        status = (
            "changed" if row.direction == NEUTRAL else "regression" if signed < 0 else "improvement"
        )
    return MetricComparison(
        row.key,
        row.baseline,
        row.current,
        row.direction,
        row.difference,
        row.low,
        row.high,
        row.p_value,
        p_holm,
        row.method,
        status,
    )


def format_table(comparison: Comparison) -> str:
    """Render the comparison as text: one line per metric, then notes and a verdict line."""
    header = ("metric", "baseline", "current", "difference [95% CI]", "Holm p", "status")
    lines = [header]
    for row in comparison.rows:
        unit = _signed_pct if row.baseline.get("k") is not None else _signed
        current = describe_metric(row.current) if row.current is not None else "not measured"
        if row.method:
            diff = f"{unit(row.difference)} [{unit(row.low)}, {unit(row.high)}]"
            p_text = f"{row.p_holm:.3g}"
        else:
            diff, p_text = "-", "-"
        lines.append((row.key, describe_metric(row.baseline), current, diff, p_text, row.status))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    text.extend(f"note: {note}" for note in comparison.notes)
    failed = comparison.regressions
    compared = sum(1 for r in comparison.rows if r.method)
    text.append(
        f"{len(failed)} significant regression(s) over {compared} compared metric(s) "
        f"(two-sided, Holm, alpha={comparison.alpha:g})"
    )
    return "\n".join(text)


def compare_run(bench: Any, baseline: Mapping[str, Any], alpha: float = 0.05) -> Comparison:
    """Compare a live run (the suite's `bench`, a `runner.SuiteRunner`) to a baseline summary.

    The comparability check comes first (nothing is generated for a refused baseline); then
    the verdict of every (test, cell) of the baseline that this run's sweep also has is taken
    from `bench.verdict` (running its protocol when needed), and their metrics are compared.

    Args:
        bench: The suite runner: `verdict(test, cell)`, `verdict_dict(verdict)`, `identity()`,
            `session.config` (layers, strengths).
        baseline: The baseline summary (`summary.load_summary`).
        alpha: Family-wise error rate of the Holm procedure.

    Returns:
        The comparison; baseline metrics this run does not measure are rows with status `missing`.

    Raises:
        ConfigError: When the runs are not comparable.

    """
    from introspection_bench.protocols._common import strengths_for
    from introspection_bench.protocols.base import Cell
    from introspection_bench.summary import flat_metrics

    owners = _live_owners(baseline)
    wanted = [v for v in baseline["verdicts"] if v["test"] in owners]
    versions = {owners[v["test"]].NAME: str(owners[v["test"]].VERSION) for v in wanted}
    identity = bench.identity()
    notes = check_comparable(baseline, {"identity": identity, "protocols": versions})
    notes += _declaration_notes(baseline, owners)
    config = bench.session.config
    prepare = getattr(bench, "prepare", None)
    if prepare is not None:  # every protocol compared is generated in one pooled decode
        prepare({owners[v["test"]].NAME for v in wanted})

    def measured(test: str) -> set[str]:
        """Cell labels this run's sweep has for `test` (protocols may have their own strengths)."""
        strengths = (*strengths_for(config, owners[test].NAME), None)
        return {Cell(layer, s).label for layer in config.layers for s in strengths} | {"all"}

    verdicts, seen = [], set()
    for v in wanted:
        cell = Cell(v["cell"]["layer"], v["cell"]["strength"])
        if cell.label not in measured(v["test"]) or (v["test"], cell.label) in seen:
            continue
        seen.add((v["test"], cell.label))
        verdicts.append(bench.verdict_dict(bench.verdict(v["test"], cell)))
    rows = compare_metrics(baseline["metrics"], flat_metrics(verdicts), alpha)
    return Comparison(rows, alpha, notes)


def _live_owners(baseline: Mapping[str, Any]) -> dict[str, Any]:
    """Baseline test -> the protocol this run decides it with: built-in or declared in this run.

    A declared protocol of the baseline that this run does not declare is not compared (its
    tests are `missing`): a CI job compares what it runs.
    """
    from introspection_bench.protocols.registry import owner

    owners = {}
    for verdict in baseline["verdicts"]:
        try:
            owners[verdict["test"]] = owner(verdict["test"])
        except ConfigError:
            continue
    return owners


def _declaration_notes(baseline: Mapping[str, Any], owners: Mapping[str, Any]) -> list[str]:
    """A note per declared protocol whose declaration changed since the baseline run."""
    from introspection_bench.protocols.recorded import declaration

    notes = []
    for name, data in sorted((baseline.get("declarations") or {}).items()):
        live = next((o for o in owners.values() if o.NAME == name), None)
        if live is None or not hasattr(live, "checks"):
            continue
        digest = declaration(live)["digest"]
        if digest != data.get("digest"):
            notes.append(
                f"declared protocol {name} changed since the baseline (declaration digest "
                f"{str(data.get('digest'))[:8]} -> {digest[:8]}): its tests compare other rules"
            )
    return notes
