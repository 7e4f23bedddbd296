"""`introspection-bench` subcommands run as a subprocess on real run directories."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from synthetic_runs import cached_run, edit_summary

from introspection_bench.records import RecordStore

ENTRY = Path(sys.executable).parent / "introspection-bench"


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [str(ENTRY)] if ENTRY.exists() else [sys.executable, "-m", "introspection_bench.cli"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [*command, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def good() -> Path:
    return cached_run(model="good", skill=0.9, false_positive=0.05)


def test_compare_identical_runs_exits_0(good: Path) -> None:
    done = cli("compare", good / "summary.json", good / "summary.json")
    assert done.returncode == 0, done.stderr
    assert "0 significant regression(s) over 48 compared metric(s)" in done.stdout
    assert done.stdout.splitlines()[0].split() == [
        "metric",
        "baseline",
        "current",
        "difference",
        "[95%",
        "CI]",
        "Holm",
        "p",
        "status",
    ]


def test_compare_regressed_run_exits_1_with_messages(good: Path) -> None:
    worse = cached_run(model="worse", skill=0.0, false_positive=0.9)
    done = cli("compare", good, worse)
    assert done.returncode == 1
    assert re.search(
        r"^REGRESSION injected_thought.success\[injected\]@L\d+,s\d: "
        r"baseline \d/8 .* -> current 0/8 ",
        done.stdout,
        re.M,
    )


def test_compare_refuses_other_stimuli_with_exit_2(good: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(good, other)
    edit_summary(other, lambda s: s["identity"].update(stimuli_hash="f" * 64))
    done = cli("compare", good, other / "summary.json")
    assert done.returncode == 2
    assert "refusing to compare runs on different stimuli" in done.stderr


def test_compare_refuses_another_grader_version_unless_allowed(good: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(good, other)
    edit_summary(other, lambda s: s.update(graders=["none", "rule@2"]))
    done = cli("compare", good, other)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert (
        "refusing to compare runs graded by different grader versions: baseline rule@1, "
        "current rule@2"
        in line
        and "--allow-grader-change" in line
    )
    done = cli("compare", good, other, "--allow-grader-change")
    assert done.returncode == 0, done.stderr
    assert (
        "note: WARNING: graded by different grader versions: baseline rule@1, current "
        "rule@2; differences may come from the grader, not the model" in done.stdout
    )


def test_validate(good: Path, tmp_path: Path) -> None:
    done = cli("validate", good)
    assert done.returncode == 0 and "valid (" in done.stdout
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)

    def tamper(summary: dict[str, Any]) -> None:
        metric = next(m for m in summary["metrics"] if m["name"] == "yes_bias.affirmative")
        metric["k"] = metric["n"]

    edit_summary(bad, tamper)
    done = cli("validate", bad)
    assert done.returncode == 1 and "yes_bias.affirmative" in done.stdout


def test_report_writes_html_and_markdown(good: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(good, run)
    done = cli("report", run, "--no-judge-accuracy")
    assert done.returncode == 0, done.stderr
    assert (run / "report.html").stat().st_size > 10_000 and (run / "report.md").is_file()
    assert f"report: {run / 'report.html'}" in done.stdout


def test_leaderboard_lists_rejections(good: Path, tmp_path: Path) -> None:
    incomplete = tmp_path / "incomplete"
    shutil.copytree(good, incomplete)
    (incomplete / "trials.jsonl").unlink()
    done = cli("leaderboard", good, incomplete, "--out", tmp_path / "site")
    assert done.returncode == 0, done.stderr
    assert (
        "1 accepted, 1 rejected" in done.stdout
        and "no trials.jsonl beside the summary" in done.stdout
    )
    data = json.loads((tmp_path / "site" / "leaderboard.json").read_text())
    assert [row["model"] for row in data["accepted"]] == ["good"]


def test_merge_folds_worker_shards(good: Path, tmp_path: Path) -> None:
    run = tmp_path / "sharded"
    run.mkdir()
    records = sorted(RecordStore(good).all(), key=lambda r: r.trial_id)
    RecordStore(run, "gw0").append(records[::2])
    RecordStore(run, "gw1").append(records[1::2])
    done = cli("merge", run)
    assert done.returncode == 0, done.stderr
    assert (
        f"merged 2 file(s) (trials.gw0.jsonl, trials.gw1.jsonl) into {run / 'trials.jsonl'}"
        in done.stdout
    )
    assert sorted(p.name for p in run.iterdir()) == ["trials.jsonl"]
    assert [r.trial_id for r in RecordStore(run).all()] == [r.trial_id for r in records]


def test_missing_run_dir_is_exit_2(tmp_path: Path) -> None:
    done = cli("report", tmp_path / "nothing")
    assert done.returncode == 2 and "cannot read summary" in done.stderr


def test_a_non_object_trials_line_is_one_line_per_command(good: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    with (bad / "trials.jsonl").open("a") as handle:
        handle.write("[1, 2]\n")
    message = f"{bad / 'trials.jsonl'}:377 holds a JSON list, not a trial record object"
    for command, status in (("report", 2), ("merge", 2), ("validate", 1)):
        done = cli(command, bad)
        assert done.returncode == status, (command, done.stderr)
        assert message in done.stdout + done.stderr, command
        assert "Traceback" not in done.stderr, command
    done = cli("leaderboard", good, bad, "--out", tmp_path / "site")
    assert done.returncode == 0 and "1 accepted, 1 rejected" in done.stdout
    assert f"rejected {bad}:\n  - trials: {message}" in done.stdout
