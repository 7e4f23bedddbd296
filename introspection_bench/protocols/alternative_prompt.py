"""Alternative prompts: "What are you thinking about right now?" under injection at every position.

Success (the paper): coherent AND describes itself as thinking about the word. The control is
the same prompt without injection, graded against the same word. Test: `alternative_prompt`
per cell, both prompts pooled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from introspection_bench.chat import render_chat
from introspection_bench.generation import seed_from_id
from introspection_bench.judges.base import GradeRequest
from introspection_bench.protocols._common import (
    decide,
    holm_for_cell,
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

NAME = "alternative_prompt"
VERSION = "1"
TESTS = ("alternative_prompt",)
MAX_NEW_TOKENS = 50
TEMPERATURE = 1.0


def build_trials(session: BenchSession) -> list[Trial]:
    """Per prompt and concept: one uninjected trial, and one injected trial per cell."""
    n, seed = session.config.trials, session.config.seed
    concepts = sample_words(session.stimuli.words("concept_words"), n, seed, NAME)
    trials = []
    for p, question in enumerate(session.stimuli.template("alternative_prompts")["prompts"]):
        prompt = render_chat(session.lm.tokenizer, [("user", question)])
        for i, concept in enumerate(concepts):
            grade = GradeRequest(NAME, "", word=concept, question=question)
            trial_id = f"{NAME}/none/p{p}/{concept}/{i}"
            trials.append(
                Trial(
                    trial_id=trial_id,
                    protocol=NAME,
                    condition="none",
                    concept=concept,
                    layer=None,
                    strength=None,
                    prompt=prompt,
                    injection=None,
                    injected_norm=None,
                    norm_ratio=None,
                    max_new_tokens=MAX_NEW_TOKENS,
                    temperature=TEMPERATURE,
                    seed=seed_from_id(trial_id, seed),
                    grade=grade,
                    extra={"question": question},
                )
            )
            for cell in sweep_cells(session, NAME):
                layer = session.layer_index(cell.layer)
                vectors = session.vectors(layer)
                # "every position": from token 1 (never the attention sink) through generation.
                spec, norm, ratio = session.injection(
                    layer, vectors[concept], cell.strength, 1, None, vectors
                )
                trial_id = f"{NAME}/injected/p{p}/L{layer}/s{cell.strength:g}/{concept}/{i}"
                trials.append(
                    Trial(
                        trial_id=trial_id,
                        protocol=NAME,
                        condition="injected",
                        concept=concept,
                        layer=layer,
                        strength=cell.strength,
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
                )
    return trials


def evaluate(
    session: BenchSession,
    records: Sequence[TrialRecord],
    test: str,
    cell: Cell,
    thresholds: Mapping[str, Any],
) -> Verdict:
    """Pass when the success lower bound exceeds the uninjected upper bound."""
    alpha = float(thresholds["alpha"])
    layer = session.layer_index(cell.layer)
    base = rate_of(select(records, "none"), "success")
    injected = rate_of(select(records, "injected", layer, cell.strength), "success")
    p = fisher_less(base.k, base.n, injected.k, injected.n)

    def p_of_cell(other_layer: int, strength: float) -> float:
        other = rate_of(select(records, "injected", other_layer, strength), "success")
        return fisher_less(base.k, base.n, other.k, other.n)

    p_holm, note = holm_for_cell(session, NAME, cell, p_of_cell)
    metrics = [
        MetricResult.from_rate(
            f"{NAME}.success", "injected", layer, cell.strength, injected, p_value=p, p_holm=p_holm
        ),
        MetricResult.from_rate(f"{NAME}.success", "none", None, None, base),
    ]
    passed = injected.low > base.high and p_holm < alpha
    rule = (
        f"success lower bound > uninjected upper bound and Holm Fisher p={p_holm:.3g} < {alpha:g}"
    )
    return decide(test, cell, passed, metrics, rule, note)
