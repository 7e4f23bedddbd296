"""Declared protocols (`Experiment`), their rules, and the pytest conventions of the suite.

Engine tests build a user experiment on a tiny random-weight model with SmolLM2's tokenizer and
the pinned stimuli (nothing is generated except by a canned decoder); plugin tests run pytest
in a sandbox (`pytester`) with collection only, so no model is loaded.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from introspection_bench import (
    PASS,
    Cell,
    Check,
    Condition,
    Experiment,
    Grading,
    Inject,
    Result,
    Span,
    Verdict,
    Window,
    register,
    rules,
    word_samples,
)
from introspection_bench import session as session_module
from introspection_bench.errors import ConfigError
from introspection_bench.generation import Completion, GenerationRequest, seed_from_id
from introspection_bench.judges.base import Grade, GradeRequest
from introspection_bench.models import LoadedModel
from introspection_bench.protocols import registry
from introspection_bench.records import RecordStore, TrialRecord
from introspection_bench.runner import load_thresholds, verdict_data
from introspection_bench.session import BenchSession, RunConfig
from introspection_bench.stimuli import load_stimuli
from introspection_bench.suite import assertrepr_compare

pytest_plugins = ["pytester"]

SUITES = Path(__file__).resolve().parents[2] / "suites"
THRESHOLDS = load_thresholds(SUITES / "thresholds.toml")
QUESTION = "What's on your mind?"


def mind(version: str = "1") -> Experiment:
    """A user's experiment: one question, injected from token 1 through generation."""
    return Experiment(
        name="test_mind",
        version=version,
        turns=[("user", "{question}")],
        spans=[Span(name="question", turn=0)],
        samples=word_samples("concept_words", fields={"question": QUESTION}),
        conditions=[
            Condition(name="none"),
            Condition(name="injected", inject=Inject(window=Window(start=1))),
            Condition(name="on_question", inject=Inject(window=Window.span("question"))),
        ],
        grading=Grading(kind="alternative_prompt", word="concept", question="question"),
        checks=[
            Check(
                name="test_mind_named",
                rule=rules.Exceeds(criterion="success", controls={"none": "success"}),
            )
        ],
        max_new_tokens=7,
        temperature=1.0,
    )


class StubJudge:
    name = "stub"
    version = "1"

    def grade_many(self, requests: Sequence[GradeRequest]) -> list[Grade]:
        return [Grade(criteria={"success": True}, judge="stub@1") for _ in requests]


class CannedDecoder:
    def __init__(self, lm: LoadedModel, batch_size: int | None = None) -> None:
        self.requests: list[GenerationRequest] = []

    def generate(
        self, requests: Sequence[GenerationRequest], on_complete: Callable[[Completion], None]
    ) -> None:
        for request in requests:
            on_complete(Completion(request.trial_id, (1,), "I am thinking of dust.", "eos"))


@pytest.fixture(scope="module")
def session(tiny_models: dict[str, LoadedModel], tmp_path_factory: pytest.TempPathFactory) -> Any:
    lm = tiny_models["llama"]
    config = RunConfig(layers=(1,), strengths=(1.0, 2.0), trials=3)
    store = RecordStore(tmp_path_factory.mktemp("declare"))
    return BenchSession(config, lm, load_stimuli(), StubJudge(), store)


# --- the engine -------------------------------------------------------------------------------


def test_experiment_builds_one_control_set_and_every_cell(session: Any) -> None:
    trials = mind().build_trials(session)
    by_condition = {c: [t for t in trials if t.condition == c] for c in ("none", "injected")}
    assert len(by_condition["none"]) == 3 and len(by_condition["injected"]) == 3 * 2
    assert len({t.trial_id for t in trials}) == len(trials) == 3 + 3 * 2 * 2
    for trial in trials:
        assert trial.seed == seed_from_id(trial.trial_id, session.config.seed)
        assert trial.protocol == "test_mind" and trial.extra["protocol_version"] == "1"
        assert trial.grade.word == trial.concept and trial.grade.question == QUESTION
        assert (trial.max_new_tokens, trial.temperature) == (7, 1.0)
    assert [t.trial_id for t in by_condition["none"]] == [f"test_mind/none/{i}" for i in range(3)]
    assert all(t.injection is None and t.layer is None for t in by_condition["none"])
    injected = by_condition["injected"][0]
    assert injected.trial_id == "test_mind/injected/L1/s1/0"
    assert (injected.injection.start, injected.injection.end) == (1, None)


def test_span_window_covers_exactly_the_span(session: Any) -> None:
    trials = [t for t in mind().build_trials(session) if t.condition == "on_question"]
    tokenizer = session.lm.tokenizer
    for trial in trials:
        start, end = trial.injection.start, trial.injection.end
        assert (start, end) == trial.prompt.spans["question"]
        assert tokenizer.decode(trial.prompt.input_ids[start:end]) == QUESTION


def test_experiment_without_a_token_limit_is_a_config_error(session: Any) -> None:
    from dataclasses import replace

    with pytest.raises(ConfigError, match="max_new_tokens"):
        replace(mind(), max_new_tokens=None).build_trials(session)


def test_registered_experiment_runs_records_and_verdicts(
    session: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(session_module, "Decoder", CannedDecoder)
    experiment = register(mind(version="3"))
    assert registry.owner("test_mind_named") is experiment
    run = BenchSession(
        session.config, session.lm, session.stimuli, StubJudge(), RecordStore(tmp_path)
    )
    records = run.run(experiment.build_trials(run))
    assert {r.protocol_version for r in records} == {"3"}
    assert all(r.grades == {"success": True} for r in records)
    verdict = experiment.evaluate(run, records, "test_mind_named", Cell(1, 1.0), THRESHOLDS)
    data = verdict_data(verdict, {"model": "tiny"})
    assert (data["protocol"], data["protocol_version"], data["test"]) == (
        "test_mind",
        "3",
        "test_mind_named",
    )
    assert [m["name"] for m in data["metrics"]] == ["test_mind.success", "test_mind.success"]
    assert not verdict.passed  # every trial succeeded, injected or not: nothing beats control


def test_register_refuses_a_builtin_name_or_a_taken_test() -> None:
    from dataclasses import replace

    with pytest.raises(ConfigError, match="built-in"):
        register(replace(mind(), name="prefill"))
    taken = replace(
        mind(), name="other", checks=[Check(name="prefill", rule=rules.Exceeds(criterion="x"))]
    )
    with pytest.raises(ConfigError, match="already belongs to prefill"):
        register(taken)


def test_unknown_test_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown test 'nope'.*injected_thought.*register"):
        registry.owner("nope")


# --- rules --------------------------------------------------------------------------------------


def _records(condition: str, k: int, n: int, layer: int | None) -> list[TrialRecord]:
    return [
        TrialRecord(
            trial_id=f"p/{condition}/{layer}/{i}",
            protocol="p",
            protocol_version="1",
            condition=condition,
            concept=f"c{i}",
            layer=layer,
            strength=None if layer is None else 1.0,
            injected_norm=None,
            norm_ratio=None,
            seed=0,
            model="m",
            model_fingerprint="f",
            chat_template_hash="c",
            stimuli_hash="s",
            prompt="",
            prompt_sha256="",
            completion="",
            stop_reason="eos",
            judge="rule@1",
            grades={"success": i < k},
        )
        for i in range(n)
    ]


class _OneLayer:
    config = RunConfig(layers=(5,), strengths=(1.0,))

    def layer_index(self, layer: float | int) -> int:
        return int(layer)


@pytest.mark.parametrize(
    ("injected", "control", "passed"), [((18, 20), (1, 20), True), ((5, 20), (5, 20), False)]
)
def test_exceeds_needs_the_lower_bound_above_the_control(
    injected: tuple[int, int], control: tuple[int, int], passed: bool
) -> None:
    records = _records("injected", *injected, layer=5) + _records("none", *control, layer=None)
    rule = rules.Exceeds(criterion="success", controls={"none": "success"})
    verdict = rule.decide("p", _OneLayer(), records, "t", Cell(5, 1.0), THRESHOLDS)
    assert verdict.passed is passed
    assert verdict.message.startswith("PASS" if passed else "FAIL")
    assert "Holm Fisher p=" in verdict.rule and "upper bounds of none" in verdict.rule


def test_not_above_and_cap() -> None:
    records = _records("injected", 15, 20, layer=5) + _records("none", 2, 20, layer=None)
    not_above = rules.NotAbove(criterion="success")
    assert not not_above.decide("p", _OneLayer(), records, "t", Cell(5, 1.0), THRESHOLDS).passed
    cap = rules.UpperBoundBelow(criterion="success", condition="none", cap=0.4)
    assert cap.decide("p", _OneLayer(), records, "t", Cell(None, None), THRESHOLDS).passed
    tight = rules.UpperBoundBelow(criterion="success", condition="none", cap=0.2)
    assert not tight.decide("p", _OneLayer(), records, "t", Cell(None, None), THRESHOLDS).passed


def _verdict(passed: bool) -> Verdict:
    status = "PASS" if passed else "FAIL"
    return Verdict(
        test="t",
        cell=Cell(0.5, 2.0),
        passed=passed,
        message=f"{status} t[layer=0.5,strength=2]: p.success[injected] 1/10 | rule: r",
        metrics=[],
        rule="r",
        multiple_comparison="holm over 4 cells",
    )


def test_result_equals_pass_exactly_when_the_verdict_passed() -> None:
    assert Result(_verdict(True)) == PASS
    assert Result(_verdict(False)) != PASS
    lines = assertrepr_compare("==", Result(_verdict(False)), PASS)
    assert lines[1] == _verdict(False).message and "holm over 4 cells" in lines[2]
    assert assertrepr_compare("==", 1, PASS) is None


# --- pytest conventions (sandbox, collection only) -----------------------------------------------


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    target = pytester.path / "suites"
    target.mkdir()
    for source in [*SUITES.glob("*.py"), SUITES / "thresholds.toml"]:
        shutil.copy(source, target / source.name)
    return pytester


def _ids(result: pytest.RunResult) -> list[str]:
    return [line.split("::", 1)[1] for line in result.outlines if "::" in line]


def test_collect_only_lists_cells_without_loading_a_model(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("collection loaded a model")

    monkeypatch.setattr("introspection_bench.models.load_model", refuse)
    result = suite.runpytest("--collect-only", "-q", "--strengths", "1,2")
    assert result.ret == pytest.ExitCode.OK
    ids = _ids(result)
    assert "test_choice_variant[layer=0.67,strength=2]" in ids
    assert "test_mind_prompt[layer=0.67,strength=1]" in ids


def test_ini_options_set_the_run_and_the_command_line_wins(suite: pytest.Pytester) -> None:
    suite.makepyprojecttoml('[tool.pytest.ini_options]\nib_layers = "0.5"\nib_strengths = "3"\n')
    from_ini = _ids(suite.runpytest("--collect-only", "-q", "suites/test_prefill.py"))
    assert from_ini == ["test_prefill[layer=0.5,strength=3]"]
    from_cli = _ids(
        suite.runpytest("--collect-only", "-q", "--strengths", "4", "suites/test_prefill.py")
    )
    assert from_cli == ["test_prefill[layer=0.5,strength=4]"]


def test_bad_ini_value_is_a_usage_error_naming_the_key(suite: pytest.Pytester) -> None:
    suite.makepyprojecttoml('[tool.pytest.ini_options]\nib_trials = "many"\n')
    result = suite.runpytest("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ib_trials = 'many'*give a int*"])


def test_every_option_has_an_ini_twin(suite: pytest.Pytester) -> None:
    result = suite.runpytest("--help")
    help_text = result.stdout.str()
    for dest in (
        "ib_model",
        "ib_profile",
        "ib_layers",
        "ib_strengths",
        "ib_trials",
        "ib_seed",
        "ib_judge",
        "ib_report_dir",
        "ib_baseline",
        "ib_dtype",
        "ib_device",
    ):
        assert f"{dest} " in help_text or f"{dest}(" in help_text, dest


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ("prefill", {"test_prefill"}),
        ("injected_thought", {"test_injected_thought", "test_control", "test_random_vector"}),
        ("mind_prompt", {"test_mind_prompt"}),
    ],
)
def test_a_marker_per_protocol_selects_its_tests(
    suite: pytest.Pytester, marker: str, expected: set[str]
) -> None:
    result = suite.runpytest("--collect-only", "-q", "--strict-markers", "-m", marker)
    assert result.ret == pytest.ExitCode.OK
    assert {i.split("[", 1)[0] for i in _ids(result)} == expected


def test_failed_claim_prints_the_verdict_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from introspection_bench import PASS, Cell, Result, Verdict

        def test_claim():
            verdict = Verdict(test="t", cell=Cell(0.5, 2.0), passed=False,
                              message="FAIL t[layer=0.5,strength=2]: numbers | rule: r",
                              metrics=[], rule="r")
            injected_concept_named = Result(verdict)
            assert injected_concept_named == PASS
        """
    )
    result = pytester.runpytest("-q")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*FAIL t[[]layer=0.5,strength=2[]]: numbers | rule: r*"])


def _tutorial_code() -> str:
    readme = (SUITES.parent / "README.md").read_text()
    section = readme.split("## Write your own protocol", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_tutorial_code_collects_and_selects_by_marker(suite: pytest.Pytester) -> None:
    (suite.path / "suites" / "test_my_prompt.py").write_text(_tutorial_code())
    result = suite.runpytest(
        "--collect-only", "-q", "--strict-markers", "-m", "my_prompt", "--strengths", "1,2"
    )
    assert result.ret == pytest.ExitCode.OK, result.outlines
    assert _ids(result) == [
        "test_my_prompt[layer=0.67,strength=1]",
        "test_my_prompt[layer=0.67,strength=2]",
    ]
