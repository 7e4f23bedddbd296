"""What every protocol shares: the trial, the metric, the verdict, and the protocol contract."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from introspection_bench.chat import RenderedPrompt
from introspection_bench.hooks import InjectionSpec
from introspection_bench.judges.base import GradeRequest
from introspection_bench.stats import Rate

if TYPE_CHECKING:
    from introspection_bench.records import TrialRecord
    from introspection_bench.session import BenchSession


@dataclass(frozen=True, kw_only=True)
class Trial:
    """One trial to generate (or, for forward-only protocols, to measure)."""

    trial_id: str
    protocol: str
    condition: str
    concept: str | None
    layer: int | None
    strength: float | None
    prompt: RenderedPrompt
    injection: InjectionSpec | None
    injected_norm: float | None
    norm_ratio: float | None
    max_new_tokens: int
    temperature: float
    seed: int
    grade: GradeRequest | None
    """The grading request, with an empty response that the completion fills."""
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Cell:
    """One point of the sweep a test is parametrized over."""

    layer: float | int | None
    """As the user gave it (depth fraction or index): it names the test id."""
    strength: float | None

    @property
    def label(self) -> str:
        """Test-id form: `layer=0.67,strength=2`."""
        parts = []
        if self.layer is not None:
            parts.append(f"layer={self.layer:g}")
        if self.strength is not None:
            parts.append(f"strength={self.strength:g}")
        return ",".join(parts) or "all"


@dataclass(frozen=True, kw_only=True)
class MetricResult:
    """One number a verdict rests on."""

    name: str
    """`<protocol>.<metric>`, e.g. `injected_thought.success`."""
    condition: str
    layer: int | None
    strength: float | None
    estimate: float
    low: float
    high: float
    k: int | None = None
    n: int | None = None
    method: str = "wilson"
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_rate(
        cls,
        name: str,
        condition: str,
        layer: int | None,
        strength: float | None,
        r: Rate,
        **params: Any,
    ) -> MetricResult:
        """Wrap a `stats.Rate`."""
        return cls(
            name=name,
            condition=condition,
            layer=layer,
            strength=strength,
            estimate=r.estimate,
            low=r.low,
            high=r.high,
            k=r.k,
            n=r.n,
            method=r.method,
            params=params,
        )

    def describe(self) -> str:
        """`name[condition] 3/10 = 30.0% [10.8%, 60.3%]` or the interval of a continuous metric."""
        if self.k is not None and self.n is not None:
            body = (
                f"{self.k}/{self.n} = {_pct(self.estimate)} [{_pct(self.low)}, {_pct(self.high)}]"
            )
        else:
            body = f"{self.estimate:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"
        return f"{self.name}[{self.condition}] {body}"


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.1f}%"


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """A test's pass/fail and the numbers that decided it."""

    test: str
    """Protocol test name (e.g. `control`)."""
    cell: Cell
    passed: bool
    message: str
    """One readable line: metrics, interval, threshold, condition."""
    metrics: Sequence[MetricResult]
    rule: str
    """The pass rule as text, with its threshold values."""
    multiple_comparison: str = "none"
    """How the sweep's multiplicity was handled (e.g. `holm over 2 cells`)."""


class ProtocolModule(Protocol):
    """The contract of a protocol module (one experiment)."""

    NAME: str
    VERSION: str

    def build_trials(self, session: BenchSession, cell: Cell) -> list[Trial]:
        """The trials this cell needs (shared controls carry cell-independent ids)."""
        ...

    def evaluate(
        self,
        session: BenchSession,
        records: Sequence[TrialRecord],
        cell: Cell,
        thresholds: Mapping[str, Any],
    ) -> list[Verdict]:
        """Verdicts of this protocol's tests at `cell` from its graded records."""
        ...
