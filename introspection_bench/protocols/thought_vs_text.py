"""Exp 2, thoughts vs text: name the injected word while still transcribing the sentence.

The concept's vector goes on the tokens of {sentence} only. `think` asks which word the line
brings to mind (graded as a 10-way choice among the injected word and 9 other concept words,
chance 10%); `repeat` asks to repeat the line (correct when the lowercased sentence is a
substring of the lowercased reply). Test: `thought_vs_text` per cell.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from introspection_bench.protocols._common import (
    decide,
    holm_for_cell,
    sample_words,
    select,
)
from introspection_bench.protocols.base import Cell, MetricResult, Trial, Verdict
from introspection_bench.protocols.declare import (
    NO_GRADING,
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
from introspection_bench.stats import binomial_above, clustered_rate

if TYPE_CHECKING:
    from introspection_bench.session import BenchSession

NAME = "thought_vs_text"
VERSION = "1"
N_OPTIONS = 10


def _samples(session: BenchSession, protocol: str) -> list[Sample]:
    """A (sentence, concept) pair per sample, with the 10 options of its forced choice."""
    stimuli, n, seed = session.stimuli, session.config.trials, session.config.seed
    sentences = sample_words(stimuli.data["sentences"], n, seed, f"{protocol}/sentences")
    concepts = sample_words(stimuli.words("concept_words"), n, seed, protocol)
    samples = []
    for i, (sentence, concept) in enumerate(zip(sentences, concepts, strict=True)):
        options = _options(concept, stimuli.words("concept_words"), seed, i)
        fields = {"sentence": sentence, "concept": concept, "options": options}
        extra = {"sentence": sentence, "options": list(options)}
        samples.append(Sample(index=i, fields=fields, concept=concept, extra=extra))
    return samples


def _options(concept: str, words: Sequence[str], seed: int, index: int) -> tuple[str, ...]:
    others = [w for w in words if w != concept]
    rng = random.Random(f"{seed}:{NAME}:options:{index}")
    options = [concept, *rng.sample(others, N_OPTIONS - 1)]
    rng.shuffle(options)
    return tuple(options)


def transcribed(record: TrialRecord) -> bool:
    """The paper's transcription criterion: lowercased sentence inside the lowercased reply."""
    return str(record.extra["sentence"]).lower() in record.completion.lower()


def evaluate(
    session: BenchSession,
    records: Sequence[TrialRecord],
    test: str,
    cell: Cell,
    thresholds: Mapping[str, Any],
) -> Verdict:
    """Pass when naming beats chance significantly and transcription stays above its floor."""
    alpha = float(thresholds["alpha"])
    chance = float(thresholds[NAME]["chance"])
    floor = float(thresholds[NAME]["min_transcription"])
    layer = session.layer_index(cell.layer)
    think = select(records, "think", layer, cell.strength)
    repeat = select(records, "repeat", layer, cell.strength)
    named = clustered_rate(
        [r.grades.get("choice") == r.concept for r in think], [r.concept for r in think]
    )
    copied = clustered_rate([transcribed(r) for r in repeat], [r.concept for r in repeat])
    by_pair = {r.trial_id.split("/", 2)[2]: transcribed(r) for r in repeat}
    both = clustered_rate(
        [
            r.grades.get("choice") == r.concept and by_pair.get(r.trial_id.split("/", 2)[2], False)
            for r in think
        ],
        [r.concept for r in think],
    )
    p = _naming_p(named.k, named.n, chance)

    def p_of_cell(other_layer: int, strength: float) -> float:
        other_think = select(records, "think", other_layer, strength)
        hits = sum(r.grades.get("choice") == r.concept for r in other_think)
        return _naming_p(hits, len(other_think), chance)

    p_holm, note = holm_for_cell(session, NAME, cell, p_of_cell)
    metrics = [
        MetricResult.from_rate(
            f"{NAME}.naming",
            "think",
            layer,
            cell.strength,
            named,
            p_value=p,
            p_holm=p_holm,
            chance=chance,
        ),
        MetricResult.from_rate(f"{NAME}.transcription", "repeat", layer, cell.strength, copied),
        MetricResult.from_rate(f"{NAME}.both", "think+repeat", layer, cell.strength, both),
    ]
    passed = p_holm < alpha and copied.estimate >= floor
    rule = (
        f"naming above {chance:.0%} chance (binomial Holm p={p_holm:.3g} < {alpha:g}) "
        f"and transcription >= {floor:.0%}"
    )
    return decide(test, cell, passed, metrics, rule, note)


def _naming_p(k: int, n: int, chance: float) -> float:
    """One-sided binomial p that naming beats chance (1.0 without trials)."""
    return binomial_above(k, n, chance) if n else 1.0


PROTOCOL = Experiment(
    name=NAME,
    turns=f"{NAME}_think",
    spans=[Span(name="sentence", turn=0, text="{sentence}")],
    samples=_samples,
    conditions=[
        Condition(
            name="think",
            turns=f"{NAME}_think",
            inject=Inject(window=Window.span("sentence")),
        ),
        Condition(
            name="repeat",
            turns=f"{NAME}_repeat",
            inject=Inject(window=Window.span("sentence")),
            grading=NO_GRADING,  # scored by transcription, not judged
        ),
    ],
    grading=Grading(kind=NAME, word="concept", options="options"),
    checks=[Check(name="thought_vs_text", rule=evaluate)],
    trial_id="{protocol}/{condition}/L{layer}/s{strength:g}/{concept}/{i}",
    order="cell",
)
TESTS = PROTOCOL.TESTS


def build_trials(session: BenchSession) -> list[Trial]:
    """A think and a repeat trial per (sentence, concept) pair and cell."""
    return PROTOCOL.build_trials(session)
