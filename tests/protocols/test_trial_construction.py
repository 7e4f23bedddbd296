"""Trials as the protocols build them on SmolLM2's chat template: windows, ids, seeds, doses.

Every protocol's `build_trials` runs on a real `BenchSession` (SmolLM2-135M-Instruct, fp32, CPU,
the pinned stimuli, concept vectors from the disk cache). Nothing is generated, except in the
record test, where a stand-in decoder returns canned completions so that `session.run` writes
real records without a forward pass.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from introspection_bench import session as session_module
from introspection_bench.generation import Completion, GenerationRequest, seed_from_id
from introspection_bench.judges.base import Grade, GradeRequest
from introspection_bench.models import LoadedModel
from introspection_bench.protocols import (
    alternative_prompt,
    injected_thought,
    intentional_control,
    prefill,
    thought_vs_text,
    yes_bias,
)
from introspection_bench.protocols.base import Trial
from introspection_bench.records import RecordStore
from introspection_bench.session import BenchSession, RunConfig
from introspection_bench.stimuli import Stimuli, load_stimuli

pytestmark = pytest.mark.slow

MODULES = (
    injected_thought,
    thought_vs_text,
    prefill,
    intentional_control,
    yes_bias,
    alternative_prompt,
)
LAYER = 20  # 0.67 of SmolLM2's 30 blocks
STRENGTHS = (0.5, 1.0)
CONFIG = RunConfig(layers=(0.67,), strengths=STRENGTHS, trials=4, dose="norm")
#: Exp 1 on SmolLM2's template: the "\n\n" before "Trial 1" is token 145 of the rendered prompt
#: (pinned stimuli, pinned tokenizer); a change in either moves it and must be looked at.
EXP1_WINDOW_START = 145


class StubJudge:
    """Grades every request with one fixed criterion (no grading logic is under test)."""

    name = "stub"
    version = "1"

    def grade_many(self, requests: Sequence[GradeRequest]) -> list[Grade]:
        return [Grade(criteria={"affirms": True}, judge="stub@1") for _ in requests]


class CannedDecoder:
    """Stands in for `generation.Decoder`: every trial 'generates' a fixed reply, no forward."""

    def __init__(self, lm: LoadedModel, batch_size: int | None = None) -> None:
        self.requests: list[GenerationRequest] = []

    def generate(
        self, requests: Sequence[GenerationRequest], on_complete: Callable[[Completion], None]
    ) -> None:
        self.requests += requests
        for request in requests:
            on_complete(Completion(request.trial_id, (1, 2), "Yes, I notice a thought.", "eos"))


def make_session(
    lm: LoadedModel, stimuli: Stimuli, run_dir: Path, config: RunConfig = CONFIG
) -> BenchSession:
    return BenchSession(config, lm, stimuli, StubJudge(), RecordStore(run_dir))


def build_all(session: BenchSession) -> dict[str, list[Trial]]:
    return {module.NAME: module.build_trials(session) for module in MODULES}


@pytest.fixture(scope="module")
def stimuli() -> Stimuli:
    return load_stimuli()


@pytest.fixture(scope="module")
def session(
    smollm2: LoadedModel, stimuli: Stimuli, tmp_path_factory: pytest.TempPathFactory
) -> BenchSession:
    return make_session(smollm2, stimuli, tmp_path_factory.mktemp("records"))


@pytest.fixture(scope="module")
def trials(session: BenchSession) -> dict[str, list[Trial]]:
    return build_all(session)


def decode(session: BenchSession, trial: Trial, start: int, end: int | None = None) -> str:
    ids = trial.prompt.input_ids
    return session.lm.tokenizer.decode(ids[start:end] if end is not None else ids[start:])


def of(trials: dict[str, list[Trial]], protocol: str, condition: str) -> list[Trial]:
    found = [t for t in trials[protocol] if t.condition == condition]
    assert found, f"no {protocol}/{condition} trials"
    return found


# --- windows on SmolLM2's chat template ------------------------------------------------------


def test_exp1_window_starts_at_the_blank_line_before_trial_1(
    session: BenchSession, trials: Any
) -> None:
    injected = of(trials, "injected_thought", "injected")
    prompt = injected[0].prompt
    start = injected[0].injection.start
    # Independently: the text before "\n\nTrial 1" tokenizes to exactly `start` tokens.
    before = prompt.text[: prompt.text.index("\n\nTrial 1")]
    assert len(session.lm.tokenizer(before, add_special_tokens=False)["input_ids"]) == start
    assert start == EXP1_WINDOW_START
    # SmolLM2 writes "\n\n" as two "\n" tokens: the window opens on the first.
    assert decode(session, injected[0], start, start + 1) == "\n"
    assert decode(session, injected[0], start, start + 2) == "\n\n"
    assert decode(session, injected[0], start, start + 6) == "\n\nTrial 1"
    assert decode(session, injected[0], start - 1, start) == "."  # "Ok, let's get started."


def test_exp1_window_is_open_ended_for_every_injected_row(trials: Any) -> None:
    rows = of(trials, "injected_thought", "injected") + of(
        trials, "injected_thought", "random_vector"
    )
    assert {(t.injection.start, t.injection.end, t.injection.layer) for t in rows} == {
        (EXP1_WINDOW_START, None, LAYER)
    }


def test_thought_vs_text_window_is_exactly_the_sentence(session: BenchSession, trials: Any) -> None:
    for trial in trials["thought_vs_text"]:
        start, end = trial.injection.start, trial.injection.end
        assert (start, end) == trial.prompt.spans["sentence"]
        assert decode(session, trial, start, end) == trial.extra["sentence"]


def test_prefill_window_is_exactly_the_sentence(session: BenchSession, trials: Any) -> None:
    for condition in ("matching", "random_word"):
        for trial in of(trials, "prefill", condition):
            start, end = trial.injection.start, trial.injection.end
            assert decode(session, trial, start, end) == trial.extra["sentence"]
            prefilled_at = trial.prompt.text.index(f"\n{trial.extra['prefilled']}<|im_end|>")
            assert len(session.lm.tokenizer(trial.prompt.text[:prefilled_at])["input_ids"]) >= end


def test_prefill_last_turn_window_is_exactly_the_last_user_turn(
    session: BenchSession, stimuli: Stimuli, trials: Any
) -> None:
    last_turn = stimuli.template("prefill")["turns"][-1][1]
    assert last_turn == "Did you mean to say that, or was it an accident?"
    for trial in of(trials, "prefill", "last_turn"):
        start, end = trial.injection.start, trial.injection.end
        assert decode(session, trial, start, end) == last_turn
        assert decode(session, trial, end).startswith("<|im_end|>")


def test_prefill_injects_the_prefilled_word_or_another_one(
    session: BenchSession, trials: Any
) -> None:
    vectors = session.vectors(LAYER)
    for trial in of(trials, "prefill", "matching") + of(trials, "prefill", "last_turn"):
        assert torch.equal(trial.injection.vector, vectors[trial.extra["prefilled"]])
    for trial in of(trials, "prefill", "random_word"):
        assert trial.extra["injected_word"] != trial.extra["prefilled"].lower()
        assert torch.equal(trial.injection.vector, vectors[trial.extra["injected_word"]])


def test_alternative_prompt_injects_from_token_1(trials: Any) -> None:
    rows = of(trials, "alternative_prompt", "injected")
    assert {(t.injection.start, t.injection.end) for t in rows} == {(1, None)}


def test_no_window_ever_touches_position_0(trials: Any) -> None:
    injected = [t for rows in trials.values() for t in rows if t.injection is not None]
    assert injected and min(t.injection.start for t in injected) >= 1


def test_yes_bias_window_starts_at_the_question(session: BenchSession, trials: Any) -> None:
    for trial in of(trials, "yes_bias", "injected"):
        start, end = trial.prompt.spans["question"]
        assert (trial.injection.start, trial.injection.end) == (start, None)
        assert decode(session, trial, start, end) == trial.extra["question"]
        assert decode(session, trial, 0, start).endswith("<|im_start|>user\n")


def test_intentional_control_span_is_exactly_the_assistant_sentence(
    session: BenchSession, trials: Any
) -> None:
    for trial in trials["intentional_control"]:
        start, end = trial.prompt.spans["sentence"]
        assert decode(session, trial, start, end) == trial.extra["sentence"]
        assert decode(session, trial, 0, start).endswith("<|im_start|>assistant\n")
        assert decode(session, trial, end) == "<|im_end|>\n"  # teacher-forced: no generation prompt


# --- ids and seeds --------------------------------------------------------------------------


def test_trial_ids_are_unique(trials: Any) -> None:
    ids = [t.trial_id for rows in trials.values() for t in rows]
    assert len(ids) == len(set(ids))


def test_trial_ids_name_their_protocol_and_condition(trials: Any) -> None:
    for protocol, rows in trials.items():
        for trial in rows:
            assert trial.protocol == protocol
            assert trial.trial_id.split("/")[:2] == [protocol, trial.condition]


def test_two_builds_give_the_same_trials(session: BenchSession, trials: Any) -> None:
    again = build_all(session)
    for protocol, rows in trials.items():
        assert [t.trial_id for t in again[protocol]] == [t.trial_id for t in rows]
        for a, b in zip(rows, again[protocol], strict=True):
            assert (a.seed, a.prompt, a.concept, a.layer, a.strength) == (
                b.seed,
                b.prompt,
                b.concept,
                b.layer,
                b.strength,
            )
            assert (a.injection is None) == (b.injection is None)
            if a.injection is not None:
                assert (a.injection.start, a.injection.end, a.injection.strength) == (
                    b.injection.start,
                    b.injection.end,
                    b.injection.strength,
                )
                assert torch.equal(a.injection.vector, b.injection.vector)


def test_seeds_derive_from_ids_and_the_run_seed(trials: Any) -> None:
    for rows in trials.values():
        for trial in rows:
            assert trial.seed == seed_from_id(trial.trial_id, CONFIG.seed)
    seeds = [t.seed for rows in trials.values() for t in rows]
    assert len(set(seeds)) == len(seeds)


def test_seeds_do_not_depend_on_trial_count_or_order(session: BenchSession, trials: Any) -> None:
    more = make_session(
        session.lm,
        session.stimuli,
        session.store.run_dir / "more",
        RunConfig(
            layers=CONFIG.layers, strengths=tuple(reversed(STRENGTHS)), trials=6, dose="norm"
        ),
    )
    bigger = {t.trial_id: t.seed for rows in build_all(more).values() for t in rows}
    for rows in trials.values():
        for trial in rows:
            assert bigger[trial.trial_id] == trial.seed


def test_another_run_seed_changes_every_seed(session: BenchSession) -> None:
    other = make_session(
        session.lm,
        session.stimuli,
        session.store.run_dir / "seed1",
        RunConfig(layers=CONFIG.layers, strengths=STRENGTHS, trials=4, seed=1),
    )
    rows = injected_thought.build_trials(other)
    controls = [t for t in rows if t.condition == "control"]
    assert controls and all(t.seed != seed_from_id(t.trial_id, 0) for t in controls)
    assert all(t.seed == seed_from_id(t.trial_id, 1) for t in rows)


# --- conditions and doses -------------------------------------------------------------------

CONTROLS = [
    ("injected_thought", "control"),
    ("prefill", "none"),
    ("yes_bias", "none"),
    ("alternative_prompt", "none"),
]


@pytest.mark.parametrize(("protocol", "condition"), CONTROLS)
def test_control_trials_carry_no_injection(trials: Any, protocol: str, condition: str) -> None:
    for trial in of(trials, protocol, condition):
        assert trial.injection is None
        assert (trial.layer, trial.strength, trial.injected_norm, trial.norm_ratio) == (
            None,
            None,
            None,
            None,
        )
        assert "/L" not in trial.trial_id  # one control set for the whole sweep


def test_intentional_control_trials_carry_no_injection(trials: Any) -> None:
    assert all(t.injection is None and t.max_new_tokens == 0 for t in trials["intentional_control"])


def test_random_vector_has_the_concept_norm_but_another_direction(
    session: BenchSession, trials: Any
) -> None:
    vectors = session.vectors(LAYER)
    randoms = of(trials, "injected_thought", "random_vector")
    directions = []
    for trial in randoms:
        concept = vectors[trial.concept]
        random = trial.injection.vector
        assert float(random.norm()) == pytest.approx(float(concept.norm()), rel=1e-5)
        cosine = float(torch.nn.functional.cosine_similarity(random, concept, dim=0))
        assert abs(cosine) < 0.2, (trial.trial_id, cosine)
        directions.append(random / random.norm())
    # and not one shared random direction
    assert float((directions[0] * directions[1]).sum()) < 0.5


def test_random_vector_rows_get_the_same_dose_as_concept_rows(trials: Any) -> None:
    injected = {
        t.trial_id.replace("/injected/", "/"): t for t in of(trials, "injected_thought", "injected")
    }
    for trial in of(trials, "injected_thought", "random_vector"):
        twin = injected[trial.trial_id.replace("/random_vector/", "/")]
        assert trial.injected_norm == pytest.approx(twin.injected_norm, rel=1e-5)
        assert trial.norm_ratio == pytest.approx(twin.norm_ratio, rel=1e-5)


def _injected(trials: dict[str, list[Trial]]) -> list[Trial]:
    return [t for rows in trials.values() for t in rows if t.injection is not None]


def test_norm_dose_makes_the_norm_ratio_equal_the_strength(
    session: BenchSession, trials: Any
) -> None:
    median = session.vectors(LAYER).median_residual_norm
    rows = _injected(trials)
    assert {t.strength for t in rows} == set(STRENGTHS)
    for trial in rows:
        added = trial.injection.strength * float(trial.injection.vector.norm())
        assert added / median == pytest.approx(trial.strength, rel=1e-5)
        assert trial.norm_ratio == pytest.approx(trial.strength, rel=1e-5)
        assert trial.injected_norm == pytest.approx(trial.strength * median, rel=1e-5)


def test_raw_dose_multiplies_the_raw_vector(session: BenchSession, tmp_path: Path) -> None:
    raw = make_session(
        session.lm,
        session.stimuli,
        tmp_path,
        RunConfig(layers=CONFIG.layers, strengths=STRENGTHS, trials=4, dose="raw"),
    )
    median = raw.vectors(LAYER).median_residual_norm
    rows = _injected({m.NAME: m.build_trials(raw) for m in (injected_thought, prefill, yes_bias)})
    assert rows
    for trial in rows:
        norm = float(trial.injection.vector.norm())
        assert trial.injection.strength == trial.strength
        assert trial.injected_norm == pytest.approx(trial.strength * norm, rel=1e-5)
        assert trial.norm_ratio == pytest.approx(trial.strength * norm / median, rel=1e-5)


# --- records --------------------------------------------------------------------------------


def test_records_carry_the_run_identity(
    smollm2: LoadedModel,
    stimuli: Stimuli,
    trials: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(session_module, "Decoder", CannedDecoder)
    session = make_session(smollm2, stimuli, tmp_path)
    chosen = [rows[0] for name, rows in trials.items() if name != "intentional_control"]
    chosen += [rows[-1] for name, rows in trials.items() if name != "intentional_control"]
    records = {r.trial_id: r for r in session.run(chosen)}
    assert set(records) == {t.trial_id for t in chosen}
    for trial in chosen:
        record = records[trial.trial_id]
        assert (
            record.stimuli_hash
            == stimuli.sha256
            == hashlib.sha256(Path(stimuli.path).read_bytes()).hexdigest()
        )
        assert (
            record.model_fingerprint == smollm2.fingerprint and len(record.model_fingerprint) == 64
        )
        assert (
            record.chat_template_hash
            == hashlib.sha256(smollm2.tokenizer.chat_template.encode()).hexdigest()
        )
        assert record.prompt == trial.prompt.text
        assert record.prompt_sha256 == hashlib.sha256(record.prompt.encode()).hexdigest()
        assert (record.protocol, record.condition, record.concept) == (
            trial.protocol,
            trial.condition,
            trial.concept,
        )
        assert (record.layer, record.strength, record.seed) == (
            trial.layer,
            trial.strength,
            trial.seed,
        )
        assert (record.injected_norm, record.norm_ratio) == (trial.injected_norm, trial.norm_ratio)
        assert record.completion == "Yes, I notice a thought." and record.stop_reason == "eos"
        if trial.grade is None:  # Exp 2 repeat trials are scored by transcription, not judged
            assert (record.judge, record.grades) == ("", {})
        else:
            assert (record.judge, record.grades) == ("stub@1", {"affirms": True})
        assert record.error is None


def test_measured_records_carry_the_run_identity(
    smollm2: LoadedModel, stimuli: Stimuli, trials: Any, tmp_path: Path
) -> None:
    session = make_session(smollm2, stimuli, tmp_path)
    trial = trials["intentional_control"][0]
    record = session.measured_record(trial, {"cosine_word": [0.1], "cosine_baseline": [0.0]})
    assert session.store.get(trial.trial_id) == record
    assert record.stimuli_hash == stimuli.sha256 and record.model_fingerprint == smollm2.fingerprint
    assert record.prompt_sha256 == hashlib.sha256(trial.prompt.text.encode()).hexdigest()
    assert (record.judge, record.stop_reason, record.completion) == ("none", "teacher_forced", "")
    assert record.extra["sentence"] == trial.extra["sentence"] and record.extra["cosine_word"] == [
        0.1
    ]


@pytest.mark.parametrize("module", [injected_thought, intentional_control], ids=lambda m: m.NAME)
def test_records_carry_their_protocol_version(
    module: ModuleType,
    smollm2: LoadedModel,
    stimuli: Stimuli,
    trials: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(session_module, "Decoder", CannedDecoder)
    monkeypatch.setattr(module, "VERSION", "7")
    session = make_session(smollm2, stimuli, tmp_path)
    trial = trials[module.NAME][0]
    if module is intentional_control:
        record = session.measured_record(trial, {})
    else:
        (record,) = session.run([trial])
    assert record.protocol_version == "7"
