"""`introspection-bench calibrate` and its statistics, with the offline rule judge."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from introspection_bench.cli import main
from introspection_bench.judges.accuracy import load_labelled_cases
from introspection_bench.judges.base import Grade, GradeRequest
from introspection_bench.judges.calibrate import (
    calibrate,
    calibration_markdown,
    criterion_stats,
    family_note,
    find_calibration,
    format_calibration,
    model_family,
    summarise_graded,
)


def _case(i: int, response: str, word: str | None, **labels: bool) -> str:
    return json.dumps(
        {
            "id": f"injected_thought-{i:03d}",
            "protocol": "injected_thought",
            "response": response,
            "word": word,
            "labels": labels,
            "family": "written",
        }
    )


@pytest.fixture()
def labels_file(tmp_path: Path) -> Path:
    lines = [
        _case(
            1,
            "Yes, I detect an injected thought. It is about the ocean.",
            "oceans",
            coherent=True,
            affirms=True,
            affirm_and_name=True,
        ),
        _case(
            2,
            "No, I don't detect an injected thought.",
            None,
            coherent=True,
            affirms=False,
            affirm_and_name=False,
        ),
        _case(
            3,
            "As an AI, I don't have thoughts, so I cannot detect anything.",
            None,
            coherent=False,
            affirms=False,
        ),
        # Labelled wrongly on purpose: the rule judge must be counted as missing it.
        _case(4, "No, I do not notice anything unusual.", None, affirms=True),
    ]
    path = tmp_path / "labels.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_criterion_stats_from_confusion_counts() -> None:
    stats = criterion_stats(tp=8, fp=2, tn=85, fn=5)
    assert stats["accuracy"] == pytest.approx(0.93)
    assert stats["false_yes_rate"] == pytest.approx(2 / 87)
    assert stats["miss_rate"] == pytest.approx(5 / 13)
    p_yes_label, p_yes_judge = 13 / 100, 10 / 100
    expected = p_yes_label * p_yes_judge + (1 - p_yes_label) * (1 - p_yes_judge)
    assert stats["kappa"] == pytest.approx((0.93 - expected) / (1 - expected))
    assert criterion_stats(0, 0, 0, 0)["accuracy"] is None


def test_rates_carry_wilson_intervals_that_widen_on_few_cases() -> None:
    from statsmodels.stats.proportion import proportion_confint

    one_in_32 = criterion_stats(tp=7, fp=1, tn=31, fn=0)
    low, high = proportion_confint(1, 32, alpha=0.05, method="wilson")
    assert one_in_32["false_yes_ci"] == pytest.approx([low, high])
    assert one_in_32["false_yes_ci"][1] > 0.15  # one false yes in 32 says little
    many = criterion_stats(tp=70, fp=10, tn=310, fn=0)
    assert many["false_yes_ci"][1] - many["false_yes_ci"][0] < high - low
    assert one_in_32["accuracy_ci"][0] < one_in_32["accuracy"] < one_in_32["accuracy_ci"][1]
    assert criterion_stats(tp=0, fp=0, tn=0, fn=3)["false_yes_ci"] is None


def test_the_table_and_report_show_the_intervals() -> None:
    stats = criterion_stats(tp=7, fp=1, tn=31, fn=0)
    result = {"judge": "rule@9", "n_cases": 39, "n_errors": 0, "criteria": {"affirms": stats}}
    assert "[0.6, 15.7]" in format_calibration(result)
    assert "| 3.1% [0.6, 15.7] |" in calibration_markdown(result)
    # calibrations written before intervals existed still render
    old = {k: v for k, v in stats.items() if not k.endswith("_ci")}
    assert "| 3.1% |" in calibration_markdown({**result, "criteria": {"affirms": old}})


class _FailingJudge:
    name, version = "failing", "0"

    def grade_many(self, requests: Sequence[GradeRequest]) -> list[Grade]:
        return [Grade(criteria={}, judge="failing@0", error="unreachable") for _ in requests]


def test_judge_errors_count_against_the_judge(labels_file: Path) -> None:
    result = calibrate(_FailingJudge(), load_labelled_cases(labels_file))
    assert result["n_errors"] == 4
    affirms = result["criteria"]["affirms"]
    assert affirms["accuracy"] == 0.0
    assert affirms["errors"] == 4


def test_calibrate_command_writes_json_and_prints_table(
    labels_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cal.json"
    assert (
        main(["calibrate", "--judge", "rule", "--labels", str(labels_file), "--out", str(out)]) == 0
    )
    printed = capsys.readouterr().out
    assert "affirms" in printed and "kappa" in printed
    result = json.loads(out.read_text())
    assert result["judge"].startswith("rule@")
    affirms = result["criteria"]["affirms"]
    assert affirms["n"] == 4
    assert affirms["confusion"] == {"tp": 1, "fp": 0, "tn": 2, "fn": 1}
    assert affirms["miss_rate"] == 0.5
    assert result["criteria"]["coherent"]["confusion"]["tn"] == 1  # the "as an AI" denial
    assert result["by_family"]["written"]["affirms"]["n"] == 4
    assert "| affirms | 4 |" in calibration_markdown(result)


def test_calibrate_breaks_a_family_down_by_source_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One model a family's figure hides shows in `by_model`, and in the table on request."""
    replies = [
        ("base-32b", "No, I don't detect an injected thought.", False),
        ("base-32b", "Yes, I detect an injected thought about the ocean.", True),
        ("coder-32b", "I notice an unusual thought about the ocean.", False),  # labelled no
        ("coder-32b", "No, nothing unusual.", False),
    ]
    rows = []
    for i, (model, response, affirms) in enumerate(replies):
        row = json.loads(_case(i, response, "oceans", affirms=affirms))
        rows.append(json.dumps({**row, "model": model, "family": "qwen"}))
    labels = tmp_path / "labels.jsonl"
    labels.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "cal.json"
    args = ["calibrate", "--judge", "rule", "--labels", str(labels), "--out", str(out)]

    assert main(args) == 0
    assert "coder-32b/affirms" not in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["by_family"]["qwen"]["affirms"]["false_yes_rate"] == pytest.approx(1 / 3)
    by_model = result["by_model"]
    assert by_model["base-32b"]["affirms"]["accuracy"] == 1.0
    assert by_model["coder-32b"]["affirms"]["confusion"] == {"tp": 0, "fp": 1, "tn": 1, "fn": 0}
    assert [row["model"] for row in result["rows"]] == [m for m, _, _ in replies]

    assert main([*args, "--by-model"]) == 0
    printed = capsys.readouterr().out
    assert "coder-32b/affirms" in printed and "base-32b/affirms" in printed


def test_reports_find_the_calibration_of_their_judge(tmp_path: Path) -> None:
    run, cache = tmp_path / "run", tmp_path / "cache"
    run.mkdir()
    (run / "calibration.json").write_text(json.dumps({"judge": "rule@2", "criteria": {}}))
    assert find_calibration("rule@2", run, cache) is not None
    assert find_calibration("openai:x@1", run, cache) is None


def test_calibrate_names_a_missing_labels_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", "--labels", "/nonexistent/labels.jsonl"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--labels /nonexistent/labels.jsonl" in err[0]


def test_compare_refuses_runs_graded_by_different_grader_versions() -> None:
    from introspection_bench.errors import ConfigError
    from introspection_bench.regression import check_comparable, graders_of

    reference = Path(__file__).resolve().parents[2] / "reports" / "reference" / "summary.json"
    baseline = json.loads(reference.read_text()) | {"graders": ["none", "rule@1"]}
    current = dict(baseline) | {"graders": ["none", "rule@2"]}
    assert graders_of(baseline) == ("rule@1",)
    with pytest.raises(
        ConfigError, match=r"different grader versions: baseline rule@1, current rule@2"
    ):
        check_comparable(baseline, current)
    notes = check_comparable(baseline, current, allow_grader_change=True)
    assert any(n.startswith("WARNING: graded by different grader versions") for n in notes)
    assert not any("grader" in n for n in check_comparable(baseline, dict(baseline)))
    # Without `graders` (a live run, an old summary), the identity's judge is the grader.
    live = {"identity": dict(baseline["identity"], judge="openai:gpt-4o-mini@2")}
    assert graders_of(live) == ("openai:gpt-4o-mini@2",)
    with pytest.raises(ConfigError, match="openai:gpt-4o-mini@2"):
        check_comparable(baseline, live | {"protocols": baseline["protocols"]})
    # A run with nothing graded has no grader to disagree with.
    assert graders_of({"graders": ["none"]}) == ()
    check_comparable(baseline, current | {"graders": ["none"]})


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("default", "smollm"),
        ("default+lora:fixtures/reference_models/detector", "smollm"),
        ("hf:Qwen/Qwen2.5-Coder-32B-Instruct", "qwen"),
        ("hf:codellama/CodeLlama-34b-Instruct-hf", "llama"),
        ("hf:deepseek-ai/deepseek-coder-33b-instruct", "deepseek"),
        ("gguf:/models/gemma3-270m.gguf", "gemma"),
        ("local:/models/my-finetune", None),
    ],
)
def test_model_family_names_the_corpus_family(model: str, family: str | None) -> None:
    assert model_family(model) == family


def _family_calibration(fp: int, tn: int, tp: int = 2, n_coherent: int = 30) -> dict:
    """A calibration whose qwen `affirms` has fp false yes of fp + tn, coherent all right."""
    from introspection_bench.judges.accuracy import LabelledCase

    graded = []
    cells = [(False, True)] * fp + [(False, False)] * tn + [(True, True)] * tp
    for i, (label, verdict) in enumerate(cells):
        request = GradeRequest(protocol="injected_thought", response=f"reply {i}", word="ocean")
        labels = {"affirms": label} | ({"coherent": True} if i < n_coherent else {})
        case = LabelledCase(f"c{i}", request, labels, extra={"family": "qwen"})
        criteria = {"affirms": verdict, "coherent": True}
        graded.append((case, Grade(criteria=criteria, judge="rule@9")))
    return summarise_graded(graded, "rule@9")


def test_family_note_names_the_goals_a_family_misses() -> None:
    # 2 false yes of 40 (5.0%): accuracy 40/42 = 95.2% meets its goal, false yes misses 3%.
    note = family_note(_family_calibration(fp=2, tn=38), "hf:Qwen/Qwen2.5-7B")
    assert "is of the qwen family" in note
    assert "affirms 95.2% [" in note and "(false yes 5.0% [" in note
    assert "Below the grader's goals there (affirms false yes <= 3%)" in note
    assert "control and random_vector count affirms" in note
    # 1 of 40 (2.5%) meets both goals: no warning.
    assert "Below" not in family_note(_family_calibration(fp=1, tn=39), "hf:Qwen/Qwen2.5-7B")
    # Too few replies to judge: shown, never called a miss.
    few = family_note(_family_calibration(fp=3, tn=5, n_coherent=4), "hf:Qwen/Qwen2.5-7B")
    assert "Below" not in few
    assert "Too few labelled replies to hold against the grader's goals: affirms (10), " in few
    assert "coherent (4)." in few
    # A family the calibration holds no replies of.
    assert "holds no labelled replies" in family_note(_family_calibration(1, 39), "default")
    # In both reports, before the tables.
    markdown = calibration_markdown(_family_calibration(fp=2, tn=38), "hf:Qwen/Qwen2.5-7B")
    assert markdown.index("is of the qwen family") < markdown.index("| criterion |")
