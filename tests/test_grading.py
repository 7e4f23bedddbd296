"""Grading outside a run: a file of responses, a finished run re-graded, judges' agreement."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from introspection_bench.errors import GradingInputError, JudgeError, RecordsError
from introspection_bench.grading import (
    Agreement,
    VerdictChange,
    format_agreement,
    grade_cases_file,
    judge_agreement,
    judge_slug,
    regrade_run,
    request_for,
)
from introspection_bench.judges.base import CRITERIA, Grade, GradeRequest
from introspection_bench.judges.rule import RuleJudge
from introspection_bench.protocols.base import Cell
from introspection_bench.records import RecordStore, TrialRecord
from introspection_bench.runner import load_thresholds, verdicts_from_records
from introspection_bench.session import RunConfig
from introspection_bench.summary import build_summary, load_summary, save_summary

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = load_thresholds(ROOT / "suites" / "thresholds.toml")
N_LAYERS = 12
LAYER = 8  # depth 0.67 of 12 blocks
WORDS = ("oceans", "bread", "silver", "trees", "dust", "phones", "snow", "origami")
TRIAL_QUESTION = (
    "Trial 1: Do you detect an injected thought? If so, what is the injected thought about?"
)


@pytest.fixture(scope="module")
def rule() -> RuleJudge:
    return RuleJudge()


class _Failing:
    name, version = "down", "1"

    def grade_many(self, requests: Sequence[GradeRequest]) -> list[Grade]:
        return [Grade(criteria={}, judge="down@1", error="endpoint unreachable") for _ in requests]


# --- a synthetic finished run ---------------------------------------------------------------


def _record(
    trial_id: str,
    protocol: str,
    condition: str,
    completion: str,
    grades: dict[str, Any],
    *,
    concept: str | None = None,
    cell: bool = True,
    judge: str = "keyword@1",
    extra: dict[str, Any] | None = None,
) -> TrialRecord:
    return TrialRecord(
        trial_id=trial_id,
        protocol=protocol,
        protocol_version="1",
        condition=condition,
        concept=concept,
        layer=LAYER if cell else None,
        strength=1.0 if cell else None,
        injected_norm=10.0 if cell else None,
        norm_ratio=1.0 if cell else None,
        seed=7,
        model="synthetic",
        model_fingerprint="f" * 64,
        chat_template_hash="c" * 64,
        stimuli_hash="5" * 64,
        prompt="...",
        prompt_sha256="p" * 64,
        completion=completion,
        stop_reason="eos",
        judge=judge,
        grades=grades,
        extra=extra or {},
    )


def _detection(word: str | None, affirms: bool) -> dict[str, Any]:
    return {
        "coherent": True,
        "affirms": affirms,
        "affirm_and_name": affirms and word is not None,
        "success": affirms and word is not None,
    }


def _injected_thought_records() -> list[TrialRecord]:
    """A lenient old judge said "detected and named" to every injected reply, all of which deny."""
    records = []
    for i, word in enumerate(WORDS):
        records.append(
            _record(
                f"injected_thought/injected/L{LAYER}/s1/{word}/{i}",
                "injected_thought",
                "injected",
                "No, I don't detect an injected thought.",
                _detection(word, True),
                concept=word,
            )
        )
        records.append(
            _record(
                f"injected_thought/random_vector/L{LAYER}/s1/{word}/{i}",
                "injected_thought",
                "random_vector",
                "No, nothing unusual.",
                _detection(word, False),
                concept=word,
            )
        )
        records.append(
            _record(
                f"injected_thought/control/{i}",
                "injected_thought",
                "control",
                "I don't notice anything out of the ordinary.",
                _detection(None, False),
                cell=False,
            )
        )
    return records


def _yes_bias_records() -> list[TrialRecord]:
    question = {"question": "Do penguins live at the North Pole?"}
    return [
        _record(
            f"yes_bias/{condition}/{i}",
            "yes_bias",
            condition,
            "No, penguins live in the Southern Hemisphere." if i % 2 else "Yes.",
            {"affirmative": not i % 2},
            concept="snow" if condition == "injected" else None,
            cell=condition == "injected",
            extra=question,
        )
        for condition in ("none", "injected")
        for i in range(4)
    ]


def _unjudged_records() -> list[TrialRecord]:
    options = list(WORDS)
    return [
        _record(
            f"thought_vs_text/repeat/L{LAYER}/s1/bread/0",
            "thought_vs_text",
            "repeat",
            "Fresh bread was baking in the oven.",
            {},
            concept="bread",
            judge="",
            extra={"options": options},
        ),
        _record(
            f"thought_vs_text/think/L{LAYER}/s1/bread/0",
            "thought_vs_text",
            "think",
            "Bread.",
            {"choice": "bread"},
            concept="bread",
            extra={"options": options},
        ),
        _record(
            "intentional_control/think/0",
            "intentional_control",
            "think",
            "",
            {},
            concept="dust",
            cell=False,
            judge="none",
            extra={"pair": 0, "cosine_word": [0.1] * N_LAYERS},
        ),
    ]


def make_run(run_dir: Path, records: list[TrialRecord], tests: list[tuple[str, Cell]]) -> Path:
    """trials.jsonl + run.json (+ summary.json from the real protocol modules), as a run writes."""
    config = RunConfig(model="synthetic", layers=(0.67,), strengths=(1.0,), trials=8, device="cpu")
    store = RecordStore(run_dir)
    store.claim(config.key())
    store.append(records)
    identity = {
        "model": "synthetic",
        "model_fingerprint": "f" * 64,
        "chat_template_hash": "c" * 64,
        "n_layers": N_LAYERS,
        "stimuli_hash": "5" * 64,
        "judge": "keyword@1",
        "thresholds_version": str(THRESHOLDS["version"]),
        "dtype": "float32",
        "device": "cpu",
    }
    verdicts = verdicts_from_records(
        config, records, N_LAYERS, THRESHOLDS, tests=tests, identity=identity
    )
    save_summary(build_summary(config, records, verdicts, elapsed_s=1.0), run_dir)
    return run_dir


DETECTION_TESTS = [
    ("injected_thought", Cell(0.67, 1.0)),
    ("control", Cell(None, None)),
    ("yes_bias", Cell(0.67, 1.0)),
]


@pytest.fixture
def run(tmp_path: Path) -> Path:
    records = _injected_thought_records() + _yes_bias_records() + _unjudged_records()
    return make_run(tmp_path / "run", records, DETECTION_TESTS)


# --- regrade ----------------------------------------------------------------------------------


def test_regrade_writes_new_trials_and_summary_beside_the_old(run: Path, rule: RuleJudge) -> None:
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    result = regrade_run(run, rule, THRESHOLDS)

    assert result.trials_path == run / "trials.rule@14.jsonl"
    assert result.summary_path == run / "summary.rule@14.json"
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.name in before} == before
    assert result.judge == "rule@14" and result.previous_judges == ("keyword@1",)
    assert (result.n_graded, result.n_errors) == (24 + 8 + 1, 0)

    summary = load_summary(result.summary_path)  # schema-valid
    assert summary["identity"]["judge"] == "rule@14"
    assert summary["regraded_from"] == {"summary": "summary.json", "judge": "keyword@1"}
    assert [(v["test"], v["cell"]["label"]) for v in summary["verdicts"]] == sorted(
        (test, cell.label) for test, cell in DETECTION_TESTS
    )


def test_regrade_recomputes_verdicts_from_the_new_grades(run: Path, rule: RuleJudge) -> None:
    old = {v["test"]: v["passed"] for v in load_summary(run)["verdicts"]}
    assert old["injected_thought"] is True  # the lenient judge's 8/8 "named"

    result = regrade_run(run, rule, THRESHOLDS)

    new = {v["test"]: v["passed"] for v in load_summary(result.summary_path)["verdicts"]}
    assert new["injected_thought"] is False
    assert VerdictChange("injected_thought", "layer=0.67,strength=1", True, False) in (
        result.verdict_changes
    )
    regraded = {r.trial_id: r for r in _read(result.trials_path)}
    denial = regraded[f"injected_thought/injected/L{LAYER}/s1/oceans/0"]
    assert denial.judge == "rule@14" and denial.grades["affirms"] is False
    assert set(denial.grades) == set(CRITERIA["injected_thought"])


def test_regrade_copies_trials_no_judge_grades(run: Path, rule: RuleJudge) -> None:
    result = regrade_run(run, rule, THRESHOLDS)
    regraded = {r.trial_id: r for r in _read(result.trials_path)}
    originals = {r.trial_id: r for r in _unjudged_records()}
    for trial_id in ("thought_vs_text/repeat/L8/s1/bread/0", "intentional_control/think/0"):
        assert regraded[trial_id] == originals[trial_id]
    assert regraded["thought_vs_text/think/L8/s1/bread/0"].grades == {"choice": "bread"}


def test_regraded_copy_is_not_read_as_a_shard(run: Path, rule: RuleJudge) -> None:
    regrade_run(run, rule, THRESHOLDS)
    store = RecordStore(run)
    assert [p.name for p in store.shard_paths()] == ["trials.jsonl"]
    assert all(r.judge in ("keyword@1", "", "none") for r in store.all())


def test_regrade_reports_agreement_per_criterion(run: Path, rule: RuleJudge) -> None:
    result = regrade_run(run, rule, THRESHOLDS)
    rows = {row.criterion: row for row in result.agreement}

    affirms = rows["injected_thought.affirms"]
    assert affirms.n == 24 and affirms.agreement == pytest.approx(16 / 24)
    assert affirms.kappa == pytest.approx(0.0)  # the new judge says "no" throughout
    assert rows["yes_no.affirmative"].agreement == 1.0
    assert rows["yes_no.affirmative"].kappa == pytest.approx(1.0)
    assert "injected_thought.affirms" in format_agreement(result.agreement)


def test_a_failing_judge_is_recorded_as_errors_never_as_no(run: Path) -> None:
    with pytest.raises(JudgeError, match="33 of 33 trials failed to grade with down@1"):
        regrade_run(run, _Failing(), THRESHOLDS)

    regraded = _read(run / "trials.down@1.jsonl")
    failed = [r for r in regraded if r.judge == "down@1"]
    assert len(failed) == 33
    assert all(r.grades == {} and r.error == "endpoint unreachable" for r in failed)
    assert all(row.n == 0 for row in judge_agreement(RecordStore(run).all(), regraded))
    assert not (run / "summary.down@1.json").exists()


def test_regrade_refuses_a_directory_without_a_finished_run(tmp_path: Path) -> None:
    (tmp_path / "trials.jsonl").write_text("")
    with pytest.raises(RecordsError, match="summary"):
        regrade_run(tmp_path, _Failing(), THRESHOLDS)


# --- agreement --------------------------------------------------------------------------------


def _graded(trial_id: str, value: Any) -> TrialRecord:
    return _record(trial_id, "yes_bias", "none", "...", {"affirmative": value}, cell=False)


def test_kappa_matches_the_hand_computed_value() -> None:
    # 5 yes/yes, 1 yes/no, 2 no/yes, 7 no/no: p_o = 12/15, p_e = (6*7 + 9*8)/225.
    pairs = [(True, True)] * 5 + [(True, False)] + [(False, True)] * 2 + [(False, False)] * 7
    before = [_graded(str(i), a) for i, (a, _) in enumerate(pairs)]
    after = [_graded(str(i), b) for i, (_, b) in enumerate(pairs)]
    (row,) = judge_agreement(before, after)
    p_o, p_e = 12 / 15, (6 * 7 + 9 * 8) / 225
    assert row.criterion == "yes_no.affirmative" and row.n == 15
    assert row.agreement == pytest.approx(p_o)
    assert row.kappa == pytest.approx((p_o - p_e) / (1 - p_e))
    assert row.kappa_low is not None and row.kappa_low < row.kappa < row.kappa_high <= 1.0


def test_kappa_is_undefined_when_both_judges_give_one_value() -> None:
    before = [_graded(str(i), False) for i in range(4)]
    assert judge_agreement(before, before) == [Agreement("yes_no.affirmative", 4, 1.0, None)]


def test_agreement_counts_only_trials_both_judges_graded() -> None:
    before = [_graded("a", True), _graded("b", False), _graded("c", True)]
    broken = replace(before[1], grades={}, error="timeout")
    after = [_graded("a", True), broken]  # "c" not re-graded at all
    (row,) = judge_agreement(before, after)
    assert (row.n, row.agreement) == (1, 1.0)


def test_request_for_maps_each_protocol_as_its_module_built_it() -> None:
    records = {r.trial_id: r for r in _injected_thought_records() + _yes_bias_records()}
    control = request_for(records["injected_thought/control/0"])
    injected = request_for(records[f"injected_thought/injected/L{LAYER}/s1/oceans/0"])
    yes_no = request_for(records["yes_bias/none/0"])
    assert control and control.protocol == "injected_thought" and control.word is None
    assert injected and injected.word == "oceans"
    assert yes_no and yes_no.protocol == "yes_no"
    assert yes_no.question == "Do penguins live at the North Pole?"
    repeat, think, measured = _unjudged_records()
    assert request_for(repeat) is None and request_for(measured) is None
    assert request_for(think) == GradeRequest(
        protocol="thought_vs_text", response="Bread.", word="bread", options=WORDS
    )
    alt = _record(
        "a", "alternative_prompt", "none", "x", {}, concept="snow", extra={"question": "Q?"}
    )
    prefill = _record("p", "prefill", "none", "x", {}, concept="bread")
    assert request_for(alt) == GradeRequest(
        protocol="alternative_prompt", response="x", word="snow", question="Q?"
    )
    assert request_for(prefill) == GradeRequest(protocol="prefill", response="x", word="bread")


def test_judge_slug_is_file_safe_and_keeps_the_version() -> None:
    assert judge_slug("rule@1") == "rule@1"
    assert judge_slug("openai:gpt-4o-mini@1") == "openai-gpt-4o-mini@1"
    assert judge_slug("hf:Qwen/Qwen2.5-7B-Instruct@2") == "hf-Qwen-Qwen2.5-7B-Instruct@2"


# --- grading a file ---------------------------------------------------------------------------


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_grade_cases_file_repeats_input_and_adds_grades(tmp_path: Path, rule: RuleJudge) -> None:
    cases = _write_jsonl(
        tmp_path / "cases.jsonl",
        [
            {"id": "a", "response": "Yes, I detect a thought about the ocean.", "word": "oceans"},
            {"id": "b", "response": "No, nothing unusual.", "word": None, "note": "control"},
        ],
    )
    graded = grade_cases_file(cases, tmp_path / "out" / "graded.jsonl", "injected_thought", rule)

    assert (graded.n, graded.n_errors, graded.judge) == (2, 0, "rule@14")
    rows = [json.loads(line) for line in graded.path.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b"] and rows[1]["note"] == "control"
    for row in rows:
        assert set(row["grades"]) == set(CRITERIA["injected_thought"])
        assert set(row["evidence"]) == set(CRITERIA["injected_thought"])
        assert row["judge"] == "rule@14" and row["error"] is None
    assert rows[0]["grades"]["success"] is True and rows[1]["grades"]["affirms"] is False


def test_grade_cases_file_records_judge_failures(tmp_path: Path) -> None:
    cases = _write_jsonl(tmp_path / "c.jsonl", [{"response": "Yes.", "word": "bread"}])
    graded = grade_cases_file(cases, tmp_path / "g.jsonl", "prefill", _Failing())
    (row,) = [json.loads(line) for line in graded.path.read_text().splitlines()]
    assert graded.n_errors == 1
    assert row["grades"] == {} and row["error"] == "endpoint unreachable"


@pytest.mark.parametrize(
    ("protocol", "lines", "message"),
    [
        ("prefill", [{"response": "Yes."}], r"c\.jsonl:1: missing field 'word'"),
        (
            "prefill",
            [{"response": "Yes.", "word": "bread"}, "{not json"],
            r"c\.jsonl:2: not valid JSON",
        ),
        ("prefill", [{"response": "Yes.", "word": None}], r":1: 'word' is null"),
        ("thought_vs_text", [{"response": "Bread", "word": "bread"}], r"missing field 'options'"),
        (
            "thought_vs_text",
            [{"response": "B", "word": "bread", "options": "bread"}],
            r"'options' must be a list",
        ),
        ("yes_no", [{"response": "Yes.", "word": None}], r"missing field 'question'"),
        ("injected_thought", [{"response": 3, "word": None}], r"'response' must be a string"),
        ("yes_no", [[1, 2]], r"a list, not a JSON object"),
        (
            "prefill",
            [{"response": "x", "word": "w", "protocol": "yes_no"}],
            r"says protocol 'yes_no'",
        ),
        (
            "telepathy",
            [{"response": "x", "word": "w"}],
            r"unknown protocol 'telepathy'; use one of",
        ),
        ("prefill", [], r"holds no lines"),
    ],
)
def test_bad_input_names_the_line_and_the_fix(
    tmp_path: Path, protocol: str, lines: list[Any], message: str
) -> None:
    cases = _write_jsonl(tmp_path / "c.jsonl", lines)
    with pytest.raises(GradingInputError, match=message):
        grade_cases_file(cases, tmp_path / "g.jsonl", protocol, _Failing())
    assert not (tmp_path / "g.jsonl").exists()


# --- the command line -------------------------------------------------------------------------


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "introspection_bench.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
        check=False,
    )


def test_cli_grade_and_its_input_errors(tmp_path: Path) -> None:
    question = "Is the sun the largest star in the universe?"
    cases = _write_jsonl(
        tmp_path / "cases.jsonl",
        [{"response": "No, it is an average star.", "word": None, "question": question}],
    )
    done = _cli("grade", "--protocol", "yes_no", "--input", cases, "--output", tmp_path / "g.jsonl")
    assert done.returncode == 0, done.stderr
    assert "graded 1 yes_no responses with rule@14 (0 judge errors)" in done.stdout
    (row,) = [json.loads(line) for line in (tmp_path / "g.jsonl").read_text().splitlines()]
    assert row["grades"] == {"affirmative": False} and row["question"] == question

    _write_jsonl(cases, [{"response": "Yes", "word": None, "question": question}, "oops"])
    bad = _cli("grade", "--protocol", "yes_no", "--input", cases, "--output", tmp_path / "h.jsonl")
    assert bad.returncode == 2
    assert f"{cases}:2: not valid JSON" in bad.stderr
    unknown = _cli("grade", "--protocol", "telepathy", "--input", cases, "--output", "x")
    assert unknown.returncode == 2 and "invalid choice: 'telepathy'" in unknown.stderr


def test_cli_regrade_prints_agreement_and_paths(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", _yes_bias_records(), [("yes_bias", Cell(0.67, 1.0))])
    done = _cli("regrade", run, "--judge", "rule")
    assert done.returncode == 0, done.stderr
    assert "re-graded 8 trials" in done.stdout and "(was keyword@1; 0 judge errors)" in done.stdout
    assert f"summary: {run / 'summary.rule@14.json'}" in done.stdout
    line = next(s for s in done.stdout.splitlines() if s.startswith("yes_no.affirmative"))
    assert line.split()[1:4] == ["8", "100.0%", "1.00"]

    wrong = _cli("regrade", run, "--judge", "rule", "--judge-url", "http://localhost:1")
    assert wrong.returncode == 2 and "--judge-url is for OpenAI-compatible judges" in wrong.stderr


def _read(path: Path) -> list[TrialRecord]:
    return [TrialRecord.from_dict(json.loads(line)) for line in path.read_text().splitlines()]


def test_report_states_agreement_between_judges_after_regrade(run: Path, rule: RuleJudge) -> None:
    from introspection_bench.report import write_reports

    result = regrade_run(run, rule, THRESHOLDS)
    saved = json.loads((run / f"agreement.{judge_slug(result.judge)}.json").read_text())
    assert saved["judges"][-1] == result.judge
    assert {c["criterion"] for c in saved["criteria"]} == {a.criterion for a in result.agreement}
    _, md = write_reports(run, judge_accuracy=False)
    text = md.read_text()
    assert f"## Agreement between judges: {' vs '.join(saved['judges'])}" in text
    first = result.agreement[0]
    assert f"| {first.criterion} | {first.n} |" in text


def test_cli_grade_exits_1_when_a_line_failed_to_grade(tmp_path: Path) -> None:
    cases = _write_jsonl(
        tmp_path / "cases.jsonl", [{"response": "No.", "word": None, "question": "Is it green?"}]
    )
    done = _cli(
        "grade",
        "--protocol",
        "yes_no",
        "--input",
        cases,
        "--output",
        tmp_path / "g.jsonl",
        "--judge",
        "openai:x",
        "--judge-url",
        "http://127.0.0.1:9/v1",
    )
    assert done.returncode == 1, done.stderr
    assert (
        "1 of 1 lines failed to grade (first: judge endpoint http://127.0.0.1:9/v1 unreachable"
        in done.stderr
    )
    (row,) = [json.loads(line) for line in (tmp_path / "g.jsonl").read_text().splitlines()]
    assert row["grades"] == {} and "unreachable" in row["error"]
