"""Statistical rules a declared `Experiment` can use without writing an `evaluate`.

Each rule reads the records of one protocol and decides one test at one cell. Injected
conditions are read at the cell's layer and strength; uninjected ones (a single set for the
sweep) are read whole. Every rate is a Wilson interval clustered by concept (`_common.rate_of`).

A rule is plain data (a frozen dataclass of strings, numbers and mappings): `rule_data` writes
it into a run's declarations and `rule_from_data` rebuilds it from this module's own classes,
so `regrade`, `validate`, the leaderboard and `--baseline` decide a user's protocol without
importing (or trusting) the file that declared it (`protocols/recorded.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, cast

from introspection_bench.errors import ConfigError
from introspection_bench.protocols._common import decide, holm_for_cell, rate_of, select
from introspection_bench.protocols.base import Cell, MetricResult, Verdict
from introspection_bench.records import TrialRecord
from introspection_bench.stats import Rate, fisher_less

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


@dataclass(frozen=True)
class Reading:
    """What a rule reads: one protocol's records at one cell, and the pinned thresholds."""

    protocol: str
    session: Any
    """Anything with `config` and `layer_index` (a live `BenchSession` or a recorded run)."""
    records: Sequence[TrialRecord]
    cell: Cell
    thresholds: Mapping[str, Any]

    @property
    def alpha(self) -> float:
        """The family-wise error rate of the thresholds file."""
        return float(self.thresholds["alpha"])

    def rate(self, condition: str, criterion: str, **params: Any) -> tuple[Rate, MetricResult]:
        """The rate of `criterion` under `condition` (at the cell when injected), as a metric."""
        rate, layer, strength = _rate_at(
            self.session, self.records, condition, criterion, self.cell
        )
        name = f"{self.protocol}.{criterion}"
        return rate, MetricResult.from_rate(name, condition, layer, strength, rate, **params)


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
        return self.verdict(Reading(protocol, session, records, cell, thresholds), test)

    def verdict(self, reading: Reading, test: str) -> Verdict:
        """The verdict of `test` from what `reading` holds (each rule's own body)."""
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
    """`criterion` under `condition` beats every control.

    Its lower bound is above each control's upper bound, and a one-sided Fisher test against the
    first control, Holm-corrected over the sweep, is below `alpha`.
    """

    criterion: str
    condition: str = "injected"
    controls: Mapping[str, str] = field(default_factory=lambda: {"control": "affirms"})
    """Control condition -> the criterion counted as its false positive."""

    def verdict(self, reading: Reading, test: str) -> Verdict:
        """Pass when the rate beats every control and the Holm p-value is below alpha."""
        records = reading.records
        first, first_criterion = next(iter(self.controls.items()))

        def p_of_cell(layer: int, strength: float) -> float:
            treated = rate_of(select(records, self.condition, layer, strength), self.criterion)
            other = Cell(layer, strength)
            control, _, _ = _rate_at(
                _Indexed(reading.session), records, first, first_criterion, other
            )
            return fisher_less(control.k, control.n, treated.k, treated.n)

        p_holm, note = holm_for_cell(reading.session, reading.protocol, reading.cell, p_of_cell)
        rate, metric = reading.rate(self.condition, self.criterion, p_holm=p_holm)
        controls = [reading.rate(c, criterion) for c, criterion in self.controls.items()]
        metrics = [metric, *(m for _, m in controls)]
        passed = all(rate.low > c.high for c, _ in controls) and p_holm < reading.alpha
        rule = (
            f"{self.criterion} lower bound > upper bounds of {', '.join(self.controls)}, "
            f"and Holm Fisher p={p_holm:.3g} < {reading.alpha:g}"
        )
        return decide(test, reading.cell, passed, metrics, rule, note)


@dataclass(frozen=True, kw_only=True)
class NotAbove(Rule):
    """A control holds: `criterion` under `condition` is not significantly above `reference`.

    The one-sided Fisher p-value is at least alpha.
    """

    criterion: str
    condition: str = "injected"
    reference: str = "none"

    def verdict(self, reading: Reading, test: str) -> Verdict:
        """Pass when the one-sided Fisher p-value is at least alpha."""
        base, base_metric = reading.rate(self.reference, self.criterion)
        treated, _ = reading.rate(self.condition, self.criterion)
        p = fisher_less(base.k, base.n, treated.k, treated.n)
        _, metric = reading.rate(self.condition, self.criterion, p_value=p)
        rule = (
            f"{self.condition} {self.criterion} rate not above {self.reference} "
            f"(one-sided Fisher p={p:.3g} >= {reading.alpha:g})"
        )
        return decide(test, reading.cell, p >= reading.alpha, [metric, base_metric], rule)


@dataclass(frozen=True, kw_only=True)
class UpperBoundBelow(Rule):
    """A false-positive cap: the upper bound of `criterion` under `condition` is below `cap`."""

    criterion: str
    condition: str
    cap: float

    def verdict(self, reading: Reading, test: str) -> Verdict:
        """Pass when the rate's upper bound is below the cap."""
        rate, metric = reading.rate(self.condition, self.criterion)
        rule = f"{self.condition} {self.criterion} upper bound < {self.cap:g}"
        return decide(test, reading.cell, rate.high < self.cap, [metric], rule)


class _Indexed:
    """A session whose `layer_index` passes block indices through (Holm cells are resolved)."""

    def __init__(self, session: Any) -> None:
        self._session = session

    def layer_index(self, layer: float | int) -> int:
        return int(layer)


#: The rules a run's declarations may name; nothing else is rebuilt from recorded data.
RULES: Mapping[str, type[Rule]] = {
    cls.__name__: cls for cls in (Exceeds, NotAbove, UpperBoundBelow)
}


def rule_data(rule: Any) -> dict[str, Any] | None:
    """A rule of this module as JSON data (`{"type": "Exceeds", ...fields}`), else None.

    None means the rule is code (a function, or a `Rule` subclass of the user's): a run can
    name it but not carry it.
    """
    kind = type(rule).__name__
    if RULES.get(kind) is not type(rule):
        return None
    fields = asdict(cast("DataclassInstance", rule))  # every class of RULES is a dataclass
    data = {k: dict(v) if isinstance(v, Mapping) else v for k, v in fields.items()}
    return {"type": kind, **data}


def rule_from_data(data: Mapping[str, Any]) -> Rule:
    """Rebuild a rule from `rule_data`.

    Raises:
        ConfigError: For a type this module does not define or fields it does not take.

    """
    fields = dict(data)
    kind = fields.pop("type", None)
    cls = RULES.get(str(kind))
    if cls is None:
        raise ConfigError(f"unknown rule type {kind!r}; known: {', '.join(RULES)}")
    try:
        return cls(**fields)
    except TypeError as error:
        raise ConfigError(f"rule {kind} cannot be built from {fields}: {error}") from error
