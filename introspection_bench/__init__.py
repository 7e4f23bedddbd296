"""introspection-bench: concept-injection introspection experiments as a pytest suite.

The public API declares a protocol as data and registers it with the suite (README, "Write
your own protocol"): an `Experiment` of `Span`s, `Sample`s, `Condition`s (`Inject` in a
`Window`), `Grading` and `Check`s with a rule from `rules`; `register` hands it to the runner;
a suite test asserts `verdict(test, cell) == PASS`.

Names are imported on first use, so `import introspection_bench` (and `pytest --help`, which
loads the plugin) does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from introspection_bench.protocols import rules
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
        word_samples,
    )
    from introspection_bench.protocols.registry import register
    from introspection_bench.suite import PASS, Result

__version__ = "0.1.0"

_HOMES = {
    "rules": "introspection_bench.protocols.rules",
    "Cell": "introspection_bench.protocols.base",
    "MetricResult": "introspection_bench.protocols.base",
    "Trial": "introspection_bench.protocols.base",
    "Verdict": "introspection_bench.protocols.base",
    "NO_GRADING": "introspection_bench.protocols.declare",
    "Check": "introspection_bench.protocols.declare",
    "Condition": "introspection_bench.protocols.declare",
    "Experiment": "introspection_bench.protocols.declare",
    "Grading": "introspection_bench.protocols.declare",
    "Inject": "introspection_bench.protocols.declare",
    "Sample": "introspection_bench.protocols.declare",
    "Span": "introspection_bench.protocols.declare",
    "Window": "introspection_bench.protocols.declare",
    "word_samples": "introspection_bench.protocols.declare",
    "register": "introspection_bench.protocols.registry",
    "PASS": "introspection_bench.suite",
    "Result": "introspection_bench.suite",
}

__all__ = ["__version__", *sorted(_HOMES)]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    if name not in _HOMES:
        raise AttributeError(f"module 'introspection_bench' has no attribute {name!r}")
    module = import_module(_HOMES[name])
    return module if name == "rules" else getattr(module, name)
