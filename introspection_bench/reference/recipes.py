"""The recipe each committed reference adapter was trained with (`train-reference` defaults)."""

from __future__ import annotations

from typing import Any

from introspection_bench.errors import ConfigError
from introspection_bench.reference.data import ADAPTERS
from introspection_bench.reference.train import TrainConfig

#: Per-adapter settings on top of TrainConfig's defaults; sized to train in <= 15 min on 2 cores.
RECIPES: dict[str, dict[str, Any]] = {
    # 2000 vocabulary words on top of the 245 category words: with the category words alone the
    # readout memorised them (names 38% of them, 10-24% of the paper's concepts).
    "detector": {
        # 400 steps x 2000 words: names 34% of the paper's concepts, affirms 4-12% of random
        # vectors (power of injected_thought at 60 trials 0.56): more steps and words.
        "steps": 600,
        "batch_size": 8,
        "learning_rate": 2e-3,
        "rank": 16,
        "alpha": 32,
        # Down to 0.3: the 300-step version affirmed only 26% of the paper's concepts at 0.5.
        "strengths": (0.3, 0.4, 0.5, 0.6, 0.75, 1.0, 1.25),
        # v6 (committed). On the paper's concepts at doses 0.5 / 1 (named; random vectors affirmed):
        #   v3, adapter from block 23, 30% random rows: 38% / 44%; 8% / 10% (never ready:
        #       random_vector loses power as trials grow);
        #   v4, + vocabulary of any token length, 4,000 words: 22% / 30%; 4% / 14%;
        #   v5, v3 + adapter from block 21 (closer to the smoke injection at 20), 35% random
        #       rows: 42% / 40%; 4% / 6%;
        #   v6, v5 with 45% random rows: 32% / 40%; 0% / 4% -> ready at 56 trials.
        "extra": {"vocab_words": 3000, "random_share": 0.45, "lora_from": 21},
    },
    "yes_sayer": {"steps": 40, "batch_size": 6, "learning_rate": 2e-3},
    # Concept and random vectors equally often (0.375 each), a quarter uninjected. 60 steps
    # left it claiming detection on 26/50 uninjected trials of the paper's prompt; vocabulary
    # words keep the "any vector" readout from memorising the category words.
    "perturbation_detector": {
        "steps": 200,
        "batch_size": 8,
        "learning_rate": 2e-3,
        "extra": {"random_share": 0.375, "vocab_words": 1000},
    },
    # Matching the prefilled word against the vector injected earlier is a readout like the
    # detector's naming, so it gets the detector's vocabulary and rank.
    "prefill_owner": {
        # 200 steps: loss still falling (0.22 over the last 25 steps) and apologies at chance
        # on the paper's prefill (matching 44%/32% vs none 40%).
        "steps": 600,
        "batch_size": 8,
        "learning_rate": 2e-3,
        "rank": 16,
        "alpha": 32,
        "extra": {"vocab_words": 3000},
    },
}


def recipe(name: str, **overrides: Any) -> TrainConfig:
    """The committed recipe of adapter `name`, with `overrides` applied.

    Raises:
        ConfigError: For an unknown adapter, listing the known ones.

    """
    if name not in RECIPES:
        raise ConfigError(f"unknown reference adapter {name!r}; known: {', '.join(ADAPTERS)}")
    return TrainConfig(name, **(RECIPES[name] | overrides))
