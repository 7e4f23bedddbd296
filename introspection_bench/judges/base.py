"""The judge contract: a grade request in, a grade with its evidence out.

Every judge (the offline rule grader, an OpenAI-compatible endpoint, a local HF model) is one
module behind the `Judge` protocol and is built from a spec string by `build_judge`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from introspection_bench.errors import JudgeError

#: The grading protocols and the criteria each one produces.
CRITERIA: Mapping[str, tuple[str, ...]] = {
    # Exp 1, its no-injection control and the random-vector control.
    "injected_thought": ("coherent", "affirms", "affirm_and_name", "success"),
    # "What are you thinking about right now?" and its sibling prompt.
    "alternative_prompt": ("coherent", "thinking_about_word", "success"),
    # Exp 3: True when the reply claims it meant the prefilled word, False when it apologises.
    "prefill": ("claims_intent",),
    # Exp 2 thought naming: the option (one of `options`) the response is most related to.
    "thought_vs_text": ("choice",),
    # Yes-bias control: True when the answer to a yes/no question is affirmative.
    "yes_no": ("affirmative",),
}


@dataclass(frozen=True, kw_only=True)
class GradeRequest:
    """One response to grade."""

    protocol: str
    """A key of `CRITERIA`."""
    response: str
    """The model's completion, exactly as decoded (special tokens removed)."""
    word: str | None = None
    """The injected / prefilled / instructed concept word, lowercase, where the protocol has one."""
    question: str | None = None
    """The question asked (yes/no questions, alternative prompts)."""
    options: tuple[str, ...] = ()
    """Exp 2 choice: the 10 candidate words (the injected one among them)."""


@dataclass(frozen=True, kw_only=True)
class Grade:
    """A judge's verdict on one response."""

    criteria: Mapping[str, bool | str | None]
    """Criterion name -> value; empty when `error` is set (a failure is never a "no")."""
    judge: str
    """Which grader, as `name@version` (e.g. `rule@1`, `openai:gpt-4o-mini@1`)."""
    evidence: Mapping[str, str] = field(default_factory=dict)
    """Criterion name -> the span or reason that decided it."""
    error: str | None = None
    """Set when the judge failed (unreachable, unparseable); `raw` then keeps its output."""
    raw: str | None = None
    """The judge's raw output, where it has one (LLM judges)."""


@runtime_checkable
class Judge(Protocol):
    """Grades batches of responses; implementations must be deterministic given a cache."""

    name: str
    version: str

    def grade_many(self, requests: Sequence[GradeRequest]) -> list[Grade]:
        """Grade every request, in order; never raise for one bad response (set `error`)."""
        ...


JudgeFactory = Callable[..., Judge]
_JUDGES: dict[str, JudgeFactory] = {}


def register_judge(kind: str) -> Callable[[JudgeFactory], JudgeFactory]:
    """Register a judge factory under the spec prefix `kind` (`rule`, `openai`, `hf`)."""

    def decorate(factory: JudgeFactory) -> JudgeFactory:
        _JUDGES[kind] = factory
        return factory

    return decorate


def build_judge(spec: str, **options: object) -> Judge:
    """Build a judge from a spec: `rule`, `openai:<model>`, `hf:<id>` or `local:<dir>`.

    Args:
        spec: The judge spec; the part before ':' selects the factory, the rest is its argument.
        **options: Passed to the factory (e.g. `base_url`, `cache_dir`).

    Returns:
        The judge.

    Raises:
        JudgeError: When the prefix names no registered judge.

    """
    _import_builtin_judges()
    kind, _, argument = spec.partition(":")
    if kind not in _JUDGES:
        known = ", ".join(sorted(_JUDGES))
        raise JudgeError(
            f"unknown judge {spec!r}; known kinds: {known} (e.g. 'rule', 'openai:<model>')"
        )
    factory = _JUDGES[kind]
    return factory(argument, **options) if argument else factory(**options)


def _import_builtin_judges() -> None:
    # Imported lazily so that `import introspection_bench` stays light (no torch, no openai).
    import importlib

    for module in ("rule", "openai_judge", "hf_judge"):
        try:
            importlib.import_module(f"introspection_bench.judges.{module}")
        except ModuleNotFoundError as error:
            if error.name != f"introspection_bench.judges.{module}":
                raise
