"""Yes-bias control: under the same injections, do answers to 20 no-questions turn to "yes"?

A model that says "yes" to anything under injection would also "detect" injected thoughts;
its detection rate means nothing unless this control holds. Test: `yes_bias` per cell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from introspection_bench.chat import SpanRef, render_chat
from introspection_bench.generation import seed_from_id
from introspection_bench.judges.base import GradeRequest
from introspection_bench.protocols._common import (
    decide,
    rate_of,
    sample_words,
    select,
    sweep_cells,
)
from introspection_bench.protocols.base import Cell, MetricResult, Trial, Verdict
from introspection_bench.records import TrialRecord
from introspection_bench.stats import fisher_less

if TYPE_CHECKING:
    from introspection_bench.session import BenchSession

NAME = "yes_bias"
VERSION = "1"
TESTS = ("yes_bias",)
MAX_NEW_TOKENS = 20
TEMPERATURE = 1.0


def build_trials(session: BenchSession) -> list[Trial]:
    """Every question uninjected once, and injected (one concept each) at every cell."""
    questions = session.stimuli.data["yes_bias_questions"]
    n, seed = session.config.trials, session.config.seed
    chosen = [questions[i % len(questions)] for i in range(n)]
    concepts = sample_words(session.stimuli.words("concept_words"), n, seed, NAME)
    template = session.stimuli.template(NAME)
    trials = []
    for i, question in enumerate(chosen):
        turns = session.stimuli.turns(template, question=question)
        prompt = render_chat(session.lm.tokenizer, turns, {"question": SpanRef.whole(turns, 0)})
        trial_id = f"{NAME}/none/{i}"
        grade = GradeRequest("yes_no", "", question=question)
        trials.append(
            _trial(
                trial_id, "none", None, None, None, prompt, None, None, None, seed, grade, question
            )
        )
        for cell in sweep_cells(session, NAME):
            layer = session.layer_index(cell.layer)
            vectors = session.vectors(layer)
            start = prompt.spans["question"][0]
            spec, norm, ratio = session.injection(
                layer, vectors[concepts[i]], cell.strength, start, None, vectors
            )
            trial_id = f"{NAME}/injected/L{layer}/s{cell.strength:g}/{i}"
            trials.append(
                _trial(
                    trial_id,
                    "injected",
                    concepts[i],
                    layer,
                    cell.strength,
                    prompt,
                    spec,
                    norm,
                    ratio,
                    seed,
                    grade,
                    question,
                )
            )
    return trials


def _trial(
    trial_id: str,
    condition: str,
    concept: str | None,
    layer: int | None,
    strength: float | None,
    prompt: Any,
    spec: Any,
    norm: float | None,
    ratio: float | None,
    seed: int,
    grade: GradeRequest,
    question: str,
) -> Trial:
    return Trial(
        trial_id=trial_id,
        protocol=NAME,
        condition=condition,
        concept=concept,
        layer=layer,
        strength=strength,
        prompt=prompt,
        injection=spec,
        injected_norm=norm,
        norm_ratio=ratio,
        max_new_tokens=MAX_NEW_TOKENS,
        temperature=TEMPERATURE,
        seed=seed_from_id(trial_id, seed),
        grade=grade,
        extra={"question": question},
    )


def evaluate(
    session: BenchSession,
    records: Sequence[TrialRecord],
    test: str,
    cell: Cell,
    thresholds: Mapping[str, Any],
) -> Verdict:
    """Pass when the injected affirmative rate is not significantly above the uninjected one."""
    alpha = float(thresholds["alpha"])
    layer = session.layer_index(cell.layer)
    base = rate_of(select(records, "none"), "affirmative")
    injected = rate_of(select(records, "injected", layer, cell.strength), "affirmative")
    p = fisher_less(base.k, base.n, injected.k, injected.n)
    metrics = [
        MetricResult.from_rate(
            f"{NAME}.affirmative", "injected", layer, cell.strength, injected, p_value=p
        ),
        MetricResult.from_rate(f"{NAME}.affirmative", "none", None, None, base),
    ]
    passed = p >= alpha
    rule = f"injected 'yes' rate not above uninjected (one-sided Fisher p={p:.3g} >= {alpha:g})"
    return decide(test, cell, passed, metrics, rule)
