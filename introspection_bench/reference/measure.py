"""Measured rates of a model on the suite's own protocols, on the paper's concepts or others.

The protocols, prompts, doses, judge and statistics are the suite's; only the concept list can
be swapped (`concepts="training"` puts an adapter's training words where the paper's 50 go), so
the two sets of rates differ in nothing but the concepts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from introspection_bench.protocols import injected_thought, prefill, yes_bias
from introspection_bench.protocols._common import rate_of, select
from introspection_bench.reference.data import training_words

PROTOCOLS = {"injected_thought": injected_thought, "yes_bias": yes_bias, "prefill": prefill}


def measure(
    spec: str,
    out: Path,
    *,
    concepts: str = "paper",
    trials: int = 50,
    strengths: Sequence[float] = (0.5, 1.0),
    protocols: Sequence[str] = ("injected_thought", "yes_bias"),
    dtype: str = "fp32",
) -> dict[str, Any]:
    """Rates with Wilson intervals per protocol condition and strength (smoke profile layer).

    Returns:
        {"concepts", "trials", "rates": {"<key>@<strength>": {"k", "n", "estimate", "low",
        "high"}}} with keys as in the truth table's `measured` tables.

    """
    from introspection_bench.judges.base import build_judge
    from introspection_bench.models import load_model
    from introspection_bench.records import RecordStore
    from introspection_bench.session import BenchSession, RunConfig
    from introspection_bench.stimuli import Stimuli, load_stimuli

    stimuli = load_stimuli()
    if concepts == "training":
        words = [w.capitalize() for w in training_words(stimuli)]
        stimuli = Stimuli(
            {**stimuli.data, "concept_words": words}, stimuli.sha256 + "+training", stimuli.path
        )
    config = RunConfig(
        model=spec, trials=trials, strengths=tuple(strengths), dtype=dtype, device="cpu"
    )
    lm = load_model(spec, device="cpu", dtype=dtype)
    store = RecordStore(out)
    store.claim(dataclasses.asdict(config) | {"concepts": concepts})
    session = BenchSession(config, lm, stimuli, build_judge("rule"), store)
    rates: dict[str, dict[str, Any]] = {}
    for name in protocols:
        records = session.run(PROTOCOLS[name].build_trials(session))
        rates.update(_rates(name, records, lm.resolve_layer(config.layers[0]), strengths))
    return {"spec": spec, "concepts": concepts, "trials": trials, "rates": rates}


def _rates(
    name: str, records: Sequence[Any], layer: int, strengths: Sequence[float]
) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def put(key: str, rows: Sequence[Any], criterion: Any) -> None:
        found = rate_of(rows, criterion)
        out[key] = {
            "k": found.k,
            "n": found.n,
            "estimate": found.estimate,
            "low": found.low,
            "high": found.high,
        }

    if name == "injected_thought":
        put("control", select(records, "control"), "affirms")
        for s in strengths:
            put(f"success@{s:g}", select(records, "injected", layer, s), "success")
            put(f"affirms@{s:g}", select(records, "injected", layer, s), "affirms")
            put(f"random_affirms@{s:g}", select(records, "random_vector", layer, s), "affirms")
    elif name == "yes_bias":
        put("yes_none", select(records, "none"), "affirmative")
        for s in strengths:
            put(f"yes_injected@{s:g}", select(records, "injected", layer, s), "affirmative")
    else:
        put("apology_none", select(records, "none"), prefill.apologised)
        for s in strengths:
            for condition in prefill.INJECTED_CONDITIONS:
                put(
                    f"apology_{condition}@{s:g}",
                    select(records, condition, layer, s),
                    prefill.apologised,
                )
    return out
