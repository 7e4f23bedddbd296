"""The rule judge against the hand-labelled set in fixtures/grading/ (thresholds from DESIGN.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from introspection_bench.judges.accuracy import (
    LabelledCase,
    format_accuracy,
    grade_cases,
    load_labelled_cases,
    measure_accuracy,
    summarise,
)
from introspection_bench.judges.base import CRITERIA, Grade, GradeRequest
from introspection_bench.judges.rule import RuleJudge

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "grading"

#: Minimum agreement with the human labels, per criterion.
MIN_ACCURACY = {"affirms": 0.95, "affirm_and_name": 0.90, "claims_intent": 0.90}
#: Maximum share of labelled negatives graded "yes".
MAX_FALSE_YES = {"affirms": 0.03}
#: Real SmolLM2 replies labelled by hand; their accuracy is printed apart (no separate floor).
REAL_CATEGORY = "smollm2_real"


@pytest.fixture(scope="module")
def cases() -> list[LabelledCase]:
    return load_labelled_cases(FIXTURES)


@pytest.fixture(scope="module")
def graded(cases: list[LabelledCase]) -> list[tuple[LabelledCase, Grade]]:
    return grade_cases(RuleJudge(), cases)


def test_labelled_set_covers_every_protocol_with_enough_cases(cases: list[LabelledCase]) -> None:
    protocols = {case.request.protocol for case in cases}
    assert protocols == set(CRITERIA)
    assert len(cases) >= 300
    assert len({case.id for case in cases}) == len(cases)


def test_rule_judge_accuracy_meets_thresholds(
    graded: list[tuple[LabelledCase, Grade]], capsys: pytest.CaptureFixture[str]
) -> None:
    table = summarise(graded)
    real = summarise((case, grade) for case, grade in graded if case.category == REAL_CATEGORY)
    with capsys.disabled():
        print("\nrule judge vs fixtures/grading:\n" + format_accuracy(table))
        print(f"of which real model outputs ({REAL_CATEGORY}):\n" + format_accuracy(real))
    misses = [
        f"{case.id} [{case.category}] {criterion}: label={label} "
        f"got={grade.criteria.get(criterion)} ({grade.evidence.get(criterion, grade.error)})"
        for case, grade in graded
        for criterion, label in case.labels.items()
        if criterion in MIN_ACCURACY and grade.criteria.get(criterion) != label
    ]
    for criterion, floor in MIN_ACCURACY.items():
        assert table[criterion]["accuracy"] >= floor, "\n".join(misses)
    for criterion, ceiling in MAX_FALSE_YES.items():
        rate = table[criterion]["false_positive_rate"]
        assert rate is not None and rate <= ceiling, "\n".join(misses)


def test_measure_accuracy_reports_accuracy_n_and_false_yes() -> None:
    class AlwaysYes:
        name, version = "yes", "1"

        def grade_many(self, requests: list[GradeRequest]) -> list[Grade]:
            return [Grade(criteria={"affirms": True}, judge="yes@1") for _ in requests]

    cases = [
        LabelledCase(
            "a", GradeRequest(protocol="injected_thought", response="Yes."), {"affirms": True}
        ),
        LabelledCase(
            "b", GradeRequest(protocol="injected_thought", response="No."), {"affirms": False}
        ),
        LabelledCase(
            "c", GradeRequest(protocol="injected_thought", response="No."), {"affirms": False}
        ),
    ]
    table = measure_accuracy(AlwaysYes(), cases)
    assert table == {
        "affirms": {"accuracy": pytest.approx(1 / 3), "n": 3, "false_positive_rate": 1.0}
    }


def test_a_judge_error_counts_as_disagreement_not_as_no() -> None:
    class Failing:
        name, version = "fail", "1"

        def grade_many(self, requests: list[GradeRequest]) -> list[Grade]:
            return [Grade(criteria={}, judge="fail@1", error="unreachable") for _ in requests]

    cases = [
        LabelledCase(
            "a", GradeRequest(protocol="prefill", response="Oops."), {"claims_intent": None}
        )
    ]
    assert measure_accuracy(Failing(), cases)["claims_intent"]["accuracy"] == 0.0
