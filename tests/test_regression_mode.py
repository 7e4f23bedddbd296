"""Regression mode: metric-by-metric comparison of summaries, and the --baseline suite module."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
from synthetic_runs import cached_run, edit_summary

from introspection_bench.errors import ConfigError
from introspection_bench.regression import compare_summaries, direction_of, format_table
from introspection_bench.summary import load_summary

pytest_plugins = ("pytester",)
SUITE_MODULE = Path(__file__).resolve().parent.parent / "suites" / "test_regression.py"


@pytest.fixture(scope="module")
def good() -> dict[str, Any]:
    return load_summary(cached_run(model="good", skill=0.9, false_positive=0.05))


def _metric(summary: dict[str, Any], key: str) -> dict[str, Any]:
    return next(m for m in summary["metrics"] if m["key"] == key)


def _set_rate(summary: dict[str, Any], key: str, k: int) -> None:
    metric = _metric(summary, key)
    metric["k"], metric["estimate"] = k, k / metric["n"]


def test_identical_runs_have_no_regression(good: dict[str, Any]) -> None:
    comparison = compare_summaries(good, copy.deepcopy(good))
    assert comparison.regressions == []
    assert {row.status for row in comparison.rows} == {"ok"}
    assert all(row.p_holm == 1.0 for row in comparison.rows if row.baseline["k"] is not None)


def test_detection_drop_is_a_regression_with_both_numbers(good: dict[str, Any]) -> None:
    current = copy.deepcopy(good)
    key = "injected_thought.success[injected]@L8,s2"
    assert _metric(good, key)["k"] >= 6
    _set_rate(current, key, 0)
    comparison = compare_summaries(good, current)
    (row,) = comparison.regressions
    assert row.key == key and row.difference < 0 and row.p_holm < 0.05
    message = row.message()
    baseline = _metric(good, key)
    assert f"baseline {baseline['k']}/{baseline['n']}" in message and "current 0/8" in message
    assert "Holm p=" in message


def test_control_false_positives_up_is_a_regression(good: dict[str, Any]) -> None:
    current = copy.deepcopy(good)
    key = "injected_thought.false_positive[control]"
    _set_rate(current, key, 8)
    (row,) = compare_summaries(good, current).regressions
    assert row.key == key and direction_of(row.baseline["name"], row.baseline["condition"]) == -1


def test_improvement_and_undirected_change_do_not_fail(good: dict[str, Any]) -> None:
    current = copy.deepcopy(good)
    _set_rate(current, "injected_thought.false_positive[control]", 0)
    _set_rate(current, "prefill.apology[none]", 0)  # no direction: reported as changed
    baseline = copy.deepcopy(good)
    _set_rate(baseline, "injected_thought.false_positive[control]", 8)
    _set_rate(baseline, "prefill.apology[none]", 8)
    comparison = compare_summaries(baseline, current)
    statuses = {row.key: row.status for row in comparison.rows}
    assert comparison.regressions == []
    assert statuses["injected_thought.false_positive[control]"] == "improvement"
    assert statuses["prefill.apology[none]"] == "changed"


def test_holm_makes_a_marginal_single_drop_pass(good: dict[str, Any]) -> None:
    # 8/8 -> 5/8 alone has p < 0.05, but not after Holm over every metric of the run.
    current = copy.deepcopy(good)
    key = next(
        m["key"]
        for m in good["metrics"]
        if m["k"] == 8 and m["n"] == 8 and direction_of(m["name"], m["condition"]) == 1
    )
    _set_rate(current, key, 5)
    row = compare_summaries(good, current).row(key)
    assert row.p_value < 0.1 and row.p_holm >= 0.05 and row.status == "ok"


def test_continuous_metric_drop_is_detected(good: dict[str, Any]) -> None:
    current = copy.deepcopy(good)
    key = next(
        m["key"] for m in good["metrics"] if m["name"] == "intentional_control.think_minus_dont"
    )
    metric = _metric(current, key)
    metric["estimate"], metric["interval"]["low"], metric["interval"]["high"] = (
        -0.02,
        -0.025,
        -0.015,
    )
    (row,) = compare_summaries(good, current).regressions
    assert row.key == key and row.method == "normal-approx"


def test_different_stimuli_are_refused(good: dict[str, Any]) -> None:
    current = copy.deepcopy(good)
    current["identity"]["stimuli_hash"] = "0" * 64
    with pytest.raises(ConfigError, match="different stimuli"):
        compare_summaries(good, current)


def test_different_protocol_versions_are_refused(good: dict[str, Any]) -> None:
    current = copy.deepcopy(good)
    current["protocols"]["prefill"] = "2"
    with pytest.raises(ConfigError, match=r"protocol versions \(prefill 1 -> 2\)"):
        compare_summaries(good, current)


def test_missing_metric_is_reported_not_compared(good: dict[str, Any]) -> None:
    current = copy.deepcopy(good)
    current["metrics"] = [m for m in current["metrics"] if m["protocol"] != "prefill"]
    comparison = compare_summaries(good, current)
    missing = [row for row in comparison.rows if row.status == "missing"]
    assert missing and all(row.baseline["protocol"] == "prefill" for row in missing)
    assert "not measured" in format_table(comparison)


# -- the suite module under --baseline, with a bench built from a synthetic run ----------------

_CONFTEST = '''
import sys
from dataclasses import asdict
from types import SimpleNamespace

import pytest

sys.path.insert(0, {tests!r})
from synthetic_runs import THRESHOLDS, layer_index, no_full_gc

from introspection_bench.records import RecordStore
from introspection_bench.runner import TEST_OWNERS
from introspection_bench.session import RunConfig
from introspection_bench.summary import load_summary


class FakeBench:
    """The SuiteRunner surface regression mode uses, over a finished synthetic run."""

    def __init__(self, run_dir):
        summary = load_summary(run_dir)
        self.records = RecordStore(run_dir).all()
        self.thresholds = THRESHOLDS
        layers, strengths = summary["config"]["layers"], summary["config"]["strengths"]
        config = RunConfig(layers=tuple(layers), strengths=tuple(strengths))
        self.session = SimpleNamespace(config=config, layer_index=layer_index)
        self._identity = dict(summary["identity"])

    def identity(self):
        return self._identity

    def verdict(self, test, cell):
        module = TEST_OWNERS[test]
        mine = [r for r in self.records if r.protocol == module.NAME]
        with no_full_gc():
            return module.evaluate(self.session, mine, test, cell, self.thresholds)

    def verdict_dict(self, verdict):
        data = asdict(verdict)
        cell = verdict.cell
        data["cell"] = {{"layer": cell.layer, "strength": cell.strength, "label": cell.label}}
        data["protocol"] = TEST_OWNERS[verdict.test].NAME
        data["protocol_version"] = TEST_OWNERS[verdict.test].VERSION
        return data


@pytest.fixture(scope="session")
def bench():
    return FakeBench({current!r})
'''


def _suite(pytester: pytest.Pytester, current: Path) -> None:
    pytester.makeconftest(_CONFTEST.format(tests=str(Path(__file__).parent), current=str(current)))
    pytester.makepyfile(test_suite_regression=SUITE_MODULE.read_text())


def test_suite_module_is_skipped_without_baseline(pytester: pytest.Pytester) -> None:
    _suite(pytester, cached_run(model="good", skill=0.9, false_positive=0.05))
    result = pytester.runpytest("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no --baseline summary.json given*"])


def test_suite_module_passes_against_itself(pytester: pytest.Pytester) -> None:
    run = cached_run(model="good", skill=0.9, false_positive=0.05)
    _suite(pytester, run)
    result = pytester.runpytest("--baseline", str(run / "summary.json"), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=len(load_summary(run)["metrics"]))


def test_suite_module_fails_on_regressed_model(pytester: pytest.Pytester) -> None:
    baseline = cached_run(model="good", skill=0.9, false_positive=0.05)
    worse = cached_run(model="worse", skill=0.0, false_positive=0.9)
    _suite(pytester, worse)
    result = pytester.runpytest(
        "--baseline", str(baseline / "summary.json"), "-p", "no:cacheprovider"
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 3 and outcomes.get("passed", 0) >= 1
    result.stdout.fnmatch_lines(
        [
            "*REGRESSION injected_thought.success[[]injected[]]@L8,s2: "
            "baseline */8 = * -> current 0/8 = *Holm p=*",
            "*REGRESSION yes_bias.affirmative[[]none[]]: baseline */8 = * -> current */8 = *Holm*",
        ]
    )


def test_suite_module_refuses_other_stimuli(pytester: pytest.Pytester, tmp_path: Path) -> None:
    baseline = tmp_path / "baseline"
    shutil.copytree(cached_run(model="good", skill=0.9, false_positive=0.05), baseline)
    edit_summary(baseline, lambda s: s["identity"].update(stimuli_hash="1" * 64))
    _suite(pytester, cached_run(model="good", skill=0.9, false_positive=0.05))
    result = pytester.runpytest(
        "--baseline", str(baseline / "summary.json"), "-p", "no:cacheprovider"
    )
    assert result.parseoutcomes().get("failed", 0) == len(load_summary(baseline)["metrics"])
    result.stdout.fnmatch_lines(["*refusing to compare runs on different stimuli*"])


def test_suite_module_refuses_a_baseline_of_another_grader_version(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    baseline = tmp_path / "baseline"
    shutil.copytree(cached_run(model="good", skill=0.9, false_positive=0.05), baseline)
    edit_summary(baseline, lambda s: s.update(graders=["none", "rule@0"]))
    _suite(pytester, cached_run(model="good", skill=0.9, false_positive=0.05))
    result = pytester.runpytest(
        "--baseline", str(baseline / "summary.json"), "-p", "no:cacheprovider"
    )
    assert result.parseoutcomes().get("failed", 0) == len(load_summary(baseline)["metrics"])
    result.stdout.fnmatch_lines(
        ["*refusing to compare runs graded by different grader versions: baseline rule@0, "
         "current rule@1*"]
    )  # fmt: skip


def test_bad_baseline_file_is_a_usage_error(pytester: pytest.Pytester, tmp_path: Path) -> None:
    bad = tmp_path / "summary.json"
    bad.write_text('{"schema_version": "1.1"}')
    pytester.makepyfile(test_suite_regression=SUITE_MODULE.read_text())
    result = pytester.runpytest("--baseline", str(bad), "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--baseline:*does not match summary schema*"])


def test_suite_module_skips_cells_outside_this_sweep(pytester: pytest.Pytester) -> None:
    baseline = cached_run(model="good", skill=0.9, false_positive=0.05)
    _suite(pytester, cached_run(model="good", skill=0.9, false_positive=0.05, strengths=(1.0,)))
    result = pytester.runpytest(
        "--baseline", str(baseline / "summary.json"), "-p", "no:cacheprovider"
    )
    at_s2 = [m for m in load_summary(baseline)["metrics"] if m["strength"] == 2.0]
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped") == len(at_s2) and "failed" not in outcomes


def test_incomplete_baseline_is_refused(good: dict[str, Any]) -> None:
    partial = copy.deepcopy(good) | {
        "complete": False,
        "incomplete": ["53 trial(s) generated but not graded"],
    }
    with pytest.raises(
        ConfigError, match=r"refusing an incomplete baseline \(53 trial\(s\) generated"
    ):
        compare_summaries(partial, good)
    compare_summaries(good, partial)  # an incomplete *current* run is compared (missing rows)


def test_incomplete_baseline_is_a_usage_error(pytester: pytest.Pytester, tmp_path: Path) -> None:
    baseline = tmp_path / "baseline"
    shutil.copytree(cached_run(model="good", skill=0.9, false_positive=0.05), baseline)
    edit_summary(
        baseline, lambda s: s.update(complete=False, incomplete=["2 test(s) without a verdict"])
    )
    pytester.makepyfile(test_suite_regression=SUITE_MODULE.read_text())
    result = pytester.runpytest(
        "--baseline", str(baseline / "summary.json"), "-p", "no:cacheprovider"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--baseline: refusing an incomplete baseline (2 test(s) without a verdict)*"]
    )
