"""The rule judge on real replies of other models (fixtures/grading/corpus), test split.

The grader was developed on the dev split only; the test split holds other source models.
Floors are the goals of issue 10 where the grader meets them on the pooled test split, and a
looser per-family floor; the full table is printed so a miss is visible, not hidden.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from introspection_bench.judges.accuracy import LabelledCase, grade_cases, load_labelled_cases
from introspection_bench.judges.base import Grade
from introspection_bench.judges.calibrate import format_calibration, summarise_graded
from introspection_bench.judges.rule import RuleJudge

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "grading" / "corpus"

#: Pooled test split: minimum accuracy and maximum false-yes rate per criterion.
MIN_ACCURACY = {"affirms": 0.95, "affirm_and_name": 0.95, "coherent": 0.88}
MAX_FALSE_YES = {"affirms": 0.03, "affirm_and_name": 0.03}
#: Per family with at least 20 labelled replies on the criterion.
MIN_FAMILY_ACCURACY = 0.80


@pytest.fixture(scope="module")
def test_cases() -> list[LabelledCase]:
    return load_labelled_cases(CORPUS / "test.jsonl")


@pytest.fixture(scope="module")
def graded(test_cases: list[LabelledCase]) -> list[tuple[LabelledCase, Grade]]:
    return grade_cases(RuleJudge(), test_cases)


def test_corpus_is_split_by_source_model() -> None:
    dev = load_labelled_cases(CORPUS / "dev.jsonl")
    test = load_labelled_cases(CORPUS / "test.jsonl")
    assert len(dev) + len(test) >= 390
    assert not {c.extra["model"] for c in dev} & {c.extra["model"] for c in test}
    assert len({c.extra["family"] for c in dev + test}) >= 3
    assert all(c.extra["source"]["license"] for c in dev + test)


def test_calibrate_default_labels_are_the_corpus_cases() -> None:
    """`calibrate` without --labels reads the corpus directory: dev + test, nothing else."""
    from introspection_bench.judges.calibrate import CORPUS as DEFAULT_LABELS

    cases = load_labelled_cases(DEFAULT_LABELS)
    split = load_labelled_cases(CORPUS / "dev.jsonl") + load_labelled_cases(CORPUS / "test.jsonl")
    assert [c.id for c in cases] == [c.id for c in split]


def test_rule_judge_on_test_split(
    graded: list[tuple[LabelledCase, Grade]], capsys: pytest.CaptureFixture[str]
) -> None:
    result = summarise_graded(graded, RuleJudge().label)
    with capsys.disabled():
        print("\nrule judge vs fixtures/grading/corpus/test.jsonl:\n" + format_calibration(result))
    table = result["criteria"]
    for criterion, floor in MIN_ACCURACY.items():
        assert table[criterion]["accuracy"] >= floor, (criterion, table[criterion])
    for criterion, cap in MAX_FALSE_YES.items():
        assert table[criterion]["false_yes_rate"] <= cap, (criterion, table[criterion])
    for family, family_table in result["by_family"].items():
        for criterion, stats in family_table.items():
            if stats["n"] >= 20:
                assert stats["accuracy"] >= MIN_FAMILY_ACCURACY, (family, criterion, stats)


def test_shipped_rule_calibration_is_the_installed_graders(
    graded: list[tuple[LabelledCase, Grade]],
) -> None:
    """Reports show fixtures/grading/corpus/rule_calibration.json for runs the rule grader
    graded: it must hold this grader's version and the counts it gives on the test split now.
    """
    import json

    from introspection_bench.judges.calibrate import SHIPPED_RULE_CALIBRATION, labels_digest

    shipped = json.loads(SHIPPED_RULE_CALIBRATION.read_text())
    current = summarise_graded(graded, RuleJudge().label)
    regenerate = (
        "stale: regenerate it with `introspection-bench calibrate --judge rule --labels "
        "fixtures/grading/corpus/test.jsonl --out fixtures/grading/corpus/rule_calibration.json`"
    )
    assert shipped["judge"] == current["judge"], regenerate
    assert shipped["labels_sha256"] == labels_digest(CORPUS / "test.jsonl"), regenerate

    def counts(result: dict) -> dict:
        tables = {"": result["criteria"], **result["by_family"], **result["by_model"]}
        return {
            (part, criterion): (stats["confusion"], stats["errors"])
            for part, table in tables.items()
            for criterion, stats in table.items()
        }

    assert counts(shipped) == counts(current), regenerate
    assert [r["criteria"] for r in shipped["rows"]] == [r["criteria"] for r in current["rows"]]
