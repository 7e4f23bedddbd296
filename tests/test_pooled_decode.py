"""Trials of several protocols share the decoder's batches, and get the records they get alone.

A tiny random-weight llama (fp32, CPU) decodes for real here; only the judge is a stub.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from introspection_bench import (
    Check,
    Condition,
    Experiment,
    Grading,
    Inject,
    Window,
    register,
    rules,
    word_samples,
)
from introspection_bench.generation import Completion, Decoder, GenerationRequest
from introspection_bench.judges.base import Grade, GradeRequest
from introspection_bench.models import LoadedModel
from introspection_bench.records import RecordStore
from introspection_bench.runner import SuiteRunner, load_thresholds
from introspection_bench.session import BenchSession, RunConfig
from introspection_bench.stimuli import load_stimuli

THRESHOLDS = load_thresholds(Path(__file__).resolve().parents[1] / "suites" / "thresholds.toml")


def _experiment(name: str, question: str, max_new_tokens: int) -> Experiment:
    return Experiment(
        name=name,
        turns=[("user", question)],
        samples=word_samples("concept_words", fields={"question": question}),
        conditions=[
            Condition(name="none"),
            Condition(name="injected", inject=Inject(window=Window(start=1))),
        ],
        grading=Grading(kind="alternative_prompt", word="concept", question="question"),
        checks=[
            Check(
                name=f"{name}_named",
                rule=rules.Exceeds(criterion="success", controls={"none": "success"}),
            )
        ],
        max_new_tokens=max_new_tokens,
        temperature=1.0,
    )


POOL_A = register(_experiment("pool_a", "What are you thinking about?", 6))
POOL_B = register(_experiment("pool_b", "Describe what is on your mind right now, please.", 9))


class _CountingJudge:
    name, version = "count", "1"

    def __init__(self) -> None:
        self.calls = 0

    def grade_many(self, requests: Sequence[GradeRequest]) -> list[Grade]:
        self.calls += 1
        return [Grade(criteria={"success": "a" in r.response}, judge="count@1") for r in requests]


class _CountingDecoder:
    """The real decoder, noting which protocols each `generate` call decodes."""

    def __init__(self, lm: LoadedModel) -> None:
        self.inner = Decoder(lm)
        self.calls: list[list[str]] = []

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        on_complete: Callable[[Completion], None] | None = None,
    ) -> list[Completion]:
        self.calls.append(sorted({r.trial_id.split("/", 1)[0] for r in requests}))
        return self.inner.generate(requests, on_complete)


def _session(lm: LoadedModel, run_dir: Path, decoder: Any = None) -> BenchSession:
    config = RunConfig(layers=(1,), strengths=(2.0,), trials=3, device="cpu", dtype="fp32")
    store = RecordStore(run_dir)
    return BenchSession(config, lm, load_stimuli(), _CountingJudge(), store, decoder=decoder)


def test_two_protocols_share_one_decode_and_get_their_records_alone(
    tiny_models: dict[str, LoadedModel], tmp_path: Path
) -> None:
    lm = tiny_models["llama"]
    decoder = _CountingDecoder(lm)
    session = _session(lm, tmp_path / "pooled", decoder)
    runner = SuiteRunner(session, THRESHOLDS)
    runner.pool = ["pool_a", "pool_b"]
    pooled_a = runner.records(POOL_A)  # the first protocol needed brings the pool with it
    assert decoder.calls == [["pool_a", "pool_b"]]
    assert session.judge.calls == 1
    pooled_b = runner.records(POOL_B)  # already generated: nothing decoded again
    assert decoder.calls == [["pool_a", "pool_b"]]
    assert {r.protocol for r in pooled_a} == {"pool_a"} and len(pooled_a) == 3 + 3
    assert {r.protocol for r in pooled_b} == {"pool_b"} and len(pooled_b) == 3 + 3
    for experiment, pooled in ((POOL_A, pooled_a), (POOL_B, pooled_b)):
        alone_session = _session(lm, tmp_path / experiment.NAME)
        alone = alone_session.run(experiment.build_trials(alone_session))
        assert [r.trial_id for r in pooled] == [r.trial_id for r in alone]
        assert pooled == alone  # byte for byte: prompt, completion, norms, grades
    assert len({r.completion for r in pooled_a + pooled_b}) > 1  # really sampled


def test_unpooled_runner_decodes_protocol_by_protocol(
    tiny_models: dict[str, LoadedModel], tmp_path: Path
) -> None:
    """Without a pool (e.g. an xdist worker), each protocol is decoded when a test needs it."""
    lm = tiny_models["llama"]
    decoder = _CountingDecoder(lm)
    runner = SuiteRunner(_session(lm, tmp_path / "run", decoder), THRESHOLDS)
    runner.records(POOL_A)
    runner.records(POOL_B)
    assert decoder.calls == [["pool_a"], ["pool_b"]]


class _OrderDecoder(_CountingDecoder):
    """The real decoder, noting the order in which trials reach it (which fixes the batches)."""

    def __init__(self, lm: LoadedModel) -> None:
        super().__init__(lm)
        self.order: list[str] = []

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        on_complete: Callable[[Completion], None] | None = None,
    ) -> list[Completion]:
        self.order += [r.trial_id for r in requests]
        return super().generate(requests, on_complete)


def test_pooled_batches_do_not_depend_on_which_test_asks_first(
    tiny_models: dict[str, LoadedModel], tmp_path: Path
) -> None:
    """A full run (first test: any) and a `--baseline` run (pool from a set) batch alike."""
    lm = tiny_models["llama"]
    orders = []
    for first, pool in ((POOL_A, ["pool_a", "pool_b"]), (POOL_B, ["pool_b", "pool_a"])):
        decoder = _OrderDecoder(lm)
        runner = SuiteRunner(_session(lm, tmp_path / first.NAME, decoder), THRESHOLDS)
        runner.pool = pool
        runner.records(first)
        orders.append(decoder.order)
    assert orders[0] == orders[1] and len(orders[0]) == 12
