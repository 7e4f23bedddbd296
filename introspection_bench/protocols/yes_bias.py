"""Yes-bias control: whether, under the same injections, answers to 20 no-questions turn to "yes".

A model that says "yes" to anything under injection would also "detect" injected thoughts;
its detection rate means nothing unless this control holds. Test: `yes_bias` per cell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from introspection_bench.protocols._common import (
    decide,
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
    Span,
    Window,
)
from introspection_bench.records import TrialRecord
from introspection_bench.stats import fisher_less

if TYPE_CHECKING:
    from introspection_bench.session import BenchSession

NAME = "yes_bias"
VERSION = "1"
MAX_NEW_TOKENS = 20
TEMPERATURE = 1.0


def _samples(session: BenchSession, protocol: str) -> list[Sample]:
    """The first `--trials` questions (cycling), each with one concept to inject."""
    questions = session.stimuli.data["yes_bias_questions"]
    n, seed = session.config.trials, session.config.seed
    concepts = sample_words(session.stimuli.words("concept_words"), n, seed, protocol)
    return [
        Sample(
            index=i,
            fields={"question": questions[i % len(questions)], "concept": concepts[i]},
            concept=concepts[i],
            extra={"question": questions[i % len(questions)]},
        )
        for i in range(n)
    ]


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


PROTOCOL = Experiment(
    name=NAME,
    turns=NAME,
    spans=[Span(name="question", turn=0)],
    samples=_samples,
    conditions=[
        Condition(name="none", records_concept=False),
        Condition(name="injected", inject=Inject(window=Window(start="question"))),
    ],
    grading=Grading(kind="yes_no", question="question"),
    checks=[Check(name="yes_bias", rule=evaluate)],
    max_new_tokens=MAX_NEW_TOKENS,
    temperature=TEMPERATURE,
)
TESTS = PROTOCOL.TESTS


def build_trials(session: BenchSession) -> list[Trial]:
    """Every question uninjected once, and injected (one concept each) at every cell."""
    return PROTOCOL.build_trials(session)
