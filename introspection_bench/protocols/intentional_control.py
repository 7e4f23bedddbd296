"""Exp 4, intentional control: whether a concept is represented more when told to think about it.

Teacher-forced: the user asks to write {sentence} while (not) thinking about {word}, and the
assistant turn is the sentence. At every layer, the mean cosine between the residual stream at
the sentence's tokens and the word's concept vector is measured; the baseline is the mean
cosine with the 100 control words' vectors. Metrics per layer: think - dont_think and
dont_think - baseline, with bootstrap intervals over word/sentence pairs. The six incentive
variants are measured too. Test: `intentional_control` per layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from introspection_bench.chat import RenderedPrompt
from introspection_bench.concepts import extract_concept_vectors
from introspection_bench.errors import StimuliError
from introspection_bench.hooks import positions_from_mask, record
from introspection_bench.protocols._common import decide, sample_words
from introspection_bench.protocols.base import Cell, MetricResult, Trial, Verdict
from introspection_bench.protocols.declare import Check, Condition, Experiment, Sample, Span
from introspection_bench.records import TrialRecord
from introspection_bench.stats import bootstrap_mean

if TYPE_CHECKING:
    from introspection_bench.session import BenchSession

NAME = "intentional_control"
VERSION = "1"


#: The instructions of the paper's template, in its order (think, dont_think, six incentives).
INSTRUCTIONS = (
    "think",
    "dont_think",
    "rewarded",
    "punished",
    "happy",
    "sad",
    "charity",
    "terrorist",
)


def _samples(session: BenchSession, protocol: str) -> list[Sample]:
    """A (word, sentence) pair per sample, with each instruction filled in for its word.

    Raises:
        StimuliError: When the stimuli's instructions are not `INSTRUCTIONS`.

    """
    stimuli, n, seed = session.stimuli, session.config.trials, session.config.seed
    instructions = stimuli.template(protocol)["instructions"]
    if tuple(instructions) != INSTRUCTIONS:
        raise StimuliError(
            f"{protocol} instructions are {', '.join(instructions)}; expected "
            f"{', '.join(INSTRUCTIONS)} (update INSTRUCTIONS with the stimuli)"
        )
    words = sample_words(stimuli.data["concept_words"], n, seed, protocol)
    sentences = sample_words(stimuli.data["sentences"], n, seed, f"{protocol}/sentences")
    samples = []
    for i, (word, sentence) in enumerate(zip(words, sentences, strict=True)):
        fields = {"sentence": sentence, "concept": word.lower()} | {
            f"instruction_{name}": text.format(word=word.lower())
            for name, text in instructions.items()
        }
        extra = {"sentence": sentence, "pair": i}
        samples.append(Sample(index=i, fields=fields, concept=word.lower(), extra=extra))
    return samples


def run(session: BenchSession) -> list[TrialRecord]:
    """Measure every trial not yet recorded (forward passes only) and return all records."""
    trials = session.assigned(build_trials(session))
    pending = [t for t in trials if t.trial_id not in session.store]
    if pending:
        layers = list(range(session.lm.n_layers))
        concept = _vectors(session, "concept_words", layers)
        control = _vectors(session, "control_words", layers)
        batch = 16
        for start in range(0, len(pending), batch):
            chunk = pending[start : start + batch]
            for trial, cosines in zip(
                chunk, _cosines(session, chunk, concept, control, layers), strict=True
            ):
                session.measured_record(trial, cosines)
    return [r for r in (session.store.get(t.trial_id) for t in trials) if r is not None]


def _vectors(
    session: BenchSession, word_list: str, layers: list[int]
) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Unit concept vectors [L, N, D] of a word list at every layer, and the words."""
    found = extract_concept_vectors(
        session.lm,
        session.stimuli.words(word_list),
        session.stimuli.words("baseline_words"),
        layers,
        method=session.config.vector_method,
    )
    words = found[layers[0]].words
    stacked = torch.stack([found[layer].vectors for layer in layers])  # [L, N, D]
    return torch.nn.functional.normalize(stacked, dim=-1), words


def _cosines(
    session: BenchSession, chunk: Sequence[Trial], concept: Any, control: Any, layers: list[int]
) -> list[dict[str, Any]]:
    lm = session.lm
    concept_units, concept_words = concept
    control_units, _ = control
    prompts: list[RenderedPrompt] = [t.prompt for t in chunk]
    width = max(len(p.input_ids) for p in prompts)
    pads = [width - len(p.input_ids) for p in prompts]
    ids = torch.tensor(
        [
            [lm.tokenizer.pad_token_id] * pad + list(p.input_ids)
            for pad, p in zip(pads, prompts, strict=True)
        ],
        device=lm.device,
    )
    mask = (
        torch.arange(width, device=lm.device)[None] >= torch.tensor(pads, device=lm.device)[:, None]
    ).long()
    with torch.inference_mode(), record(lm, layers) as recorded:
        lm.model(
            input_ids=ids, attention_mask=mask, position_ids=positions_from_mask(mask).clamp(min=0)
        )
    results = []
    for row, (trial, pad) in enumerate(zip(chunk, pads, strict=True)):
        start, end = trial.prompt.spans["sentence"]
        states = torch.stack(
            [recorded[layer][row, pad + start : pad + end].float() for layer in layers]
        )  # [L, T, D]
        units = torch.nn.functional.normalize(states, dim=-1).cpu()
        word_index = concept_words.index(trial.concept)
        to_word = torch.einsum("ltd,ld->l", units, concept_units[:, word_index]) / units.shape[1]
        to_control = torch.einsum("ltd,lnd->l", units, control_units) / (
            units.shape[1] * control_units.shape[1]
        )
        results.append(
            {
                "cosine_word": to_word.tolist(),
                "cosine_baseline": to_control.tolist(),
                "layers": layers,
            }
        )
    return results


def evaluate(
    session: BenchSession,
    records: Sequence[TrialRecord],
    test: str,
    cell: Cell,
    thresholds: Mapping[str, Any],
) -> Verdict:
    """Pass when think > dont_think and dont_think > baseline at the layer.

    Both differences need bootstrap intervals excluding 0.
    """
    layer = session.layer_index(cell.layer)
    resamples = int(thresholds[NAME]["bootstrap_resamples"])
    by_pair: dict[int, dict[str, TrialRecord]] = {}
    for r in records:
        by_pair.setdefault(int(r.extra["pair"]), {})[r.condition] = r
    # In pair order, not file order: the bootstrap resamples by position, so a merged (sorted)
    # trials.jsonl must give the same interval as the live run.
    pairs = [by_pair[i] for i in sorted(by_pair) if {"think", "dont_think"} <= set(by_pair[i])]
    think = [p["think"].extra["cosine_word"][layer] for p in pairs]
    dont = [p["dont_think"].extra["cosine_word"][layer] for p in pairs]
    baseline = [p["dont_think"].extra["cosine_baseline"][layer] for p in pairs]
    clusters = [p["think"].concept for p in pairs]
    seed = session.config.seed
    gap = bootstrap_mean(
        [a - b for a, b in zip(think, dont, strict=True)],
        clusters,
        n_resamples=resamples,
        seed=seed,
    )
    above = bootstrap_mean(
        [b - c for b, c in zip(dont, baseline, strict=True)],
        clusters,
        n_resamples=resamples,
        seed=seed,
    )
    metrics = [
        MetricResult(
            name=f"{NAME}.think_minus_dont",
            condition="think-dont_think",
            layer=layer,
            strength=None,
            estimate=gap.estimate,
            low=gap.low,
            high=gap.high,
            k=None,
            n=len(pairs),
            method=gap.method,
        ),
        MetricResult(
            name=f"{NAME}.dont_minus_baseline",
            condition="dont_think-baseline",
            layer=layer,
            strength=None,
            estimate=above.estimate,
            low=above.low,
            high=above.high,
            k=None,
            n=len(pairs),
            method=above.method,
        ),
    ]
    passed = gap.low > 0 and above.low > 0
    rule = (
        "think - dont_think > 0 and dont_think - baseline > 0 "
        "(95% bootstrap intervals over pairs exclude 0)"
    )
    return decide(test, cell, passed, metrics, rule)


PROTOCOL = Experiment(
    name=NAME,
    turns=NAME,
    spans=[Span(name="sentence", turn=1)],
    samples=_samples,
    conditions=[
        Condition(name=name, fields={"instruction": f"{{instruction_{name}}}"})
        for name in INSTRUCTIONS
    ],
    checks=[Check(name="intentional_control", rule=evaluate, per="layer")],
    max_new_tokens=0,
    temperature=0.0,
    control_id="{protocol}/{condition}/{concept}/{i}",
    add_generation_prompt=False,
    run=run,
)
TESTS = PROTOCOL.TESTS


def build_trials(session: BenchSession) -> list[Trial]:
    """One teacher-forced trial per (word, sentence) pair and instruction."""
    return PROTOCOL.build_trials(session)
