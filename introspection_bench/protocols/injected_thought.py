r"""Exp 1, injected thoughts: detect and name a concept injected into the residual stream.

Three conditions on the paper's three-turn prompt, generated in the same mixed batches:
- `injected`: the concept's vector from the "\n\n" before "Trial 1" through every generated token;
- `random_vector`: a random direction with the concept vector's norm, same window and dose;
- `control`: no injection (one set for the whole sweep).
Tests: `injected_thought` and `random_vector` per (layer, strength), `control` once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from introspection_bench.protocols._common import (
    decide,
    holm_for_cell,
    rate_of,
    select,
)
from introspection_bench.protocols.base import Cell, MetricResult, Trial, Verdict
from introspection_bench.protocols.declare import (
    Check,
    Condition,
    Experiment,
    Grading,
    Inject,
    Span,
    Window,
    word_samples,
)
from introspection_bench.records import TrialRecord
from introspection_bench.stats import fisher_less

if TYPE_CHECKING:
    from introspection_bench.session import BenchSession

NAME = "injected_thought"
VERSION = "1"


def evaluate(
    session: BenchSession,
    records: Sequence[TrialRecord],
    test: str,
    cell: Cell,
    thresholds: Mapping[str, Any],
) -> Verdict:
    """The verdict of `test` at `cell`."""
    alpha = float(thresholds["alpha"])
    control = rate_of(select(records, "control"), "affirms")
    control_metric = MetricResult.from_rate(
        f"{NAME}.false_positive", "control", None, None, control
    )
    if test == "control":
        cap = float(thresholds["control"]["max_false_positive_upper"])
        passed = control.high < cap
        rule = f"false-positive upper bound < {cap:g}"
        return decide(test, cell, passed, [control_metric], rule)
    layer = session.layer_index(cell.layer)
    if test == "random_vector":
        rand = rate_of(select(records, "random_vector", layer, cell.strength), "affirms")
        p = fisher_less(control.k, control.n, rand.k, rand.n)  # random above control?
        metric = MetricResult.from_rate(
            f"{NAME}.random_affirms", "random_vector", layer, cell.strength, rand, p_value=p
        )
        passed = p >= alpha
        rule = (
            f"random-vector detection not above control (one-sided Fisher p={p:.3g} >= {alpha:g})"
        )
        return decide(test, cell, passed, [metric, control_metric], rule)
    return _detection_verdict(session, records, cell, control, control_metric, alpha)


def _detection_verdict(
    session: BenchSession,
    records: Sequence[TrialRecord],
    cell: Cell,
    control: Any,
    control_metric: MetricResult,
    alpha: float,
) -> Verdict:
    def p_of_cell(other_layer: int, strength: float) -> float:
        other = rate_of(select(records, "injected", other_layer, strength), "success")
        return fisher_less(control.k, control.n, other.k, other.n)

    p_holm, note = holm_for_cell(session, NAME, cell, p_of_cell)
    layer = session.layer_index(cell.layer)
    success = rate_of(select(records, "injected", layer, cell.strength), "success")
    rand = rate_of(select(records, "random_vector", layer, cell.strength), "affirms")
    metrics = [
        MetricResult.from_rate(
            f"{NAME}.success", "injected", layer, cell.strength, success, p_holm=p_holm
        ),
        control_metric,
        MetricResult.from_rate(
            f"{NAME}.random_affirms", "random_vector", layer, cell.strength, rand
        ),
    ]
    passed = success.low > control.high and success.low > rand.high and p_holm < alpha
    rule = (
        "success lower bound > control and random-vector upper bounds, "
        f"and Holm p={p_holm:.3g} < {alpha:g}"
    )
    return decide("injected_thought", cell, passed, metrics, rule, note)


#: From the "\n\n" before "Trial 1" through every generated token.
WINDOW = Window(start="window")
PROTOCOL = Experiment(
    name=NAME,
    turns=NAME,
    spans=[Span(name="window", turn=2, text="\n\nTrial 1")],
    samples=word_samples("concept_words"),
    conditions=[
        Condition(name="control", records_concept=False, grading=Grading(kind=NAME)),
        Condition(name="injected", inject=Inject(window=WINDOW)),
        Condition(name="random_vector", inject=Inject(window=WINDOW, random=True)),
    ],
    grading=Grading(kind=NAME, word="concept"),
    checks=[
        Check(name="injected_thought", rule=evaluate),
        Check(name="random_vector", rule=evaluate),
        Check(name="control", rule=evaluate, per="run"),
    ],
    trial_id="{protocol}/{condition}/L{layer}/s{strength:g}/{concept}/{i}",
    order="cell",
)
TESTS = PROTOCOL.TESTS


def build_trials(session: BenchSession) -> list[Trial]:
    """Injected and random-vector trials for every cell, and one control set."""
    return PROTOCOL.build_trials(session)
