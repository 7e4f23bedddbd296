"""Measure a judge against hand-labelled responses (fixtures/grading/*.jsonl).

Reports print `measure_accuracy`'s table so that every verdict comes with its judge's error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from introspection_bench.errors import JudgeError
from introspection_bench.judges.base import CRITERIA, Grade, GradeRequest, Judge

Label = bool | str | None


@dataclass(frozen=True)
class LabelledCase:
    """One response with the labels a careful human gave it."""

    id: str
    """Stable identifier, e.g. `injected_thought-017`."""
    request: GradeRequest
    """What the judge is asked to grade."""
    labels: Mapping[str, Label]
    """Criterion -> the human label (a subset of the protocol's criteria)."""
    category: str = ""
    """Which rule the case exercises (e.g. `negation`, `opens_with_word`)."""
    extra: Mapping[str, object] = field(default_factory=dict)
    """Any other fields of the JSONL line, kept for reports."""


def load_labelled_cases(path: str | Path) -> list[LabelledCase]:
    """Load labelled cases from one JSONL file or every `*.jsonl` file of a directory.

    Args:
        path: A `.jsonl` file or a directory of them (sorted by name).

    Returns:
        The cases, in file order.

    Raises:
        JudgeError: When a line is not JSON, names an unknown protocol or criterion, or lacks
            `id`, `protocol`, `response` or `labels`.

    """
    root = Path(path)
    files = sorted(root.glob("*.jsonl")) if root.is_dir() else [root]
    cases: list[LabelledCase] = []
    for file in files:
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                cases.append(_parse_case(line, f"{file}:{number}"))
    return cases


def _parse_case(line: str, where: str) -> LabelledCase:
    try:
        row = json.loads(line)
        protocol, labels = row["protocol"], row["labels"]
        request = GradeRequest(
            protocol=protocol,
            response=row["response"],
            word=row.get("word"),
            question=row.get("question"),
            options=tuple(row.get("options") or ()),
        )
        case_id = row["id"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise JudgeError(
            f"{where}: bad labelled case ({error}); see fixtures/grading/README.md"
        ) from error
    if protocol not in CRITERIA:
        raise JudgeError(
            f"{where}: unknown protocol {protocol!r}; known: {', '.join(sorted(CRITERIA))}"
        )
    unknown = set(labels) - set(CRITERIA[protocol])
    if unknown:
        raise JudgeError(f"{where}: criteria {sorted(unknown)} not in {CRITERIA[protocol]}")
    known = {"id", "protocol", "response", "word", "question", "options", "labels", "category"}
    extra = {k: v for k, v in row.items() if k not in known}
    return LabelledCase(case_id, request, dict(labels), row.get("category", ""), extra)


def grade_cases(judge: Judge, cases: Sequence[LabelledCase]) -> list[tuple[LabelledCase, Grade]]:
    """Grade every case in one batch and pair each case with its grade."""
    grades = judge.grade_many([case.request for case in cases])
    return list(zip(cases, grades, strict=True))


def measure_accuracy(
    judge: Judge, cases: Sequence[LabelledCase]
) -> dict[str, dict[str, float | int | None]]:
    """Agreement of a judge with the human labels, per criterion.

    A judge error counts as a disagreement (never as a "no").

    Args:
        judge: The judge to measure.
        cases: Labelled cases (see `load_labelled_cases`).

    Returns:
        Criterion -> {"accuracy": share of labelled cases where the judge agrees,
        "n": number of labelled cases, "false_positive_rate": share of cases labelled False
        that the judge graded True (None for non-boolean criteria or without negatives)}.

    """
    return summarise(grade_cases(judge, cases))


def summarise(
    graded: Iterable[tuple[LabelledCase, Grade]],
) -> dict[str, dict[str, float | int | None]]:
    """Build the per-criterion table of `measure_accuracy` from already graded cases."""
    agree: dict[str, int] = {}
    total: dict[str, int] = {}
    negatives: dict[str, int] = {}
    false_yes: dict[str, int] = {}
    for case, grade in graded:
        for criterion, label in case.labels.items():
            predicted = grade.criteria.get(criterion) if grade.error is None else _MISSING
            total[criterion] = total.get(criterion, 0) + 1
            agree[criterion] = agree.get(criterion, 0) + int(
                predicted == label and predicted is not _MISSING
            )
            if label is False:
                negatives[criterion] = negatives.get(criterion, 0) + 1
                false_yes[criterion] = false_yes.get(criterion, 0) + int(predicted is True)
    table: dict[str, dict[str, float | int | None]] = {}
    for criterion in sorted(total):
        n_negative = negatives.get(criterion, 0)
        table[criterion] = {
            "accuracy": agree[criterion] / total[criterion],
            "n": total[criterion],
            "false_positive_rate": false_yes[criterion] / n_negative if n_negative else None,
        }
    return table


def format_accuracy(table: Mapping[str, Mapping[str, float | int | None]]) -> str:
    """Render the table as aligned text lines (one per criterion) for reports and test output."""
    lines = [f"{'criterion':<20} {'accuracy':>8} {'n':>5} {'false yes':>9}"]
    for criterion, row in table.items():
        fpr = row["false_positive_rate"]
        fpr_text = "-" if fpr is None else f"{fpr:.1%}"
        lines.append(f"{criterion:<20} {row['accuracy']:>8.1%} {row['n']:>5} {fpr_text:>9}")
    return "\n".join(lines)


class _Missing:
    """Sentinel for "the judge failed", distinct from a None verdict."""


_MISSING = _Missing()
