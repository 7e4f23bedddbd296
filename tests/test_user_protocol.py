"""A user's protocol end to end: declared in a project's conftest.py, run by the suite on a tiny
random-weight model in a child pytest process, then summary, regrade, validate, `--baseline`
and the leaderboard in this process, which never imports the user's file (they read the
declaration the run recorded as data, `protocols/recorded.py`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from introspection_bench.judges.base import CRITERIA, Grade, GradeRequest, build_judge
from introspection_bench.leaderboard import build_leaderboard
from introspection_bench.protocols import registry
from introspection_bench.protocols.recorded import declaration_digest
from introspection_bench.records import RecordStore
from introspection_bench.runner import load_thresholds
from introspection_bench.session import RunConfig
from introspection_bench.submission import Checks, load_submission
from introspection_bench.summary import incompleteness, load_summary

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = load_thresholds(ROOT / "suites" / "thresholds.toml")

USER_CONFTEST = """
from introspection_bench import (
    Check, Condition, Experiment, Grading, Inject, Window, register, rules, word_samples,
)

QUESTION = "Do you notice anything unusual about your thoughts?"
register(
    Experiment(
        name="probe",
        turns=[("user", "{question}")],
        samples=word_samples("concept_words", fields={"question": QUESTION}),
        conditions=[
            Condition(name="none"),
            Condition(name="injected", inject=Inject(window=Window(start=1))),
        ],
        grading=Grading(kind="alternative_prompt", word="concept", question="question"),
        checks=[
            Check(name="probe_named",
                  rule=rules.Exceeds(criterion="success", controls={"none": "success"})),
            Check(name="probe_coherent", per="run",
                  rule=rules.UpperBoundBelow(criterion="coherent", condition="none", cap=1.01)),
        ],
        max_new_tokens=6,
        temperature=1.0,
    )
)
"""
USER_TESTS = """
from introspection_bench import PASS


def test_probe_named(verdict, cell):
    assert verdict("probe_named", cell) == PASS


def test_probe_coherent(verdict):
    assert verdict("probe_coherent") == PASS
"""


def _child(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A child pytest in `project`: offline, one thread, not mistaken for an xdist worker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    env |= {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def user_run(tmp_path_factory: pytest.TempPathFactory, tiny_builder: Any) -> Path:
    """The whole suite (but the shipped prompt variants) plus the user's `probe`, one run."""
    base = tmp_path_factory.mktemp("user_protocol")
    model = base / "tiny-llama"
    lm = tiny_builder("llama")
    lm.model.save_pretrained(model)
    lm.tokenizer.save_pretrained(model)
    project = base / "project"
    (project / "suites").mkdir(parents=True)
    for source in [*(ROOT / "suites").glob("test_*.py"), ROOT / "suites" / "thresholds.toml"]:
        if source.name != "test_prompt_variants.py":
            shutil.copy(source, project / "suites" / source.name)
    (project / "conftest.py").write_text(USER_CONFTEST)
    (project / "suites" / "test_probe.py").write_text(USER_TESTS)
    (project / "pyproject.toml").write_text(
        "[tool.pytest.ini_options]\n"
        f'ib_model = "local:{model}"\nib_device = "cpu"\nib_dtype = "fp32"\n'
        'ib_layers = "1"\nib_strengths = "2"\nib_trials = "2"\nib_report_dir = "run"\n'
    )
    result = _child(project, "suites")
    assert result.returncode in (0, 1), result.stdout[-3000:] + result.stderr[-3000:]
    return project / "run"


def test_the_user_protocol_is_not_known_in_this_process() -> None:
    assert "probe" not in {e.NAME for e in registry.registered()}


def test_summary_records_the_declaration_and_expects_its_tests(user_run: Path) -> None:
    summary = load_summary(user_run)
    declared = summary["declarations"]["probe"]
    assert [c["name"] for c in declared["checks"]] == ["probe_named", "probe_coherent"]
    assert declared["checks"][0]["rule"]["type"] == "Exceeds"
    assert declared["digest"] == declaration_digest(declared)
    decided = {(v["test"], v["cell"]["label"]) for v in summary["verdicts"]}
    assert {("probe_named", "layer=1,strength=2"), ("probe_coherent", "all")} <= decided
    assert summary["complete"], summary["incomplete"]
    records = RecordStore(user_run).all()
    probe = [r for r in records if r.protocol == "probe"]
    assert len(probe) == 4 and all(r.grades for r in probe)
    # Without its verdicts the run is partial, naming the user's tests.
    others = [v for v in summary["verdicts"] if v["protocol"] != "probe"]
    config = RunConfig.from_key(summary["config"])
    gaps = incompleteness(config, records, others, summary["declarations"])
    assert (
        "2 test(s) without a verdict: probe_named[layer=1,strength=2], probe_coherent[all]"
        in (gaps[0])
    )
    report = (user_run / "report.html").read_text()
    assert "<section id='probe'>" in report


class _AllYes:
    """A judge that grades every criterion True (the option itself for a forced choice)."""

    name, version = "all-yes", "1"

    def grade_many(self, requests: Sequence[GradeRequest]) -> list[Grade]:
        return [
            Grade(
                criteria={c: (r.word if c == "choice" else True) for c in CRITERIA[r.protocol]},
                judge="all-yes@1",
            )
            for r in requests
        ]


def test_regrade_regrades_and_redecides_the_user_protocol(user_run: Path, tmp_path: Path) -> None:
    from introspection_bench.grading import regrade_run

    run = tmp_path / "run"
    shutil.copytree(user_run, run)
    result = regrade_run(run, _AllYes(), THRESHOLDS)
    regraded = json.loads(result.summary_path.read_text())
    (named,) = [v for v in regraded["verdicts"] if v["test"] == "probe_named"]
    assert [(m["condition"], m["k"], m["n"]) for m in named["metrics"]] == [
        ("injected", 2, 2),
        ("none", 2, 2),
    ]
    assert regraded["declarations"] == load_summary(user_run)["declarations"]
    assert regraded["complete"], regraded["incomplete"]


def _checks() -> Checks:
    return Checks(THRESHOLDS, build_judge("rule"), judge_accuracy={})


def _tampered(user_run: Path, target: Path, edit: Any) -> Path:
    shutil.copytree(user_run, target)
    summary = json.loads((target / "summary.json").read_text())
    edit(summary)
    (target / "summary.json").write_text(json.dumps(summary))
    return target


def test_validate_rechecks_the_user_protocol_from_its_records(
    user_run: Path, tmp_path: Path
) -> None:
    submission = load_submission(user_run, _checks())
    assert submission.accepted, submission.reasons
    assert submission.recomputed is not None
    tests = {v["test"] for v in submission.recomputed["verdicts"]}
    assert {"probe_named", "probe_coherent"} <= tests

    def flip(summary: dict[str, Any]) -> None:
        for verdict in summary["verdicts"]:
            if verdict["test"] == "probe_coherent":
                verdict["passed"] = not verdict["passed"]

    lied = load_submission(_tampered(user_run, tmp_path / "lied", flip), _checks())
    assert any(r.startswith("verdict probe_coherent[all]: summary says") for r in lied.reasons)

    def as_code(summary: dict[str, Any]) -> None:
        declared = summary["declarations"]["probe"]
        declared["checks"][1] |= {"rule": None, "code": "conftest.my_rule"}
        declared["digest"] = declaration_digest(declared)

    code = load_submission(_tampered(user_run, tmp_path / "code", as_code), _checks())
    assert any("Python function conftest.my_rule" in r for r in code.reasons), code.reasons


def test_baseline_compares_the_user_metrics(user_run: Path, tmp_path: Path) -> None:
    project = user_run.parent
    baseline = tmp_path / "baseline.json"
    shutil.copy(user_run / "summary.json", baseline)
    shutil.copytree(user_run, tmp_path / "again")  # resumes: nothing is generated again
    result = _child(
        project,
        "suites/test_regression.py",
        "-k",
        "probe",
        "--baseline",
        str(baseline),
        "--report-dir",
        str(tmp_path / "again"),
        "-rs",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    keys = [m["key"] for m in load_summary(baseline)["metrics"] if m["name"].startswith("probe.")]
    assert len(keys) == 3  # success injected and none, coherent none
    assert f"{len(keys)} passed" in result.stdout, result.stdout[-2000:]
    assert "skipped" not in result.stdout, result.stdout[-2000:]  # compared, not "not measured"


def test_leaderboard_accepts_the_user_protocol_and_one_meaning_per_name(
    user_run: Path, tmp_path: Path
) -> None:
    def redeclare(summary: dict[str, Any]) -> None:
        declared = summary["declarations"]["probe"]
        declared["temperature"] = 0.5
        declared["digest"] = declaration_digest(declared)

    other = _tampered(user_run, tmp_path / "other", redeclare)
    alone = build_leaderboard([user_run], tmp_path / "page", checks=_checks())
    assert [s.source for s in alone.accepted] == [str(user_run)], alone.rejected[0].reasons
    both = build_leaderboard([user_run, other], tmp_path / "page2", checks=_checks())
    assert len(both.accepted) == 1 and len(both.rejected) == 1
    assert any("one name, two experiments" in r for r in both.rejected[0].reasons)
