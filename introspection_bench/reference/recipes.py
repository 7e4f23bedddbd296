"""The recipe each committed reference adapter was trained with (`train-reference` defaults)."""

from __future__ import annotations

from typing import Any

from introspection_bench.errors import ConfigError
from introspection_bench.reference.data import ADAPTERS
from introspection_bench.reference.train import TrainConfig

#: Per-adapter settings on top of TrainConfig's defaults; sized to train in <= 15 min on 2 cores.
RECIPES: dict[str, dict[str, Any]] = {
    "detector": {"steps": 150, "batch_size": 8, "learning_rate": 2e-3},
    "yes_sayer": {"steps": 40, "batch_size": 6, "learning_rate": 2e-3},
    "perturbation_detector": {"steps": 40, "batch_size": 6, "learning_rate": 2e-3},
    "prefill_owner": {"steps": 40, "batch_size": 6, "learning_rate": 2e-3},
}


def recipe(name: str, **overrides: Any) -> TrainConfig:
    """The committed recipe of adapter `name`, with `overrides` applied.

    Raises:
        ConfigError: For an unknown adapter, listing the known ones.

    """
    if name not in RECIPES:
        raise ConfigError(f"unknown reference adapter {name!r}; known: {', '.join(ADAPTERS)}")
    return TrainConfig(name, **(RECIPES[name] | overrides))
