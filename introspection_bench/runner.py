"""The suite's run.

Which protocol module owns which test, run each protocol once, write the summary.

The pytest plugin is a thin layer over this module; `cli.py` uses it too (regrade, report).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from introspection_bench.errors import IntrospectionBenchError, RecordsError
from introspection_bench.models import resolve_layer_index
from introspection_bench.protocols import (
    alternative_prompt,
    injected_thought,
    intentional_control,
    prefill,
    thought_vs_text,
    yes_bias,
)
from introspection_bench.protocols.base import Cell, Verdict
from introspection_bench.protocols.recorded import (
    read_declarations,
    rebuild_all,
    write_declarations,
)
from introspection_bench.protocols.registry import owner, registered
from introspection_bench.records import RecordStore, TrialRecord
from introspection_bench.session import BenchSession, RunConfig
from introspection_bench.sharding import Shard
from introspection_bench.summary import describe_errors
from introspection_bench.thresholds import load_thresholds

PROTOCOL_MODULES: tuple[ModuleType, ...] = (
    injected_thought,
    thought_vs_text,
    prefill,
    intentional_control,
    yes_bias,
    alternative_prompt,
)
#: test name -> the built-in protocol module that builds its trials and decides it
#: (`protocols.registry.owner` also finds registered experiments).
TEST_OWNERS: dict[str, ModuleType] = {
    test: module for module in PROTOCOL_MODULES for test in module.TESTS
}


class SuiteRunner:
    """Runs each protocol once per session and turns its records into verdicts."""

    def __init__(self, session: BenchSession, thresholds: Mapping[str, Any]):
        self.session = session
        self.thresholds = thresholds
        self._records: dict[str, list[TrialRecord]] = {}
        self._described: set[str] = set()
        self.pool: list[str] = []
        """Protocols generated together with the first one a test needs (the selected tests'
        protocols; the plugin sets it outside xdist)."""

    @classmethod
    def start(
        cls,
        config: RunConfig,
        report_dir: Path,
        *,
        worker: str | None,
        judge_url: str | None,
        thresholds_path: Path,
        shard: Shard | None = None,
        device_map: str | dict[str, Any] | None = None,
        executor: str | None = None,
        declared: Sequence[Any] = (),
    ) -> SuiteRunner:
        """Load model, stimuli and judge; claim the report dir for this configuration.

        With a `shard`, only its slice of each protocol's trials runs, into its own files;
        a `device_map` spreads the model over devices (`placement.py`); `executor`
        `ray[:ADDRESS]` decodes on Ray actors (`executors.py`). The `declared` experiments
        (the user protocols whose tests were collected) are recorded as data in the run's
        `protocols.json`, so finished-run tools decide them without their files.
        """
        from introspection_bench.judges.base import build_judge
        from introspection_bench.models import load_model
        from introspection_bench.stimuli import load_stimuli

        thresholds = load_thresholds(thresholds_path)
        store = RecordStore(report_dir, shard.worker(worker) if shard else worker)
        stimuli = load_stimuli()
        judge_options = {"base_url": judge_url} if judge_url else {}
        judge = build_judge(config.judge, **judge_options)
        lm = load_model(
            config.model, device=config.device, dtype=config.dtype, device_map=device_map
        )
        for layer in config.layers:
            lm.resolve_layer(layer)  # a bad --layers value fails here, once, with a clear message
        # Claimed only now that model, dtype, layers and judge are known good: a failed start
        # writes nothing, so the corrected command can run in the same --report-dir.
        # Records are only valid for these protocol versions and stimuli: resuming across a
        # version bump would silently mix old and new trials.
        versions = {m.NAME: m.VERSION for m in (*PROTOCOL_MODULES, *registered())}
        store.claim(config.key() | {"protocol_versions": versions, "stimuli_hash": stimuli.sha256})
        write_declarations(report_dir, declared)
        decoder = _remote_decoder(executor, config, lm.fingerprint)
        return cls(BenchSession(config, lm, stimuli, judge, store, shard, decoder), thresholds)

    def records(self, module: ModuleType) -> list[TrialRecord]:
        """Every record of a protocol module, generating and grading what is missing (once).

        The first protocol needed brings every protocol of `pool` with it: their trials share
        one decode (`prepare`).
        """
        if module.NAME not in self._records:
            self.prepare([module.NAME, *self.pool], first=module)
        return self._records[module.NAME]

    def prepare(self, names: Iterable[str], first: Any = None) -> None:
        """Generate and grade the protocols `names` not yet run, in one pooled decode.

        Forward-only protocols (`run(session)`, Exp 4) measure on their own.
        """
        known = {p.NAME: p for p in (*PROTOCOL_MODULES, *registered())}
        if first is not None:
            known[first.NAME] = first
        # Sorted by name: the batches (and so, at fp32 near-ties, the text) depend only on which
        # protocols are pooled, not on which test asked first or on a caller's set order.
        todo = [known[n] for n in sorted(set(names)) if n in known and n not in self._records]
        pooled = []
        for protocol in todo:
            measure = getattr(protocol, "run", None)
            if measure is not None:
                self._records[protocol.NAME] = measure(self.session)
            else:
                pooled.append(protocol)
        groups = self.session.run_many([p.build_trials(self.session) for p in pooled])
        for protocol, records in zip(pooled, groups, strict=True):
            self._records[protocol.NAME] = records

    def verdict(self, test: str, cell: Cell) -> Verdict:
        """The verdict of one test at one cell.

        Raises:
            ConfigError: For an unknown test name, listing the known ones.

        """
        module = owner(test)
        records = self.records(module)
        failed = describe_errors(records)
        try:
            verdict = module.evaluate(self.session, records, test, cell, self.thresholds)
        except IntrospectionBenchError as error:
            if failed is None:
                raise
            # e.g. an unreachable judge leaves no graded trial: say so, not "n_treat=0".
            raise RecordsError(
                f"{test}[{cell.label}] cannot be decided: {failed} ({error})"
            ) from error
        if failed is None:
            return verdict
        return replace(verdict, message=f"{verdict.message} | decided without them: {failed}")

    def shard_entry(self, test: str, cell: Cell) -> dict[str, Any]:
        """Run this shard's trials of `test`'s protocol; the test's entry in the shard manifest.

        The first entry of each protocol carries its full trial order and this shard's ids.

        Raises:
            ConfigError: For an unknown test name, listing the known ones.

        """
        module = owner(test)
        records = self.records(module)
        entry: dict[str, Any] = {
            "test": test,
            "cell": {"layer": cell.layer, "strength": cell.strength, "label": cell.label},
            "protocol": module.NAME,
            "identity": self.identity(),
            "n_records": len(records),
        }
        if module.NAME not in self._described:
            every, mine = self.session.assignments.get(module.NAME, ([], []))
            entry |= {"trial_ids": every, "assigned": mine}
            self._described.add(module.NAME)
        return entry

    def verdict_dict(self, verdict: Verdict) -> dict[str, Any]:
        """A verdict as plain JSON data, with the run's identity (for the summary)."""
        return verdict_data(verdict, self.identity())

    def identity(self) -> dict[str, Any]:
        """Model, template, stimuli and judge identity of this run."""
        lm, session = self.session.lm, self.session
        return {
            "model": lm.spec,
            "model_fingerprint": lm.fingerprint,
            "chat_template_hash": lm.chat_template_hash,
            "n_layers": lm.n_layers,
            "stimuli_hash": session.stimuli.sha256,
            "judge": f"{session.judge.name}@{session.judge.version}",
            "thresholds_version": str(self.thresholds.get("version")),
            "dtype": str(lm.dtype).removeprefix("torch."),
            "device": str(lm.device),
        }


def _remote_decoder(executor: str | None, config: RunConfig, fingerprint: str) -> Any:
    """A `RayDecoder` for `--executor ray[:ADDRESS]`, None for the local decoder."""
    from introspection_bench.executors import ExecutorSpec, ModelRecipe, RayDecoder

    spec = ExecutorSpec.parse(executor)
    if spec.kind == "local":
        return None
    recipe = ModelRecipe(config.model, config.device, config.dtype, config.batch_size)
    return RayDecoder(recipe, address=spec.address, fingerprint=fingerprint)


def verdict_data(
    verdict: Verdict, identity: Mapping[str, Any], protocol: Any = None
) -> dict[str, Any]:
    """A verdict as plain JSON data with its protocol and the run's identity (for the summary).

    `protocol` is the one that decided it (default: the test's owner in this process).
    """
    data = asdict(verdict)
    data["cell"] = {
        "layer": verdict.cell.layer,
        "strength": verdict.cell.strength,
        "label": verdict.cell.label,
    }
    decided_by = protocol or owner(verdict.test)
    data["protocol"] = decided_by.NAME
    data["protocol_version"] = decided_by.VERSION
    data["identity"] = dict(identity)
    return data


class RecordedRun:
    """What a protocol's `evaluate` reads from its session, for a finished run (no model)."""

    def __init__(self, config: RunConfig, n_layers: int) -> None:
        """Bind the run's configuration and its model's number of decoder blocks."""
        self.config = config
        self.n_layers = n_layers

    def layer_index(self, layer: float | int) -> int:
        """Block index of a configured layer (fraction or index), as `BenchSession` resolves it."""
        return resolve_layer_index(layer, self.n_layers, self.config.model)


def verdicts_from_records(
    config: RunConfig,
    records: Sequence[TrialRecord],
    n_layers: int,
    thresholds: Mapping[str, Any],
    *,
    tests: Sequence[tuple[str, Cell]],
    identity: Mapping[str, Any],
    declarations: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Recompute verdicts from a finished run's records with each protocol's `evaluate`.

    Nothing is generated or graded: this is what `SuiteRunner.verdict` decides, given the
    records (e.g. re-graded by another judge). Declared protocols are decided by the rules
    the run recorded (`declarations`, rebuilt by `protocols.recorded`), never by importing
    the file that declared them.

    Args:
        config: The run's configuration (layers, strengths, seed).
        records: Every record of the run, all protocols.
        n_layers: Decoder blocks of the run's model (resolves depth fractions).
        thresholds: The pass rules (suites/thresholds.toml).
        tests: (test name, cell) pairs to decide, e.g. those of the run's summary.
        identity: The run's identity, attached to every verdict.
        declarations: The run's declared protocols (`summary["declarations"]`).

    Returns:
        The verdicts as plain JSON data (`verdict_data`), in the order of `tests`.

    Raises:
        ConfigError: For an unknown test name (listing the known ones), a declaration that
            cannot be rebuilt, or a declared test decided by code the record cannot carry.

    """
    # `evaluate` reads only `config` and `layer_index` from its session.
    session = cast("BenchSession", RecordedRun(config, n_layers))
    recorded = rebuild_all(declarations)
    by_protocol: dict[str, list[TrialRecord]] = {}
    for record in records:
        by_protocol.setdefault(record.protocol, []).append(record)
    verdicts = []
    for test, cell in tests:
        module = owner(test, recorded)
        verdict = module.evaluate(session, by_protocol.get(module.NAME, []), test, cell, thresholds)
        verdicts.append(verdict_data(verdict, identity, module))
    return verdicts


def write_summary(
    config: RunConfig, report_dir: Path, verdicts: Sequence[Mapping[str, Any]], *, elapsed_s: float
) -> Path:
    """Merge record shards and write `summary.json` (and the reports, when available)."""
    store = RecordStore(report_dir)
    store.merge_shards()
    return write_merged_summary(
        config,
        report_dir,
        store.all(),
        verdicts,
        elapsed_s=elapsed_s,
        declarations=read_declarations(report_dir),
    )


def write_merged_summary(
    config: RunConfig,
    report_dir: Path,
    records: Sequence[TrialRecord],
    verdicts: Sequence[Mapping[str, Any]],
    *,
    elapsed_s: float,
    judge_accuracy: bool = True,
    declarations: Mapping[str, Any] | None = None,
) -> Path:
    """Write `summary.json` (and the reports, when available) of records already merged.

    `judge_accuracy=False` reports only a cached measurement of the rule judge;
    `declarations` are the run's declared protocols (`protocols.recorded`).
    """
    from introspection_bench.summary import build_summary, save_summary

    summary = build_summary(
        config, records, verdicts, elapsed_s=elapsed_s, declarations=declarations
    )
    path = save_summary(summary, report_dir)
    try:
        from introspection_bench.report import write_reports
    except ImportError:
        return path
    write_reports(report_dir, judge_accuracy=judge_accuracy)
    return path
