"""pytest plugin: options, the session-scoped benchmark fixture, verdicts, summary writing.

Heavy imports (torch, transformers) happen inside fixtures so `pytest --help` stays fast.
Verdicts ride on each test report's `user_properties`, so they reach the xdist controller, which
alone merges record shards and writes `summary.json`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from introspection_bench.errors import IntrospectionBenchError

RUN_CONFIG = pytest.StashKey["Any"]()
VERDICTS = pytest.StashKey[list]()
REPORT_DIR = pytest.StashKey[Path]()
STARTED = pytest.StashKey[float]()
BASELINE = pytest.StashKey[Mapping[str, Any]]()
SHARD = pytest.StashKey["Any"]()
DEVICE_MAP = pytest.StashKey["Any"]()
SHARD_ENTRIES = pytest.StashKey[list]()
COLLECTED = pytest.StashKey[list]()
"""Protocols of every collected suite test, before -k/-m (their declarations are recorded)."""
SELECTED = pytest.StashKey[list]()
"""Protocols of the suite tests that run (pooled into one decode)."""
VERDICT_PROPERTY = "introspection_bench_verdict"
SHARD_PROPERTY = "introspection_bench_shard"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the suite's options in one group."""
    group = parser.getgroup(
        "introspection-bench", "introspection-bench: concept-injection protocols"
    )
    group.addoption(
        "--model",
        dest="ib_model",
        default="default",
        help="default | hf:<id> | local:<dir> | gguf:<file>",
    )
    group.addoption(
        "--profile",
        dest="ib_profile",
        default="smoke",
        help="smoke | standard | paper (default: smoke)",
    )
    group.addoption(
        "--layers",
        dest="ib_layers",
        default=None,
        help="comma list of depth fractions (0.67) or indices (20)",
    )
    group.addoption(
        "--strengths", dest="ib_strengths", default=None, help="comma list of injection strengths"
    )
    group.addoption(
        "--dose",
        dest="ib_dose",
        default=None,
        help="raw (strength x raw vector, the paper) | norm (x median residual norm)",
    )
    group.addoption(
        "--vector-method",
        dest="ib_vector_method",
        default=None,
        help="last_token (paper) | word_token",
    )
    group.addoption(
        "--trials", dest="ib_trials", type=int, default=None, help="trials per condition and cell"
    )
    group.addoption(
        "--seed",
        dest="ib_seed",
        type=int,
        default=0,
        help="run seed; trial seeds derive from it and trial ids",
    )
    group.addoption("--device", dest="ib_device", default="auto", help="auto | cpu | cuda | cuda:N")
    group.addoption(
        "--device-map",
        dest="ib_device_map",
        default=None,
        help="accelerate placement of one model over devices: auto | balanced | sequential | "
        "<map.json> (module -> device, 'cpu'/'disk' offload)",
    )
    group.addoption("--dtype", dest="ib_dtype", default="auto", help="auto | bf16 | fp16 | fp32")
    group.addoption(
        "--batch-size",
        dest="ib_batch_size",
        type=int,
        default=None,
        help="rows in flight (default: automatic)",
    )
    group.addoption(
        "--judge",
        dest="ib_judge",
        default="rule",
        help="rule | openai:<model> | hf:<id> | local:<dir>",
    )
    group.addoption(
        "--judge-url",
        dest="ib_judge_url",
        default=None,
        help="base URL of an OpenAI-compatible judge endpoint",
    )
    group.addoption(
        "--report-dir",
        dest="ib_report_dir",
        default=None,
        help="run directory (default: reports/<model>-<profile>-<config hash>)",
    )
    group.addoption(
        "--baseline",
        dest="ib_baseline",
        default=None,
        help="summary.json of a previous run: fail on significant regressions",
    )
    group.addoption(
        "--executor",
        dest="ib_executor",
        default=None,
        help="local (default) | ray | ray:ADDRESS: decode trial groups on Ray actors",
    )
    group.addoption(
        "--shard",
        dest="ib_shard",
        default=None,
        help="I/N: run only this job's slice of the trials (cluster arrays); verdicts come from "
        "`introspection-bench merge` of all N shards",
    )
    from introspection_bench.suite import add_ini_twins

    add_ini_twins(parser, group)  # every option also settable in [tool.pytest.ini_options]


def pytest_configure(config: pytest.Config) -> None:
    """Build the run configuration from the options; bad values are usage errors."""
    from introspection_bench.profiles import parse_layers, parse_strengths, profile_settings
    from introspection_bench.session import RunConfig

    options = config.option
    if not hasattr(options, "ib_model"):
        return
    from introspection_bench.protocols.registry import BUILTIN_NAMES
    from introspection_bench.suite import apply_ini, register_markers

    apply_ini(config)  # the command line wins over the ini file
    register_markers(config, BUILTIN_NAMES)
    try:
        settings = profile_settings(options.ib_profile)
        if options.ib_layers:
            settings["layers"] = parse_layers(options.ib_layers)
        if options.ib_strengths:
            settings["strengths"] = parse_strengths(options.ib_strengths)
            settings["protocol_strengths"] = {}  # the user's list applies to every protocol
        for name in ("dose", "vector_method", "trials"):
            value = getattr(options, f"ib_{name}")
            if value is not None:
                settings[name] = value
        run = RunConfig(
            model=options.ib_model,
            profile=options.ib_profile,
            seed=options.ib_seed,
            judge=options.ib_judge,
            device=options.ib_device,
            dtype=options.ib_dtype,
            batch_size=options.ib_batch_size,
            **settings,
        )
    except IntrospectionBenchError as error:
        raise pytest.UsageError(str(error)) from error
    config.stash[RUN_CONFIG] = run
    try:
        from introspection_bench.placement import parse_device_map

        config.stash[DEVICE_MAP] = parse_device_map(options.ib_device_map)
        from introspection_bench.executors import ExecutorSpec

        ExecutorSpec.parse(options.ib_executor)  # a bad value or missing ray fails at once
    except IntrospectionBenchError as error:
        raise pytest.UsageError(str(error)) from error
    if options.ib_shard:
        from introspection_bench.sharding import Shard

        try:
            config.stash[SHARD] = Shard.parse(options.ib_shard)
        except IntrospectionBenchError as error:
            raise pytest.UsageError(str(error)) from error
        config.stash[SHARD_ENTRIES] = []
    if options.ib_baseline:
        from introspection_bench.regression import check_baseline_complete
        from introspection_bench.summary import load_summary

        try:
            config.stash[BASELINE] = load_summary(Path(options.ib_baseline))
            check_baseline_complete(config.stash[BASELINE])
        except IntrospectionBenchError as error:
            raise pytest.UsageError(f"--baseline: {error}") from error
    config.stash[VERDICTS] = []
    config.pluginmanager.register(_VerdictCollector(config), "introspection-bench-verdicts")
    name = options.ib_report_dir or f"reports/{_slug(run.model)}-{run.profile}-{run.key_hash()}"
    config.stash[REPORT_DIR] = Path(name)


@pytest.hookimpl(tryfirst=True)  # before `-m` selects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark suite tests with their protocol (`-m prefill`) and group them for `--dist loadgroup`."""
    from introspection_bench.suite import mark_suite_items, suite_protocols

    mark_suite_items(config, items)
    config.stash[COLLECTED] = suite_protocols(items)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Remember the protocols of the tests that will run (after -k/-m)."""
    from introspection_bench.suite import suite_protocols

    session.config.stash[SELECTED] = suite_protocols(session.items)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[-60:]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `cell` over the sweep (`layer_cell` over layers only)."""
    from introspection_bench.protocols.base import Cell

    run = metafunc.config.stash.get(RUN_CONFIG, None)
    if run is None:
        return
    if "cell" in metafunc.fixturenames:
        from introspection_bench.suite import strengths_of

        strengths = strengths_of(run, metafunc.function.__name__.removeprefix("test_"))
        cells = [Cell(layer, strength) for layer in run.layers for strength in strengths]
        metafunc.parametrize("cell", cells, ids=[c.label for c in cells])
    if "layer_cell" in metafunc.fixturenames:
        cells = [Cell(layer, None) for layer in run.layers]
        metafunc.parametrize("layer_cell", cells, ids=[c.label for c in cells])
    if "baseline_metric" in metafunc.fixturenames:
        baseline = metafunc.config.stash.get(BASELINE, None)
        if baseline is None:
            off = pytest.mark.skip(
                reason="no --baseline summary.json given: regression checks are off"
            )
            metafunc.parametrize(
                "baseline_metric", [pytest.param(None, marks=off)], ids=["no-baseline"]
            )
        else:
            keys = [metric["key"] for metric in baseline["metrics"]]
            metafunc.parametrize("baseline_metric", keys, ids=keys)


@pytest.fixture(scope="session")
def bench(request: pytest.FixtureRequest) -> Any:
    """The run: model, stimuli, judge and records, loaded once per session (per xdist worker)."""
    from introspection_bench.protocols.registry import is_builtin
    from introspection_bench.runner import SuiteRunner

    config = request.config
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    collected = config.stash.get(COLLECTED, [])
    try:
        runner = SuiteRunner.start(
            _worker_config(config.stash[RUN_CONFIG], worker),
            config.stash[REPORT_DIR],
            worker=worker,
            judge_url=config.option.ib_judge_url,
            thresholds_path=Path(str(config.rootpath)) / "suites" / "thresholds.toml",
            shard=config.stash.get(SHARD, None),
            device_map=config.stash.get(DEVICE_MAP, None),
            executor=config.option.ib_executor,
            declared=[p for p in collected if not is_builtin(p.NAME)],
        )
    except IntrospectionBenchError as error:
        pytest.exit(f"introspection-bench: {error}", returncode=4)
    if worker is None:  # under xdist each worker runs only its groups: no pooling there
        runner.pool = [p.NAME for p in config.stash.get(SELECTED, [])]
    return runner


def _worker_config(run: Any, worker: str | None) -> Any:
    """Under xdist with `--device cuda`, worker gwI loads its model on cuda:I."""
    if worker is None:
        return run
    import dataclasses

    import torch

    from introspection_bench.placement import worker_device

    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = worker_device(run.device, worker, int(count) if count else None, n_gpus)
    return dataclasses.replace(run, device=device)


@pytest.fixture
def check(bench: Any, request: pytest.FixtureRequest) -> Any:
    """`check(test, cell)`: run the protocol if needed, then pass or fail on its verdict."""
    from introspection_bench.protocols.base import Cell

    def run_check(test: str, cell: Any = None, *, fail: bool = True) -> Any:
        shard = request.config.stash.get(SHARD, None)
        if shard is not None:
            entry = bench.shard_entry(test, cell or Cell(None, None))
            request.node.user_properties.append((SHARD_PROPERTY, entry))
            pytest.skip(
                f"shard {shard.label}: {entry['n_records']} {entry['protocol']} trials recorded; "
                "verdicts come from `introspection-bench merge` of every shard"
            )
        problem: str | None
        try:
            verdict = bench.verdict(test, cell or Cell(None, None))
        except IntrospectionBenchError as error:  # e.g. every trial failed to grade
            problem = f"introspection-bench: {error}"
        else:
            problem = None
        if problem is not None:  # failed outside the handler: one line, no exception chain
            pytest.fail(problem, pytrace=False)
        request.node.user_properties.append((VERDICT_PROPERTY, bench.verdict_dict(verdict)))
        if fail and not verdict.passed:
            pytest.fail(verdict.message, pytrace=False)
        return verdict

    return run_check


@pytest.fixture
def verdict(check: Any) -> Any:
    """`verdict(test, cell)`: the decided test as a `suite.Result`; assert it `== PASS`."""
    from introspection_bench.suite import Result

    def decide(test: str, cell: Any = None) -> Any:
        return Result(check(test, cell, fail=False))

    return decide


def pytest_assertrepr_compare(config: pytest.Config, op: str, left: Any, right: Any) -> Any:
    """`assert verdict(test, cell) == PASS` fails with the verdict's one line."""
    from introspection_bench.suite import assertrepr_compare

    return assertrepr_compare(op, left, right)


@pytest.fixture(scope="session")
def regression_comparison(bench: Any, request: pytest.FixtureRequest) -> Any:
    """The current run's metrics compared to the --baseline summary (computed once per session)."""
    from introspection_bench.regression import compare_run

    return compare_run(bench, request.config.stash[BASELINE], float(bench.thresholds["alpha"]))


@pytest.fixture
def regression(request: pytest.FixtureRequest) -> Any:
    """`regression(key)`: fail when the baseline metric `key` regressed significantly."""

    def run_check(key: str) -> None:
        if SHARD in request.config.stash:
            pytest.skip(
                "a shard has no verdicts: compare the merged run (`introspection-bench compare`)"
            )
        try:
            comparison = request.getfixturevalue("regression_comparison")
            row = comparison.row(key)
        except IntrospectionBenchError as error:
            pytest.fail(f"--baseline: {error}", pytrace=False)
        if row.current is None or not row.method:
            pytest.skip(
                f"{key}: not measured in this run (sweep or tests differ from the baseline)"
            )
        if row.failed:
            pytest.fail(row.message(), pytrace=False)

    return run_check


class _VerdictCollector:
    """Collects verdicts from test reports (these reach the xdist controller)."""

    def __init__(self, config: pytest.Config):
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for key, value in report.user_properties:
            if key == VERDICT_PROPERTY:
                self.config.stash[VERDICTS].append(value)
            elif key == SHARD_PROPERTY:
                self.config.stash[SHARD_ENTRIES].append(value)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Remember when the run started (for the summary)."""
    session.config.stash[STARTED] = time.time()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """On the controller: merge record shards and write summary.json (and the reports)."""
    config = session.config
    if SHARD in config.stash and not hasattr(config, "workerinput"):
        if config.stash[SHARD_ENTRIES]:
            _write_shard_manifest(config)
        return
    if (
        RUN_CONFIG not in config.stash
        or hasattr(config, "workerinput")
        or not config.stash[VERDICTS]
    ):
        return
    from introspection_bench.runner import write_summary

    elapsed = time.time() - config.stash.get(STARTED, time.time())
    # Read into a local: inside the call mypy would infer the key's type from the parameter's.
    verdicts = config.stash[VERDICTS]
    write_summary(
        config.stash[RUN_CONFIG],
        config.stash[REPORT_DIR],
        verdicts,
        elapsed_s=elapsed,
    )


def _write_shard_manifest(config: pytest.Config) -> None:
    from introspection_bench.sharding import write_manifest

    run = config.stash[RUN_CONFIG]
    # Read into a local: inside the call mypy would infer the key's type from the parameter's.
    entries = config.stash[SHARD_ENTRIES]
    write_manifest(
        config.stash[SHARD],
        config.stash[REPORT_DIR],
        config=run.key() | {"device": run.device, "batch_size": run.batch_size},
        entries=entries,
        elapsed_s=time.time() - config.stash.get(STARTED, time.time()),
    )


def _trial_errors(report_dir: Path) -> str | None:
    """One line on the run's failed trials (e.g. an unreachable judge: its URL and the fix)."""
    from introspection_bench.records import RecordStore
    from introspection_bench.summary import describe_errors

    try:
        return describe_errors(RecordStore(report_dir).all())
    except IntrospectionBenchError as error:
        return str(error)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """One section: every verdict line and where the report is."""
    if SHARD in config.stash and config.stash[SHARD_ENTRIES]:
        terminalreporter.section("introspection-bench shard")
        shard = config.stash[SHARD]
        terminalreporter.write_line(
            f"shard {shard.label}: records and {shard.manifest_path(config.stash[REPORT_DIR])}; "
            "fold all shards with `introspection-bench merge DIR... --out RUN_DIR`"
        )
        return
    if RUN_CONFIG not in config.stash:
        return
    failed = _trial_errors(config.stash[REPORT_DIR])
    if failed:
        terminalreporter.section("introspection-bench trial errors")
        terminalreporter.write_line(failed)
    if not config.stash[VERDICTS]:
        return
    terminalreporter.section("introspection-bench verdicts")
    for verdict in config.stash[VERDICTS]:
        terminalreporter.write_line(verdict["message"])
    report_dir = config.stash[REPORT_DIR]
    terminalreporter.write_line(
        f"records and summary: {report_dir / 'trials.jsonl'}, {report_dir / 'summary.json'}"
    )
    if (report_dir / "report.html").is_file():
        terminalreporter.write_line(f"report: {report_dir / 'report.html'}")
