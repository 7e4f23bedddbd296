"""One benchmark run: model, stimuli, concept vectors, judge and records, shared by every test.

Data flows one way: trials -> batched generation (records written as rows finish) -> grading
(records rewritten with grades) -> metrics. Generation and grading are separate phases, so a
run can be re-graded offline and an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import torch

from introspection_bench.concepts import ConceptVectors, extract_concept_vectors
from introspection_bench.errors import ConfigError
from introspection_bench.generation import Completion, Decoder, GenerationRequest
from introspection_bench.hooks import InjectionSpec
from introspection_bench.judges.base import Grade, Judge
from introspection_bench.records import RecordStore, TrialRecord

if TYPE_CHECKING:
    from introspection_bench.models import LoadedModel
    from introspection_bench.protocols.base import Trial
    from introspection_bench.sharding import Shard
    from introspection_bench.stimuli import Stimuli

DOSES = ("raw", "norm")


@dataclass(frozen=True)
class RunConfig:
    """The configuration that identifies a run (its records are only valid for it)."""

    model: str = "default"
    profile: str = "smoke"
    layers: tuple[float | int, ...] = (0.67,)
    """Depth fractions (float in (0, 1)) or block indices (int)."""
    strengths: tuple[float, ...] = (0.5, 1.0)
    protocol_strengths: dict[str, tuple[float, ...]] = field(default_factory=dict)
    """Per-protocol strengths that replace `strengths` (the paper's Exp 2 and 3 sweep to 16)."""
    dose: str = "norm"
    """`raw`: strength multiplies the raw difference vector (the paper). `norm`: the unit
    vector times strength x the median residual norm at that layer."""
    vector_method: str = "word_token"
    trials: int = 8
    """Trials per condition and cell (concepts, questions or word/sentence pairs)."""
    seed: int = 0
    judge: str = "rule"
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Per-protocol overrides from the profile (e.g. trial counts, token limits)."""

    def __post_init__(self) -> None:
        if self.dose not in DOSES:
            raise ConfigError(f"unknown dose {self.dose!r}; use one of {', '.join(DOSES)}")
        if self.trials < 1:
            raise ConfigError(f"--trials {self.trials} must be at least 1")
        if not self.layers or not self.strengths:
            raise ConfigError("a run needs at least one layer and one strength")
        for layer in self.layers:
            if isinstance(layer, float) and not 0.0 < layer < 1.0:
                raise ConfigError(
                    f"--layers fraction {layer:g} is outside (0, 1); give a depth fraction like "
                    "0.67 or a block index like 20"
                )

    def key(self) -> dict[str, Any]:
        """What must match for two runs to share a records directory (device/batch excluded)."""
        data = asdict(self)
        for volatile in ("device", "batch_size"):
            data.pop(volatile)
        return data

    @classmethod
    def from_key(cls, key: dict[str, Any], **overrides: Any) -> RunConfig:
        """Rebuild a config from `key()` data (e.g. a run dir's run.json; unknown keys ignored)."""
        names = {f.name for f in fields(cls)}
        data = {k: v for k, v in key.items() if k in names} | overrides
        for name in ("layers", "strengths"):
            if name in data:
                data[name] = tuple(data[name])
        if "protocol_strengths" in data:
            data["protocol_strengths"] = {
                k: tuple(v) for k, v in data["protocol_strengths"].items()
            }
        return cls(**data)

    def key_hash(self) -> str:
        """Short hash of `key()`."""
        return hashlib.sha256(
            json.dumps(self.key(), sort_keys=True, default=str).encode()
        ).hexdigest()[:12]


class BenchSession:
    """Everything a protocol needs to build, run and grade trials."""

    def __init__(
        self,
        config: RunConfig,
        lm: LoadedModel,
        stimuli: Stimuli,
        judge: Judge,
        store: RecordStore,
        shard: Shard | None = None,
        decoder: Any = None,
    ):
        self.config, self.lm, self.stimuli, self.judge, self.store = (
            config,
            lm,
            stimuli,
            judge,
            store,
        )
        self.shard = shard
        """This job's slice of the run (`--shard I/N`); None runs every trial."""
        self.assignments: dict[str, tuple[list[str], list[str]]] = {}
        """Protocol -> (every trial id in order, the ids this shard runs), once `assigned` ran."""
        self._vectors: dict[tuple[str, int], ConceptVectors] = {}
        # Anything with `Decoder.generate`'s contract, e.g. `executors.RayDecoder`.
        self._decoder = decoder or Decoder(lm, config.batch_size)

    # -- layers, vectors, doses -------------------------------------------------------------
    def layer_index(self, layer: float | int | None) -> int:
        """Block index of a configured layer (fraction or index).

        Raises:
            ConfigError: For None: a per-layer or per-cell test was checked without a cell.

        """
        if layer is None:
            raise ConfigError(
                "this test is decided per layer or per cell, but was checked without one: "
                "pass the `cell` (or `layer_cell`) fixture's value, as in check(test, cell)"
            )
        return self.lm.resolve_layer(layer)

    def vectors(self, layer: int, word_list: str = "concept_words") -> ConceptVectors:
        """Concept vectors of a stimuli word list at `layer` (extracted once, cached on disk).

        All configured layers are extracted in one pass on first use.
        """
        key = (word_list, layer)
        if key not in self._vectors:
            layers = sorted({self.layer_index(value) for value in self.config.layers} | {layer})
            extracted = extract_concept_vectors(
                self.lm,
                self.stimuli.words(word_list),
                self.stimuli.words("baseline_words"),
                layers,
                method=self.config.vector_method,
            )
            for index, vectors in extracted.items():
                self._vectors[(word_list, index)] = vectors
        return self._vectors[key]

    def injection(
        self,
        layer: int,
        vector: torch.Tensor,
        strength: float,
        start: int,
        end: int | None,
        reference: ConceptVectors,
    ) -> tuple[InjectionSpec, float, float]:
        """An injection of `vector` at the configured dose, with its norm and norm ratio.

        Returns:
            (spec, injected_norm, norm_ratio).

        """
        norm = float(vector.float().norm())
        scale = (
            strength
            if self.config.dose == "raw"
            else strength * reference.median_residual_norm / max(norm, 1e-12)
        )
        spec = InjectionSpec(layer=layer, vector=vector, strength=scale, start=start, end=end)
        injected = abs(scale) * norm
        return spec, injected, injected / reference.median_residual_norm

    # -- running ----------------------------------------------------------------------------
    def assigned(self, trials: Sequence[Trial]) -> list[Trial]:
        """The trials this job runs: all of them, or this shard's groups (`sharding.py`)."""
        unique = list({t.trial_id: t for t in trials}.values())
        if self.shard is None:
            return unique
        from introspection_bench.sharding import select_trials

        mine = select_trials(unique, self.shard)
        if unique:
            self.assignments[unique[0].protocol] = (
                [t.trial_id for t in unique],
                [t.trial_id for t in mine],
            )
        return mine

    def run(self, trials: Sequence[Trial]) -> list[TrialRecord]:
        """Generate and grade every trial (of this shard) not yet finished; return their records."""
        return self.run_many([trials])[0]

    def run_many(self, groups: Sequence[Sequence[Trial]]) -> list[list[TrialRecord]]:
        """`run` for several protocols' trials at once: one pooled decode, one grading pass.

        Each group (one protocol's trials) is assigned to this shard on its own; the pending
        trials of all groups go to the decoder together, so the batches mix protocols. A
        trial's tokens depend only on its own prompt, injection and seed, so its record is
        the one it gets run alone.

        Returns:
            The records of each group, in the order of `groups`.

        """
        assigned = [self.assigned(trials) for trials in groups]
        pending = [t for unique in assigned for t in unique if t.trial_id not in self.store]
        if pending:
            self._generate(pending)
        ungraded = [t for unique in assigned for t in unique if self._needs_grading(t)]
        if ungraded:
            self._grade(ungraded)
        return [
            [r for t in unique if (r := self.store.get(t.trial_id)) is not None]
            for unique in assigned
        ]

    def _needs_grading(self, trial: Trial) -> bool:
        record = self.store.get(trial.trial_id)
        # Ungraded, or graded with a judge failure (no criteria): grade (again).
        return trial.grade is not None and record is not None and not record.grades

    def _generate(self, trials: Sequence[Trial]) -> None:
        by_id = {t.trial_id: t for t in trials}
        requests = [
            GenerationRequest(
                t.trial_id, t.prompt.input_ids, t.injection, t.max_new_tokens, t.temperature, t.seed
            )
            for t in trials
        ]

        def write(completion: Completion) -> None:
            self.store.append([self._record(by_id[completion.trial_id], completion)])

        self._decoder.generate(requests, on_complete=write)

    def _grade(self, trials: Sequence[Trial]) -> None:
        records = [self.store.get(t.trial_id) for t in trials]
        requests = [
            replace(t.grade, response=r.completion)
            for t, r in zip(trials, records, strict=True)
            if t.grade and r
        ]
        grades = self.judge.grade_many(requests)
        judge_name = f"{self.judge.name}@{self.judge.version}"
        self.store.append(
            _graded(r, g, judge_name) for r, g in zip(records, grades, strict=True) if r
        )

    def _record(self, trial: Trial, completion: Completion) -> TrialRecord:
        return TrialRecord(
            trial_id=trial.trial_id,
            protocol=trial.protocol,
            protocol_version=_protocol_version(trial),
            condition=trial.condition,
            concept=trial.concept,
            layer=trial.layer,
            strength=trial.strength,
            injected_norm=trial.injected_norm,
            norm_ratio=trial.norm_ratio,
            seed=trial.seed,
            model=self.lm.spec,
            model_fingerprint=self.lm.fingerprint,
            chat_template_hash=self.lm.chat_template_hash,
            stimuli_hash=self.stimuli.sha256,
            prompt=trial.prompt.text,
            prompt_sha256=trial.prompt.sha256,
            completion=completion.text,
            stop_reason=completion.stop_reason,
            judge="",
            extra={k: v for k, v in trial.extra.items() if k != "protocol_version"},
        )

    def measured_record(self, trial: Trial, extra: dict[str, Any]) -> TrialRecord:
        """A record for a forward-only trial (no completion, no grade), stored at once."""
        record = replace(
            self._record(trial, Completion(trial.trial_id, (), "", "teacher_forced")),
            judge="none",
            extra={**trial.extra, **extra},
        )
        self.store.append([record])
        return record


def _protocol_version(trial: Trial) -> str:
    """VERSION of the protocol module that built `trial` (an explicit `extra` value wins)."""
    if "protocol_version" in trial.extra:
        return str(trial.extra["protocol_version"])
    from introspection_bench.runner import PROTOCOL_MODULES  # runner imports this module

    versions = {module.NAME: module.VERSION for module in PROTOCOL_MODULES}
    return str(versions.get(trial.protocol, "1"))


def _graded(record: TrialRecord, grade: Grade, judge_name: str) -> TrialRecord:
    return replace(
        record,
        grades=dict(grade.criteria),
        evidence=dict(grade.evidence),
        judge=grade.judge or judge_name,
        error=grade.error,
    )
