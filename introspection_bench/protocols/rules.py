"""Statistical rules a declared `Experiment` can use without writing an `evaluate`.

Each rule reads the records of one protocol and decides one test at one cell. Injected
conditions are read at the cell's layer and strength; uninjected ones (a single set for the
sweep) are read whole. Every rate is a Wilson interval clustered by concept (`_common.rate_of`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from introspection_bench.protocols._common import decide, holm_for_cell, rate_of, select
from introspection_bench.protocols.base import Cell, MetricResult, Verdict
from introspection_bench.records import TrialRecord
from introspection_bench.stats import Rate, fisher_less


class Rule:
    """A rule that needs the protocol's name (for metric names and the Holm sweep)."""

    def decide(
        self,
        protocol: str,
        session: Any,
        records: Sequence[TrialRecord],
        test: str,
        cell: Cell,
        thresholds: Mapping[str, Any],
    ) -> Verdict:
        """The verdict of `test` at `cell`."""
        raise NotImplementedError


def _is_injected(records: Sequence[TrialRecord], condition: str) -> bool:
    return any(r.condition == condition and r.layer is not None for r in records)


def _rate_at(
    session: Any, records: Sequence[TrialRecord], condition: str, criterion: str, cell: Cell
) -> tuple[Rate, int | None, float | None]:
    if _is_injected(records, condition):
        layer = session.layer_index(cell.layer)
        return (
            rate_of(select(records, condition, layer, cell.strength), criterion),
            layer,
            cell.strength,
        )
    return rate_of(select(records, condition), criterion), None, None


@dataclass(frozen=True, kw_only=True)
class Exceeds(Rule):
    """`criterion` under `condition` beats every control: its lower bound above each control's
    upper bound, and a one-sided Fisher test against the first control, Holm-corrected over the
    sweep, below `alpha`."""

    criterion: str
    condition: str = "injected"
    controls: Mapping[str, str] = field(default_factory=lambda: {"control": "affirms"})
    """Control condition -> the criterion counted as its false positive."""

    def decide(
        self,
        protocol: str,
        session: Any,
        records: Sequence[TrialRecord],
        test: str,
        cell: Cell,
        thresholds: Mapping[str, Any],
    ) -> Verdict:
        """Pass when the rate beats every control and the Holm p-value is below alpha."""
        alpha = float(thresholds["alpha"])
        first, first_criterion = next(iter(self.controls.items()))

        def p_of_cell(layer: int, strength: float) -> float:
            treated = rate_of(select(records, self.condition, layer, strength), self.criterion)
            other = Cell(layer, strength)
            control, _, _ = _rate_at(_Indexed(session), records, first, first_criterion, other)
            return fisher_less(control.k, control.n, treated.k, treated.n)

        p_holm, note = holm_for_cell(session, protocol, cell, p_of_cell)
        rate, layer, strength = _rate_at(session, records, self.condition, self.criterion, cell)
        metrics = [
            MetricResult.from_rate(
                f"{protocol}.{self.criterion}", self.condition, layer, strength, rate, p_holm=p_holm
            )
        ]
        controls = []
        for condition, criterion in self.controls.items():
            control, c_layer, c_strength = _rate_at(session, records, condition, criterion, cell)
            controls.append(control)
            metrics.append(
                MetricResult.from_rate(
                    f"{protocol}.{criterion}", condition, c_layer, c_strength, control
                )
            )
        passed = all(rate.low > c.high for c in controls) and p_holm < alpha
        names = ", ".join(self.controls)
        rule = (
            f"{self.criterion} lower bound > upper bounds of {names}, "
            f"and Holm Fisher p={p_holm:.3g} < {alpha:g}"
        )
        return decide(test, cell, passed, metrics, rule, note)


@dataclass(frozen=True, kw_only=True)
class NotAbove(Rule):
    """A control holds: `criterion` under `condition` is not significantly above `reference`
    (one-sided Fisher p >= alpha)."""

    criterion: str
    condition: str = "injected"
    reference: str = "none"

    def decide(
        self,
        protocol: str,
        session: Any,
        records: Sequence[TrialRecord],
        test: str,
        cell: Cell,
        thresholds: Mapping[str, Any],
    ) -> Verdict:
        """Pass when the one-sided Fisher p-value is at least alpha."""
        alpha = float(thresholds["alpha"])
        rate, layer, strength = _rate_at(session, records, self.condition, self.criterion, cell)
        base, b_layer, b_strength = _rate_at(session, records, self.reference, self.criterion, cell)
        p = fisher_less(base.k, base.n, rate.k, rate.n)
        name = f"{protocol}.{self.criterion}"
        metrics = [
            MetricResult.from_rate(name, self.condition, layer, strength, rate, p_value=p),
            MetricResult.from_rate(name, self.reference, b_layer, b_strength, base),
        ]
        rule = (
            f"{self.condition} {self.criterion} rate not above {self.reference} "
            f"(one-sided Fisher p={p:.3g} >= {alpha:g})"
        )
        return decide(test, cell, p >= alpha, metrics, rule)


@dataclass(frozen=True, kw_only=True)
class UpperBoundBelow(Rule):
    """A false-positive cap: the upper bound of `criterion` under `condition` is below `cap`."""

    criterion: str
    condition: str
    cap: float

    def decide(
        self,
        protocol: str,
        session: Any,
        records: Sequence[TrialRecord],
        test: str,
        cell: Cell,
        thresholds: Mapping[str, Any],
    ) -> Verdict:
        """Pass when the rate's upper bound is below the cap."""
        rate, layer, strength = _rate_at(session, records, self.condition, self.criterion, cell)
        metric = MetricResult.from_rate(
            f"{protocol}.{self.criterion}", self.condition, layer, strength, rate
        )
        rule = f"{self.condition} {self.criterion} upper bound < {self.cap:g}"
        return decide(test, cell, rate.high < self.cap, [metric], rule)


class _Indexed:
    """A session whose `layer_index` passes block indices through (Holm cells are resolved)."""

    def __init__(self, session: Any) -> None:
        self._session = session

    def layer_index(self, layer: float | int) -> int:
        return int(layer)
