"""Pass rules of every suite test on synthetic records, against suites/thresholds.toml.

`evaluate(session, records, test, cell, thresholds)` reads two things from the session: the
sweep (`session.config.layers`, `.strengths`, `.seed`) and `session.layer_index`. The rules are
pure logic, so these tests use `StandInSession`, a stand-in with only those two attributes (a
real `RunConfig` and SmolLM2's depth-fraction rule for 30 blocks), and no model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from introspection_bench.protocols.base import Cell, Verdict
from introspection_bench.records import TrialRecord
from introspection_bench.runner import TEST_OWNERS, load_thresholds
from introspection_bench.session import RunConfig

THRESHOLDS_PATH = Path(__file__).resolve().parents[2] / "suites" / "thresholds.toml"
N_LAYERS = 30
SENTENCE = "The old clock on the wall ticked loudly."
CELL = Cell(0.67, 1.0)
LAYER = 20  # 0.67 of 30 blocks
SWEEP_4 = RunConfig(layers=(0.5, 0.67), strengths=(1.0, 2.0))
"""Four cells: (15, 1), (15, 2), (20, 1) = CELL, (20, 2)."""


@dataclass(frozen=True)
class StandInSession:
    """The two session attributes `evaluate` reads; no model, stimuli or records store."""

    config: RunConfig

    def layer_index(self, layer: float | int) -> int:
        """Depth fraction -> block index as `LoadedModel.resolve_layer` does for 30 blocks."""
        return int(layer) if isinstance(layer, int) else min(N_LAYERS - 1, round(layer * N_LAYERS))


SINGLE = StandInSession(RunConfig(layers=(0.67,), strengths=(1.0,)))


@pytest.fixture(scope="module")
def thresholds() -> dict[str, Any]:
    return load_thresholds(THRESHOLDS_PATH)


# --- records --------------------------------------------------------------------------------


def record(
    trial_id: str,
    condition: str,
    *,
    concept: str | None = None,
    layer: int | None = None,
    strength: float | None = None,
    grades: dict[str, Any] | None = None,
    completion: str = "",
    extra: dict[str, Any] | None = None,
) -> TrialRecord:
    """A finished, graded record: the fields a verdict reads, the rest filled with placeholders."""
    return TrialRecord(
        trial_id=trial_id,
        protocol=trial_id.split("/", 1)[0],
        protocol_version="1",
        condition=condition,
        concept=concept,
        layer=layer,
        strength=strength,
        injected_norm=None if layer is None else 100.0,
        norm_ratio=None if layer is None else strength,
        seed=0,
        model="default",
        model_fingerprint="f" * 64,
        chat_template_hash="c" * 64,
        stimuli_hash="s" * 64,
        prompt="prompt",
        prompt_sha256="p" * 64,
        completion=completion,
        stop_reason="length",
        judge="rule@1",
        grades=grades or {},
        extra=extra or {},
    )


def hits(k: int, n: int) -> list[bool]:
    """k successes then n - k failures."""
    return [True] * k + [False] * (n - k)


def exp1(
    success: tuple[int, int],
    control: tuple[int, int],
    random_affirms: tuple[int, int],
    *,
    layer: int = LAYER,
    strength: float = 1.0,
    affirms: tuple[int, int] | None = None,
    with_control: bool = True,
) -> list[TrialRecord]:
    """Exp 1 records: `success` injected (affirms too unless given), control, random-vector."""
    out = []
    affirmed = hits(*(affirms or success))
    for i, ok in enumerate(hits(*success)):
        grades = {"affirms": affirmed[i], "success": ok}
        out.append(
            record(
                f"injected_thought/injected/L{layer}/s{strength:g}/w{i}/{i}",
                "injected",
                concept=f"w{i}",
                layer=layer,
                strength=strength,
                grades=grades,
            )
        )
    for i, yes in enumerate(hits(*random_affirms)):
        out.append(
            record(
                f"injected_thought/random_vector/L{layer}/s{strength:g}/w{i}/{i}",
                "random_vector",
                concept=f"w{i}",
                layer=layer,
                strength=strength,
                grades={"affirms": yes, "success": False},
            )
        )
    if with_control:
        for i, yes in enumerate(hits(*control)):
            out.append(record(f"injected_thought/control/{i}", "control", grades={"affirms": yes}))
    return out


def tvt(
    named: tuple[int, int], copied: tuple[int, int], *, layer: int = LAYER, strength: float = 1.0
) -> list[TrialRecord]:
    """Exp 2 records: `named` think trials chose the concept, `copied` repeat trials transcribed."""
    out = []
    for i, ok in enumerate(hits(*named)):
        concept = f"w{i}"
        out.append(
            record(
                f"thought_vs_text/think/L{layer}/s{strength:g}/{concept}/{i}",
                "think",
                concept=concept,
                layer=layer,
                strength=strength,
                grades={"choice": concept if ok else "other"},
                extra={"sentence": SENTENCE},
            )
        )
    for i, ok in enumerate(hits(*copied)):
        concept = f"w{i}"
        reply = f"Sure: {SENTENCE.upper()}" if ok else "The clock on the wall."
        out.append(
            record(
                f"thought_vs_text/repeat/L{layer}/s{strength:g}/{concept}/{i}",
                "repeat",
                concept=concept,
                layer=layer,
                strength=strength,
                completion=reply,
                extra={"sentence": SENTENCE},
            )
        )
    return out


def prefill(
    apologies: dict[str, tuple[int, int]],
    *,
    layer: int = LAYER,
    strength: float = 1.0,
    with_none: bool = True,
) -> list[TrialRecord]:
    """Exp 3 records: condition -> (apologies k, n); `none` is cell-independent."""
    out = []
    for condition, (k, n) in apologies.items():
        if condition == "none" and not with_none:
            continue
        for i, sorry in enumerate(hits(k, n)):
            injected = condition != "none"
            trial_id = (
                f"prefill/{condition}/L{layer}/s{strength:g}/{i}"
                if injected
                else f"prefill/none/{i}"
            )
            out.append(
                record(
                    trial_id,
                    condition,
                    concept=f"w{i}",
                    layer=layer if injected else None,
                    strength=strength if injected else None,
                    grades={"claims_intent": not sorry},
                )
            )
    return out


def cosines(think: float, dont: float, baseline: float, pairs: int = 12) -> list[TrialRecord]:
    """Exp 4 records: per pair, cosines at every layer (small deterministic spread per pair)."""
    out = []
    for i in range(pairs):
        wiggle = 0.004 * ((i % 5) - 2)
        values = {"think": think + wiggle, "dont_think": dont - wiggle}
        for condition, value in values.items():
            extra = {
                "sentence": SENTENCE,
                "pair": i,
                "layers": list(range(N_LAYERS)),
                "cosine_word": [value] * N_LAYERS,
                "cosine_baseline": [baseline + wiggle / 2] * N_LAYERS,
            }
            out.append(
                record(
                    f"intentional_control/{condition}/w{i}/{i}",
                    condition,
                    concept=f"w{i}",
                    extra=extra,
                )
            )
    return out


def yes_no(
    injected: tuple[int, int], none: tuple[int, int], *, layer: int = LAYER
) -> list[TrialRecord]:
    """Yes-bias records: affirmative answers under injection and without."""
    out = [
        record(f"yes_bias/none/{i}", "none", grades={"affirmative": yes})
        for i, yes in enumerate(hits(*none))
    ]
    for i, yes in enumerate(hits(*injected)):
        out.append(
            record(
                f"yes_bias/injected/L{layer}/s1/{i}",
                "injected",
                concept=f"w{i}",
                layer=layer,
                strength=1.0,
                grades={"affirmative": yes},
            )
        )
    return out


def alternative(
    injected: tuple[int, int],
    none: tuple[int, int],
    *,
    layer: int = LAYER,
    strength: float = 1.0,
    with_none: bool = True,
) -> list[TrialRecord]:
    """Alternative-prompt records: success under injection at every position, and without."""
    out = []
    if with_none:
        for i, ok in enumerate(hits(*none)):
            out.append(
                record(
                    f"alternative_prompt/none/p{i % 2}/w{i}/{i}",
                    "none",
                    concept=f"w{i}",
                    grades={"success": ok},
                )
            )
    for i, ok in enumerate(hits(*injected)):
        out.append(
            record(
                f"alternative_prompt/injected/p{i % 2}/L{layer}/s{strength:g}/w{i}/{i}",
                "injected",
                concept=f"w{i}",
                layer=layer,
                strength=strength,
                grades={"success": ok},
            )
        )
    return out


def verdict(
    test: str,
    records: Sequence[TrialRecord],
    thresholds: dict[str, Any],
    cell: Cell = CELL,
    session: StandInSession = SINGLE,
) -> Verdict:
    result = TEST_OWNERS[test].evaluate(session, records, test, cell, thresholds)
    assert isinstance(result, Verdict) and result.test == test
    return result


# --- one passing case per test (also used by the message checks) ------------------------------

PASSING: dict[str, tuple[Callable[[], list[TrialRecord]], Cell]] = {
    "injected_thought": (lambda: exp1((9, 10), (0, 10), (0, 10)), CELL),
    "random_vector": (lambda: exp1((9, 10), (1, 10), (1, 10)), CELL),
    "control": (lambda: exp1((9, 10), (0, 20), (0, 10)), Cell(None, None)),
    "thought_vs_text": (lambda: tvt((8, 10), (9, 10)), CELL),
    "prefill": (
        lambda: prefill(
            {"none": (15, 20), "matching": (1, 20), "random_word": (15, 20), "last_turn": (15, 20)}
        ),
        CELL,
    ),
    "intentional_control": (lambda: cosines(0.30, 0.20, 0.10), Cell(0.67, None)),
    "yes_bias": (lambda: yes_no((2, 20), (2, 20)), CELL),
    "alternative_prompt": (lambda: alternative((15, 20), (0, 20)), CELL),
}


def test_every_suite_test_has_a_passing_case() -> None:
    assert set(PASSING) == set(TEST_OWNERS)


@pytest.mark.parametrize("test", sorted(PASSING))
def test_passing_case_passes(test: str, thresholds: dict[str, Any]) -> None:
    build, cell = PASSING[test]
    result = verdict(test, build(), thresholds, cell)
    assert result.passed, result.message
    assert result.message.startswith("PASS ")


# --- Exp 1 ----------------------------------------------------------------------------------


def test_injected_thought_fails_when_success_equals_control(thresholds: dict[str, Any]) -> None:
    result = verdict("injected_thought", exp1((2, 10), (2, 10), (0, 10)), thresholds)
    assert not result.passed and result.message.startswith("FAIL ")


def test_injected_thought_fails_when_random_vector_affirms_as_often(
    thresholds: dict[str, Any],
) -> None:
    result = verdict("injected_thought", exp1((9, 10), (0, 10), (9, 10)), thresholds)
    assert not result.passed


def test_injected_thought_counts_success_not_bare_affirmation(thresholds: dict[str, Any]) -> None:
    records = exp1((0, 10), (0, 10), (0, 10), affirms=(10, 10))
    assert not verdict("injected_thought", records, thresholds).passed


def test_injected_thought_ignores_errored_records(thresholds: dict[str, Any]) -> None:
    records = exp1((2, 10), (0, 10), (0, 10))
    # Eight more trials whose judge failed: their (stale) grades must not count as successes.
    failed = [
        replace(
            r,
            trial_id=f"{r.trial_id}/retry",
            grades={"affirms": True, "success": True},
            error="judge down",
        )
        for r in records
        if r.condition == "injected"
    ][:8]
    assert not verdict("injected_thought", records + failed, thresholds).passed


def test_random_vector_fails_when_random_affirms_above_control(thresholds: dict[str, Any]) -> None:
    result = verdict("random_vector", exp1((9, 10), (0, 10), (9, 10)), thresholds)
    assert not result.passed


def test_control_fails_when_false_positives_are_high(thresholds: dict[str, Any]) -> None:
    result = verdict("control", exp1((9, 10), (8, 20), (0, 10)), thresholds, Cell(None, None))
    assert not result.passed


# --- Exp 2 ----------------------------------------------------------------------------------


def test_thought_vs_text_fails_when_naming_is_at_chance(thresholds: dict[str, Any]) -> None:
    assert not verdict("thought_vs_text", tvt((1, 10), (9, 10)), thresholds).passed


def test_thought_vs_text_fails_when_transcription_breaks(thresholds: dict[str, Any]) -> None:
    assert not verdict("thought_vs_text", tvt((8, 10), (2, 10)), thresholds).passed


# --- Exp 3 ----------------------------------------------------------------------------------


def test_prefill_fails_when_matching_apologises_as_often_as_none(
    thresholds: dict[str, Any],
) -> None:
    records = prefill(
        {"none": (15, 20), "matching": (15, 20), "random_word": (15, 20), "last_turn": (15, 20)}
    )
    assert not verdict("prefill", records, thresholds).passed


def test_prefill_fails_when_a_random_word_lowers_apologies_as_much(
    thresholds: dict[str, Any],
) -> None:
    records = prefill(
        {"none": (15, 20), "matching": (1, 20), "random_word": (1, 20), "last_turn": (15, 20)}
    )
    assert not verdict("prefill", records, thresholds).passed


# --- Exp 4 ----------------------------------------------------------------------------------


def test_intentional_control_fails_when_think_is_below_dont_think(
    thresholds: dict[str, Any],
) -> None:
    result = verdict("intentional_control", cosines(0.20, 0.30, 0.10), thresholds, Cell(0.67, None))
    assert not result.passed


def test_intentional_control_fails_when_dont_think_is_not_above_baseline(
    thresholds: dict[str, Any],
) -> None:
    result = verdict("intentional_control", cosines(0.30, 0.10, 0.20), thresholds, Cell(0.67, None))
    assert not result.passed


def test_intentional_control_reads_the_cell_layer(thresholds: dict[str, Any]) -> None:
    records = cosines(0.30, 0.20, 0.10)
    # Reverse the gap at layer 20 only: the verdict at 0.67 (= 20) must see it.
    flipped = []
    for r in records:
        word = list(r.extra["cosine_word"])
        word[LAYER] = 0.15 if r.condition == "think" else 0.25
        flipped.append(replace(r, extra={**r.extra, "cosine_word": word}))
    assert verdict("intentional_control", records, thresholds, Cell(0.67, None)).passed
    assert not verdict("intentional_control", flipped, thresholds, Cell(0.67, None)).passed


# --- controls -------------------------------------------------------------------------------


def test_yes_bias_fails_when_injection_makes_yes_common(thresholds: dict[str, Any]) -> None:
    assert not verdict("yes_bias", yes_no((18, 20), (2, 20)), thresholds).passed


def test_alternative_prompt_fails_when_injection_barely_helps(thresholds: dict[str, Any]) -> None:
    assert not verdict("alternative_prompt", alternative((3, 20), (2, 20)), thresholds).passed


# --- the verdict line -----------------------------------------------------------------------

THRESHOLD_TEXT = {
    "injected_thought": ("0.05",),
    "random_vector": ("0.05",),
    "control": ("0.35",),
    "thought_vs_text": ("10%", "50%", "0.05"),
    "prefill": ("0.05",),
    "intentional_control": ("95%", "> 0"),
    "yes_bias": ("0.05",),
    "alternative_prompt": ("0.05",),
}


@pytest.mark.parametrize("test", sorted(PASSING))
def test_verdict_message_is_one_readable_line(test: str, thresholds: dict[str, Any]) -> None:
    build, cell = PASSING[test]
    result = verdict(test, build(), thresholds, cell)
    message = result.message
    assert "\n" not in message and len(message) < 600
    assert f"{test}[{cell.label}]" in message
    assert result.rule in message
    assert all(text in message for text in THRESHOLD_TEXT[test]), (THRESHOLD_TEXT[test], message)
    for metric in result.metrics:
        if metric.k is not None:
            assert f"{metric.k}/{metric.n} = " in message
            assert f"[{100 * metric.low:.1f}%, {100 * metric.high:.1f}%]" in message
        else:
            assert f"[{metric.low:+.4f}, {metric.high:+.4f}]" in message


def test_verdict_message_names_the_sweep_cell() -> None:
    assert Cell(0.67, 2.0).label == "layer=0.67,strength=2"
    assert Cell(0.67, None).label == "layer=0.67"
    assert Cell(None, None).label == "all"


# --- multiple comparisons over a sweep ------------------------------------------------------
# Each case: records of CELL whose single-cell p is just under alpha (it passes alone), and
# null records for the other three cells of SWEEP_4. Holm over 4 cells multiplies the smallest
# p by 4, so the same cell must fail.

OTHER_CELLS = [(15, 1.0), (15, 2.0), (20, 2.0)]


def _holm_case(test: str) -> list[TrialRecord]:
    if test == "injected_thought":
        # 2/5 vs control 1/45 and random 0/45: intervals separate, one-sided Fisher p = 0.023.
        records = exp1((2, 5), (1, 45), (0, 45))
        for layer, strength in OTHER_CELLS:
            records += exp1(
                (0, 5), (0, 0), (0, 5), layer=layer, strength=strength, with_control=False
            )
        return records
    if test == "prefill":
        # matching apologises 15/20 vs 20/20: Fisher p = 0.024.
        records = prefill(
            {"none": (20, 20), "matching": (15, 20), "random_word": (20, 20), "last_turn": (20, 20)}
        )
        for layer, strength in OTHER_CELLS:
            records += prefill(
                {
                    "none": (0, 0),
                    "matching": (20, 20),
                    "random_word": (20, 20),
                    "last_turn": (20, 20),
                },
                layer=layer,
                strength=strength,
                with_none=False,
            )
        return records
    if test == "thought_vs_text":
        # 5/20 named vs 10% chance: binomial p = 0.043.
        records = tvt((5, 20), (20, 20))
        for layer, strength in OTHER_CELLS:
            records += tvt((0, 20), (20, 20), layer=layer, strength=strength)
        return records
    # alternative_prompt: 2/5 vs uninjected 1/45, as for Exp 1.
    records = alternative((2, 5), (1, 45))
    for layer, strength in OTHER_CELLS:
        records += alternative((0, 5), (0, 0), layer=layer, strength=strength, with_none=False)
    return records


HOLM_TESTS = ("injected_thought", "prefill", "thought_vs_text", "alternative_prompt")


@pytest.mark.parametrize("test", HOLM_TESTS)
def test_borderline_cell_passes_alone(test: str, thresholds: dict[str, Any]) -> None:
    records = [
        r for r in _holm_case(test) if r.layer in (None, LAYER) and r.strength in (None, 1.0)
    ]
    result = verdict(test, records, thresholds)
    assert result.passed, result.message
    assert result.multiple_comparison == "single cell"


@pytest.mark.parametrize("test", HOLM_TESTS)
def test_borderline_cell_fails_after_holm_over_the_sweep(
    test: str, thresholds: dict[str, Any]
) -> None:
    result = verdict(test, _holm_case(test), thresholds, session=StandInSession(SWEEP_4))
    assert result.multiple_comparison == "holm over 4 cells"
    assert not result.passed, result.message


@pytest.mark.parametrize("test", HOLM_TESTS)
def test_strong_cell_still_passes_after_holm(test: str, thresholds: dict[str, Any]) -> None:
    strong = {
        "injected_thought": lambda: exp1((9, 10), (0, 20), (0, 10)),
        "prefill": lambda: prefill(
            {"none": (20, 20), "matching": (2, 20), "random_word": (20, 20), "last_turn": (20, 20)}
        ),
        "thought_vs_text": lambda: tvt((9, 10), (10, 10)),
        "alternative_prompt": lambda: alternative((15, 20), (0, 20)),
    }[test]()
    nulls = [
        r for r in _holm_case(test) if r.layer not in (None, LAYER) or r.strength not in (None, 1.0)
    ]
    result = verdict(test, strong + nulls, thresholds, session=StandInSession(SWEEP_4))
    assert result.passed, result.message
