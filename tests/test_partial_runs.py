"""Partial runs say why: failed trials (an unreachable judge) reach each test and the summary."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from synthetic_runs import THRESHOLDS, cached_run, layer_index

from introspection_bench.errors import IntrospectionBenchError, RecordsError
from introspection_bench.protocols.base import Cell
from introspection_bench.records import RecordStore
from introspection_bench.runner import SuiteRunner
from introspection_bench.session import RunConfig

pytest_plugins = ["pytester"]
THRESHOLDS_PATH = Path(__file__).resolve().parents[1] / "suites" / "thresholds.toml"

UNREACHABLE = (
    "judge endpoint http://127.0.0.1:9/v1 unreachable after 2 retries (APIConnectionError: "
    "Connection error.); start the server there or point base_url / --judge-url at it"
)


def _failed_records(run: Path) -> list:
    """Every injected_thought record of a synthetic run, as an unreachable judge leaves it."""
    return [
        replace(r, grades={}, error=UNREACHABLE, judge="openai:x@1")
        for r in RecordStore(run).all()
        if r.protocol == "injected_thought"
    ]


def test_verdict_names_the_judge_error_not_an_empty_rate() -> None:
    run = cached_run(model="good", skill=0.9)
    session = SimpleNamespace(
        config=RunConfig(layers=(0.5, 0.67), strengths=(1.0, 2.0)), layer_index=layer_index
    )
    runner = SuiteRunner(session, THRESHOLDS)  # type: ignore[arg-type]
    runner._records["injected_thought"] = _failed_records(run)
    with pytest.raises(RecordsError) as error:
        runner.verdict("injected_thought", Cell(0.5, 1.0))
    text = str(error.value)
    assert text.startswith(
        "injected_thought[layer=0.5,strength=1] cannot be decided: 72 of 72 trial(s) with errors"
    )
    assert UNREACHABLE in text and "run trials first" in text  # the original error is kept last
    control = runner.verdict("control", Cell(None, None))  # 0/0: decided, and says why
    assert not control.passed and control.message.endswith(
        f"| decided without them: 72 of 72 trial(s) with errors (injected_thought); "
        f"first, injected_thought/control/0: {UNREACHABLE}"
    )


_CONFTEST = """
import pytest
from introspection_bench.errors import IntrospectionBenchError, RecordsError


class FailingBench:
    def verdict(self, test, cell):
        raise RecordsError(f"{{test}}[{{cell.label}}] cannot be decided: " + {message!r})


@pytest.fixture(scope="session")
def bench():
    return FailingBench()
"""


def test_each_test_and_the_terminal_summary_show_the_judge_error(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    report_dir = tmp_path / "run"
    RecordStore(report_dir).append(_failed_records(cached_run(model="good", skill=0.9))[:5])
    pytester.makeconftest(_CONFTEST.format(message="5 of 5 trial(s) with errors; " + UNREACHABLE))
    pytester.makepyfile(
        test_suite="def test_control(check):\n    check('control')\n"
        "def test_other(check):\n    check('injected_thought')\n"
    )
    result = pytester.runpytest("--report-dir", str(report_dir), "-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*introspection-bench: control[[]all[]] cannot be decided: 5 of 5 trial(s) with "
            "errors; judge endpoint http://127.0.0.1:9/v1 unreachable*--judge-url*",
            "*introspection-bench trial errors*",
            "5 of 5 trial(s) with errors (injected_thought); first, injected_thought/*: "
            "judge endpoint http://127.0.0.1:9/v1 unreachable*; start the server there*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert "During handling of the above exception" not in result.stdout.str()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, tiny_builder: Any) -> Path:
    """A tiny random llama saved with save_pretrained (a `local:` model)."""
    target = tmp_path_factory.mktemp("tiny") / "llama"
    lm = tiny_builder("llama")
    lm.model.save_pretrained(target)
    lm.tokenizer.save_pretrained(target)
    return target


def test_a_failed_start_writes_nothing_so_the_corrected_rerun_works(
    tiny_dir: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    start = {"worker": None, "judge_url": None, "thresholds_path": THRESHOLDS_PATH}
    model = f"local:{tiny_dir}"
    bad = [
        (RunConfig(model="local:/no/such/dir", device="cpu"), "has no config.json"),
        (RunConfig(model=model, device="cpu", dtype="fp8"), "unknown dtype 'fp8'"),
        (RunConfig(model=model, device="cpu", layers=(99,)), "layer 99 is out of range"),
    ]
    for config, message in bad:
        with pytest.raises(IntrospectionBenchError, match=re.escape(message)):
            SuiteRunner.start(config, run, **start)
        assert not (run / "run.json").exists(), f"{message}: the failed start claimed {run}"
    SuiteRunner.start(RunConfig(model=model, device="cpu", dtype="fp32", layers=(1,)), run, **start)
    assert json.loads((run / "run.json").read_text())["layers"] == [1]


def test_negative_strength_subtracts_the_same_dose() -> None:
    """`--strengths -1` injects -1 x the +1 vector: same recorded norm and ratio, sign flipped."""
    import torch

    from introspection_bench.session import BenchSession

    vector = torch.tensor([3.0, 4.0])
    reference = SimpleNamespace(median_residual_norm=10.0)
    for dose in ("raw", "norm"):
        session = SimpleNamespace(config=RunConfig(dose=dose))
        plus, norm_plus, ratio_plus = BenchSession.injection(
            session, 2, vector, 1.0, 1, None, reference
        )  # type: ignore[arg-type]
        minus, norm_minus, ratio_minus = BenchSession.injection(
            session, 2, vector, -1.0, 1, None, reference
        )  # type: ignore[arg-type]
        assert minus.strength == -plus.strength != 0
        assert (norm_minus, ratio_minus) == (norm_plus, ratio_plus)


def test_a_non_object_trials_line_stops_the_suite_with_one_line(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "trials.jsonl").write_text('"just a string"\n')
    start = {"worker": None, "judge_url": None, "thresholds_path": THRESHOLDS_PATH}
    with pytest.raises(RecordsError, match=r"trials\.jsonl:1 holds a JSON str, not a trial record"):
        SuiteRunner.start(RunConfig(device="cpu"), run, **start)
