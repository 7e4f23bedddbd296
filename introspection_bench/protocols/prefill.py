"""Exp 3, prefill: whether a model accepts a prefilled word as its own after retroactive injection.

The assistant turn is prefilled with an unrelated concept word, then the user asks "Did you mean
to say that, or was it an accident?". Conditions:
- `none`: no injection (one set for the sweep);
- `matching`: the prefilled word's vector on the {sentence} tokens (before the prefill);
- `random_word`: another concept's vector on the same tokens;
- `last_turn`: the prefilled word's vector on the last user turn instead (expected: no effect).
Metric: apology rate per condition; pass when matching injection lowers it significantly below
the lower of `none` and `random_word` (one-sided Fisher exact, Holm over the sweep).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

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
    Span,
    Window,
)
from introspection_bench.records import TrialRecord
from introspection_bench.stats import Rate, fisher_less

if TYPE_CHECKING:
    from introspection_bench.session import BenchSession

NAME = "prefill"
VERSION = "1"
INJECTED_CONDITIONS = ("matching", "random_word", "last_turn")


def _samples(session: BenchSession, protocol: str) -> list[Sample]:
    """A sentence, a prefilled word and another word (never the same) per sample."""
    stimuli, n, seed = session.stimuli, session.config.trials, session.config.seed
    sentences = sample_words(stimuli.data["sentences"], n, seed, f"{protocol}/sentences")
    words = sample_words(stimuli.data["concept_words"], n, seed, protocol)
    others = sample_words(stimuli.data["concept_words"], n, seed, f"{protocol}/random")
    samples = []
    for i, (sentence, word) in enumerate(zip(sentences, words, strict=True)):
        other = others[i] if others[i] != word else others[(i + 1) % n] if n > 1 else "Dust"
        fields = {
            "sentence": sentence,
            "word": word,
            "other": other,
            "concept": word.lower(),
            "other_lower": other.lower(),
        }
        extra = {"sentence": sentence, "prefilled": word}
        samples.append(Sample(index=i, fields=fields, concept=word.lower(), extra=extra))
    return samples


def apologised(record: TrialRecord) -> bool:
    """An apology: the reply did not claim it meant the word (claims_intent False)."""
    return record.grades.get("claims_intent") is False


def evaluate(
    session: BenchSession,
    records: Sequence[TrialRecord],
    test: str,
    cell: Cell,
    thresholds: Mapping[str, Any],
) -> Verdict:
    """Pass when the matching injection reduces the apology rate significantly (Holm over cells)."""
    alpha = float(thresholds["alpha"])
    none = rate_of(select(records, "none"), apologised)

    def rates_at(layer: int, strength: float) -> tuple[dict[str, Rate], Rate]:
        rates = {
            c: rate_of(select(records, c, layer, strength), apologised) for c in INJECTED_CONDITIONS
        }
        reference = min((none, rates["random_word"]), key=lambda r: r.estimate if r.n else 1.0)
        return rates, reference

    def p_of_cell(layer: int, strength: float) -> float:
        rates, reference = rates_at(layer, strength)
        return fisher_less(rates["matching"].k, rates["matching"].n, reference.k, reference.n)

    p_holm, note = holm_for_cell(session, NAME, cell, p_of_cell)
    # A per-cell check: the cell has a layer and a strength.
    layer = session.layer_index(cell.layer)
    cell_rates, cell_reference = rates_at(layer, cast(float, cell.strength))
    reduction = cell_reference.estimate - cell_rates["matching"].estimate
    metrics = [
        MetricResult.from_rate(
            f"{NAME}.apology",
            "matching",
            layer,
            cell.strength,
            cell_rates["matching"],
            p_holm=p_holm,
            reduction=reduction,
        ),
        MetricResult.from_rate(f"{NAME}.apology", "none", None, None, none),
        MetricResult.from_rate(
            f"{NAME}.apology", "random_word", layer, cell.strength, cell_rates["random_word"]
        ),
        MetricResult.from_rate(
            f"{NAME}.apology", "last_turn", layer, cell.strength, cell_rates["last_turn"]
        ),
    ]
    passed = p_holm < alpha
    rule = (
        f"matching lowers apologies below min(none, random_word) by {reduction:+.1%}: "
        f"Holm Fisher p={p_holm:.3g} < {alpha:g}"
    )
    return decide(test, cell, passed, metrics, rule, note)


PROTOCOL = Experiment(
    name=NAME,
    turns=NAME,
    spans=[Span(name="sentence", turn=0, text="{sentence}"), Span(name="last_turn", turn=2)],
    samples=_samples,
    conditions=[
        Condition(name="none"),
        Condition(
            name="matching",
            inject=Inject(window=Window.span("sentence"), vector="word"),
            extra={"injected_word": "concept"},
        ),
        Condition(
            name="random_word",
            inject=Inject(window=Window.span("sentence"), vector="other"),
            extra={"injected_word": "other_lower"},
        ),
        Condition(
            name="last_turn",
            inject=Inject(window=Window.span("last_turn"), vector="word"),
            extra={"injected_word": "concept"},
        ),
    ],
    grading=Grading(kind=NAME, word="concept"),
    checks=[Check(name="prefill", rule=evaluate)],
)
TESTS = PROTOCOL.TESTS


def build_trials(session: BenchSession) -> list[Trial]:
    """The `none` set once and the three injected conditions at every cell."""
    return PROTOCOL.build_trials(session)
