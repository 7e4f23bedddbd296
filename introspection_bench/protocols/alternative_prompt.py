"""Alternative prompts: "What are you thinking about right now?" under injection at every position.

Success (the paper): coherent AND describes itself as thinking about the word. The control is
the same prompt without injection, graded against the same word. Test: `alternative_prompt`
per cell, both prompts pooled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from introspection_bench.protocols._common import (
    decide,
    holm_for_cell,
    rate_of,
    sample_words,
    select,
)
from introspection_bench.protocols.base import Cell, MetricResult, Trial, Verdict
from introspection_bench.protocols.declare import (
    Check,
    Condition,
    Experiment,
    Grading,
    Inject,
    Sample,
    Window,
)
from introspection_bench.records import TrialRecord
from introspection_bench.stats import fisher_less

if TYPE_CHECKING:
    from introspection_bench.session import BenchSession

NAME = "alternative_prompt"
VERSION = "1"
MAX_NEW_TOKENS = 50
TEMPERATURE = 1.0


def _samples(session: BenchSession, protocol: str) -> list[Sample]:
    """Every (prompt, concept) pair; `p` numbers the prompt, `i` the concept."""
    n, seed = session.config.trials, session.config.seed
    concepts = sample_words(session.stimuli.words("concept_words"), n, seed, protocol)
    questions = session.stimuli.template("alternative_prompts")["prompts"]
    return [
        Sample(
            index=i,
            fields={"p": p, "question": question, "concept": concept},
            concept=concept,
            extra={"question": question},
        )
        for p, question in enumerate(questions)
        for i, concept in enumerate(concepts)
    ]


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


PROTOCOL = Experiment(
    name=NAME,
    turns=[("user", "{question}")],
    samples=_samples,
    conditions=[
        Condition(name="none"),
        # "every position": from token 1 (never the attention sink) through generation.
        Condition(name="injected", inject=Inject(window=Window(start=1))),
    ],
    grading=Grading(kind=NAME, word="concept", question="question"),
    checks=[Check(name="alternative_prompt", rule=evaluate)],
    max_new_tokens=MAX_NEW_TOKENS,
    temperature=TEMPERATURE,
    control_id="{protocol}/{condition}/p{p}/{concept}/{i}",
    trial_id="{protocol}/{condition}/p{p}/L{layer}/s{strength:g}/{concept}/{i}",
)
TESTS = PROTOCOL.TESTS


def build_trials(session: BenchSession) -> list[Trial]:
    """Per prompt and concept: one uninjected trial, and one injected trial per cell."""
    return PROTOCOL.build_trials(session)
