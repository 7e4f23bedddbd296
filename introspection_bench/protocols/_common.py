"""Helpers the protocol modules share: concept sampling, rates from records, pass lines."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from introspection_bench.errors import ConfigError
from introspection_bench.protocols.base import Cell, MetricResult, Verdict
from introspection_bench.records import TrialRecord
from introspection_bench.stats import Rate, clustered_rate, holm

if TYPE_CHECKING:
    from introspection_bench.session import BenchSession


def sample_words(words: Sequence[str], count: int, seed: int, salt: str) -> list[str]:
    """`count` words drawn without replacement (cycling when count > len).

    The draw is seeded by run seed + salt.
    """
    order = list(words)
    random.Random(f"{seed}:{salt}").shuffle(order)
    return [order[i % len(order)] for i in range(count)]


def sweep_cells(session: BenchSession, protocol: str) -> list[Cell]:
    """Every (layer, strength) cell of `protocol`'s sweep, layers as the user gave them."""
    strengths = strengths_for(session.config, protocol)
    return [Cell(layer, strength) for layer in session.config.layers for strength in strengths]


def strengths_for(config: Any, protocol: str) -> tuple[float, ...]:
    """The strengths of `protocol`: its own from the profile, or the run's.

    A profile may give a protocol its own strengths (the paper's Exp 2/3 go to 16).
    """
    return tuple(getattr(config, "protocol_strengths", {}).get(protocol, config.strengths))


def select(
    records: Sequence[TrialRecord],
    condition: str,
    layer: int | None = None,
    strength: float | None = None,
) -> list[TrialRecord]:
    """Records of one condition (and cell, where given) that were graded without error."""
    return [
        r
        for r in records
        if r.condition == condition
        and (layer is None or r.layer == layer)
        and (strength is None or r.strength == strength)
        and r.error is None
    ]


def rate_of(records: Sequence[TrialRecord], criterion: str | Callable[[TrialRecord], bool]) -> Rate:
    """Rate of a boolean criterion, Wilson interval widened for repeated concepts."""
    test = criterion if callable(criterion) else (lambda r: bool(r.grades.get(criterion)))
    outcomes = [test(r) for r in records]
    clusters = [r.concept or r.trial_id for r in records]
    return clustered_rate(outcomes, clusters)


def holm_for_cell(
    session: BenchSession, protocol: str, cell: Cell, p_of_cell: Callable[[int, float], float]
) -> tuple[float, str]:
    """Holm-adjusted p-value of `cell` over every cell of `protocol`'s sweep, and the note.

    The best cell of a sweep is never reported raw: each cell's p-value (from `p_of_cell(layer
    index, strength)`) is adjusted over all of them.

    Raises:
        ConfigError: When `cell` is not part of the sweep.

    """
    cells = sweep_cells(session, protocol)
    if cell not in cells:
        labels = ", ".join(c.label for c in cells)
        raise ConfigError(f"cell {cell.label} is not in the {protocol} sweep ({labels})")
    # `sweep_cells` gives every cell a layer and a strength.
    p_values = [p_of_cell(session.layer_index(c.layer), cast(float, c.strength)) for c in cells]
    adjusted = holm(p_values)
    note = f"holm over {len(cells)} cells" if len(cells) > 1 else "single cell"
    return adjusted[cells.index(cell)], note


def verdict_line(
    test: str, cell: Cell, passed: bool, metrics: Sequence[MetricResult], rule: str
) -> str:
    """The one readable line a verdict prints."""
    status = "PASS" if passed else "FAIL"
    numbers = "; ".join(m.describe() for m in metrics)
    return f"{status} {test}[{cell.label}]: {numbers} | rule: {rule}"


def decide(
    test: str,
    cell: Cell,
    passed: bool,
    metrics: Sequence[MetricResult],
    rule: str,
    multiple_comparison: str = "none",
) -> Verdict:
    """The verdict of `test` at `cell`, with its one readable line."""
    return Verdict(
        test=test,
        cell=cell,
        passed=passed,
        message=verdict_line(test, cell, passed, metrics, rule),
        metrics=list(metrics),
        rule=rule,
        multiple_comparison=multiple_comparison,
    )
