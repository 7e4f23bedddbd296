"""Declare a protocol as data: turns with named spans, samples, conditions, grading, tests.

An `Experiment` is what a protocol module (or a user's test file) writes; the shared engine here
turns it into `Trial`s for every cell of the sweep, and `registry.register` hands it to the
runner, so generation, grading, records, resume, sharding, the summary, reports and
`--baseline` work for it with no further code (the way an Inspect task is a dataset, a solver and
a scorer, and the engine is shared).

Trial ids are `str.format` templates over the sample's fields, `protocol`, `condition`, `i` (the
sample index), `layer` and `strength`; seeds derive from them, so they must be unique and stable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from introspection_bench.chat import RenderedPrompt, SpanRef, render_chat
from introspection_bench.concepts import random_vectors
from introspection_bench.errors import ConfigError
from introspection_bench.generation import seed_from_id
from introspection_bench.judges.base import GradeRequest
from introspection_bench.protocols._common import sample_words, sweep_cells
from introspection_bench.protocols.base import Cell, Trial, Verdict

if TYPE_CHECKING:
    from introspection_bench.records import TrialRecord
    from introspection_bench.session import BenchSession

Turns = Sequence[tuple[str, str]]
#: Turns as literal (role, text) pairs with `{field}` placeholders, the name of a stimuli
#: template, or a function `(stimuli, fields) -> turns`.
TurnsSpec = Turns | str | Callable[[Any, Mapping[str, Any]], Turns]
#: The rule of one test: `(session, records, test, cell, thresholds) -> Verdict`.
#: Or a `rules.Rule` (e.g. `rules.Exceeds`), which also gets the protocol's name.
RuleFn = Callable[[Any, Sequence["TrialRecord"], str, Cell, Mapping[str, Any]], Verdict]
DEFAULT_ID = "{protocol}/{condition}/{i}"
DEFAULT_INJECTED_ID = "{protocol}/{condition}/L{layer}/s{strength:g}/{i}"


@dataclass(frozen=True, kw_only=True)
class Span:
    """A named character span of one turn; its token span goes to `prompt.spans[name]`."""

    name: str
    turn: int
    """Index into the conversation turns."""
    text: str | None = None
    """Text inside the turn (a `{field}` template over the sample); None: the whole turn."""


@dataclass(frozen=True, kw_only=True)
class Window:
    """Where the injection runs, in tokens of the rendered prompt."""

    start: str | int
    """A span name (its first token) or a token index (never 0, the attention sink)."""
    end: str | None = None
    """A span name (up to its last token); None: through every generated token."""

    @classmethod
    def span(cls, name: str) -> Window:
        """Exactly the tokens of span `name`."""
        return cls(start=name, end=name)


@dataclass(frozen=True, kw_only=True)
class Inject:
    """What a condition adds to the residual stream, at the cell's layer and strength."""

    window: Window
    vector: str = "concept"
    """Sample field holding the word whose concept vector is injected."""
    random: bool = False
    """A random direction with that vector's norm instead (seeded by word, sample, layer)."""


@dataclass(frozen=True, kw_only=True)
class Grading:
    """Which judge criteria apply (a key of `judges.base.CRITERIA`) and what they read."""

    kind: str
    word: str | None = None
    """Sample field with the word graded against; None: no word (e.g. a control)."""
    question: str | None = None
    """Sample field with the question asked, where the criteria need it."""
    options: str | None = None
    """Sample field with the candidate words of a forced choice."""


NO_GRADING = Grading(kind="")
"""A condition that is scored without a judge (e.g. transcription)."""


@dataclass(frozen=True, kw_only=True)
class Condition:
    """One arm of the experiment: uninjected (one set for the sweep) or injected per cell."""

    name: str
    inject: Inject | None = None
    turns: TurnsSpec | None = None
    """This condition's own conversation (default: the experiment's)."""
    fields: Mapping[str, str] = field(default_factory=dict)
    """Extra `{placeholders}` for the turns, themselves templates over the sample's fields."""
    grading: Grading | None = None
    """This condition's grading (default: the experiment's; `NO_GRADING`: none)."""
    trial_id: str | None = None
    """Id template (default: the experiment's for this kind of condition)."""
    records_concept: bool = True
    """False: the record's concept is None (an uninjected control graded against no word)."""
    extra: Mapping[str, str] = field(default_factory=dict)
    """Record `extra` key -> sample field, added to the sample's own extra."""


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One item of the dataset: the fields the turns, windows and grading read."""

    index: int
    fields: Mapping[str, Any]
    concept: str | None = None
    """What the records call the concept (injected / prefilled / instructed word)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Copied into every record of this sample."""


@dataclass(frozen=True, kw_only=True)
class Check:
    """One suite test of the experiment and the statistical rule that decides it."""

    name: str
    rule: RuleFn
    per: str = "cell"
    """`cell` (layer x strength), `layer` (strength-free) or `run` (once)."""


def word_samples(
    word_list: str = "concept_words",
    *,
    salt: str | None = None,
    lower: bool = False,
    fields: Mapping[str, Any] | None = None,
) -> Callable[[BenchSession, str], list[Sample]]:
    """Samples of `--trials` words drawn from a stimuli list (seeded by run seed and `salt`).

    Each sample's field `concept` (and its concept) is the word (lowercased with `lower`), `word`
    the word as listed, plus the constant `fields` (e.g. the question asked).
    """
    constant = dict(fields or {})

    def build(session: BenchSession, protocol: str) -> list[Sample]:
        words = session.stimuli.words(word_list)
        drawn = sample_words(words, session.config.trials, session.config.seed, salt or protocol)
        return [
            Sample(
                index=i,
                fields=constant | {"concept": w.lower() if lower else w, "word": w},
                concept=w.lower() if lower else w,
            )
            for i, w in enumerate(drawn)
        ]

    return build


@dataclass(frozen=True, kw_only=True)
class Experiment:
    """A whole protocol as data; `registry.register` makes it runnable by the suite."""

    name: str
    version: str = "1"
    turns: TurnsSpec
    samples: Callable[[BenchSession, str], list[Sample]]
    """`(session, protocol name) -> samples`, e.g. `word_samples()`."""
    conditions: Sequence[Condition]
    checks: Sequence[Check]
    spans: Sequence[Span] = ()
    grading: Grading | None = None
    max_new_tokens: int | None = None
    """None: the stimuli template's `max_new_tokens` (when `turns` names a template)."""
    temperature: float | None = None
    trial_id: str = DEFAULT_INJECTED_ID
    control_id: str = DEFAULT_ID
    order: str = "sample"
    """`sample`: each sample's trials together; `cell`: every control first, then by cell."""
    add_generation_prompt: bool = True
    run: Callable[[BenchSession], list[TrialRecord]] | None = None
    """Forward-only experiments measure instead of generating (e.g. Exp 4)."""

    def __post_init__(self) -> None:
        if not self.conditions or not self.checks:
            raise ConfigError(f"experiment {self.name!r} needs at least one condition and check")
        if self.order not in ("sample", "cell"):
            raise ConfigError(f"experiment {self.name!r}: order {self.order!r}; use sample or cell")
        for check in self.checks:
            if check.per not in ("cell", "layer", "run"):
                raise ConfigError(
                    f"check {check.name!r}: per={check.per!r}; use cell, layer or run"
                )

    # The protocol-module contract (`NAME`, `VERSION`, `TESTS`, `build_trials`, `evaluate`).
    @property
    def NAME(self) -> str:  # noqa: N802
        """The protocol name in every record."""
        return self.name

    @property
    def VERSION(self) -> str:  # noqa: N802
        """The protocol version in every record."""
        return self.version

    @property
    def TESTS(self) -> tuple[str, ...]:  # noqa: N802
        """The names of its suite tests."""
        return tuple(check.name for check in self.checks)

    def check(self, test: str) -> Check:
        """The check named `test`.

        Raises:
            ConfigError: When the experiment has no such check, listing its checks.

        """
        for check in self.checks:
            if check.name == test:
                return check
        raise ConfigError(f"{self.name} has no test {test!r}; its tests: {', '.join(self.TESTS)}")

    def evaluate(
        self,
        session: Any,
        records: Sequence[TrialRecord],
        test: str,
        cell: Cell,
        thresholds: Mapping[str, Any],
    ) -> Verdict:
        """The verdict of `test` at `cell`, by its check's rule."""
        from introspection_bench.protocols.rules import Rule

        rule = self.check(test).rule
        if isinstance(rule, Rule):
            return rule.decide(self.name, session, records, test, cell, thresholds)
        return rule(session, records, test, cell, thresholds)

    def build_trials(self, session: BenchSession) -> list[Trial]:
        """Every trial of the sweep: uninjected conditions once, injected ones at every cell."""
        samples = self.samples(session, self.name)
        plain = [c for c in self.conditions if c.inject is None]
        injected = [c for c in self.conditions if c.inject is not None]
        cells = sweep_cells(session, self.name) if injected else []
        prompts: dict[tuple[int, str], RenderedPrompt] = {}
        trials: list[Trial] = []

        def cell_trials(sample: Sample) -> list[Trial]:
            return [
                self._trial(session, sample, c, cell, prompts) for cell in cells for c in injected
            ]

        if self.order == "cell":
            trials += [self._trial(session, s, c, None, prompts) for s in samples for c in plain]
            for cell in cells:
                trials += [
                    self._trial(session, s, c, cell, prompts) for s in samples for c in injected
                ]
            return trials
        for sample in samples:
            trials += [self._trial(session, sample, c, None, prompts) for c in plain]
            trials += cell_trials(sample)
        return trials

    # -- one trial ---------------------------------------------------------------------------
    def _turns(self, session: BenchSession, condition: Condition, fields: Mapping[str, Any]) -> Any:
        spec = condition.turns if condition.turns is not None else self.turns
        if isinstance(spec, str):
            return session.stimuli.turns(session.stimuli.template(spec), **fields)
        if callable(spec):
            return list(spec(session.stimuli, fields))
        return [(role, text.format(**fields)) for role, text in spec]

    def _template(self, session: BenchSession, condition: Condition) -> Mapping[str, Any]:
        spec = condition.turns if condition.turns is not None else self.turns
        return session.stimuli.template(spec) if isinstance(spec, str) else {}

    def _prompt(
        self,
        session: BenchSession,
        sample: Sample,
        condition: Condition,
        cache: dict[tuple[int, str], RenderedPrompt],
    ) -> RenderedPrompt:
        key = (id(sample), condition.name if condition.turns or condition.fields else "")
        if key not in cache:
            fields = dict(sample.fields)
            fields |= {k: v.format(**sample.fields) for k, v in condition.fields.items()}
            turns = self._turns(session, condition, fields)
            spans = {
                span.name: SpanRef.whole(turns, span.turn)
                if span.text is None
                else SpanRef.of(turns, span.turn, span.text.format(**fields))
                for span in self.spans
            }
            cache[key] = render_chat(
                session.lm.tokenizer, turns, spans, add_generation_prompt=self.add_generation_prompt
            )
        return cache[key]

    def _trial(
        self,
        session: BenchSession,
        sample: Sample,
        condition: Condition,
        cell: Cell | None,
        prompts: dict[tuple[int, str], RenderedPrompt],
    ) -> Trial:
        prompt = self._prompt(session, sample, condition, prompts)
        seed = session.config.seed
        names = dict(sample.fields) | {
            "protocol": self.name,
            "condition": condition.name,
            "i": sample.index,
        }
        spec = norm = ratio = layer = strength = None
        if condition.inject is not None and cell is not None:
            # Cells come from `sweep_cells`: each has a layer and a strength.
            layer, strength = session.layer_index(cell.layer), cell.strength
            names |= {"layer": layer, "strength": strength}
            spec, norm, ratio = self._injection(session, sample, condition.inject, prompt, cell)
        template = condition.trial_id or (self.trial_id if cell is not None else self.control_id)
        trial_id = template.format(**names)
        defaults = self._template(session, condition)
        max_new = self.max_new_tokens
        if max_new is None:
            if "max_new_tokens" not in defaults and self.run is None:
                raise ConfigError(
                    f"experiment {self.name!r} has no token limit: give max_new_tokens= "
                    "(or turns= a stimuli template that has one)"
                )
            max_new = int(defaults.get("max_new_tokens", 0))
        temperature = self.temperature
        if temperature is None:
            temperature = float(defaults.get("temperature", 1.0))
        extra = dict(sample.extra) | {k: sample.fields[f] for k, f in condition.extra.items()}
        from introspection_bench.protocols.registry import is_builtin

        grade = self._grade(sample, condition)
        if not is_builtin(self.name):  # built-ins' versions are read from their module
            extra["protocol_version"] = self.version
            if grade is not None:  # so `regrade` and `validate` rebuild it from the record
                extra["grade_request"] = {
                    "protocol": grade.protocol,
                    "word": grade.word,
                    "question": grade.question,
                    "options": list(grade.options),
                }
        return Trial(
            trial_id=trial_id,
            protocol=self.name,
            condition=condition.name,
            concept=sample.concept if condition.records_concept else None,
            layer=layer,
            strength=strength,
            prompt=prompt,
            injection=spec,
            injected_norm=norm,
            norm_ratio=ratio,
            max_new_tokens=max_new,
            temperature=temperature,
            seed=seed_from_id(trial_id, seed),
            grade=grade,
            extra=extra,
        )

    def _injection(
        self,
        session: BenchSession,
        sample: Sample,
        inject: Inject,
        prompt: RenderedPrompt,
        cell: Cell,
    ) -> tuple[Any, float, float]:
        # A cell of `sweep_cells`: it has a layer and a strength.
        layer = session.layer_index(cell.layer)
        vectors = session.vectors(layer)
        word = sample.fields[inject.vector]
        vector = vectors[word]
        if inject.random:
            key = f"{word}/{sample.index}/{layer}"
            vector = random_vectors(vector, 1, seed_from_id(key, session.config.seed))[0]
        window = inject.window
        start = window.start if isinstance(window.start, int) else prompt.spans[window.start][0]
        end = None if window.end is None else prompt.spans[window.end][1]
        return session.injection(layer, vector, cast(float, cell.strength), start, end, vectors)

    def _grade(self, sample: Sample, condition: Condition) -> GradeRequest | None:
        grading = condition.grading or self.grading
        if grading is None or grading is NO_GRADING or not grading.kind:
            return None

        def read(name: str | None) -> Any:
            return None if name is None else sample.fields[name]

        return GradeRequest(
            protocol=grading.kind,
            response="",
            word=read(grading.word),
            question=read(grading.question),
            options=tuple(read(grading.options) or ()),
        )
