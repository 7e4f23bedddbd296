"""summary.json: the packaged schema, validation on write and read, flat metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from synthetic_runs import cached_run

from introspection_bench.errors import RecordsError
from introspection_bench.summary import SCHEMA_PATH, flat_metrics, load_summary, save_summary


@pytest.fixture(scope="module")
def run() -> Path:
    return cached_run(model="one-layer", layers=(0.5,), strengths=(1.0, 2.0), trials=4)


def test_schema_ships_in_the_package() -> None:
    assert (
        SCHEMA_PATH.parent.name == "data"
        and SCHEMA_PATH.parent.parent.name == "introspection_bench"
    )
    assert json.loads(SCHEMA_PATH.read_text())["$schema"].endswith("2020-12/schema")


def test_written_summary_has_identity_versions_and_flat_metrics(run: Path) -> None:
    summary = load_summary(run)
    assert summary["schema_version"] == "1.2"
    assert summary["complete"] is True and summary["incomplete"] == []
    identity = summary["identity"]
    assert {"model_fingerprint", "chat_template_hash", "stimuli_hash", "judge"} <= set(identity)
    assert (
        "introspection-bench" in summary["versions"]
        and "git" in summary
        and summary["config"]["trials"] == 4
    )
    assert (
        summary["protocols"] == {p: "1" for p in summary["protocols"]}
        and len(summary["protocols"]) == 6
    )
    for metric in summary["metrics"]:
        assert {"name", "k", "n", "interval", "params"} <= set(metric)
    keys = [m["key"] for m in summary["metrics"]]
    assert keys == sorted(set(keys)), "one entry per metric, sorted by key"


def test_shared_control_is_listed_once_with_merged_params(run: Path) -> None:
    summary = load_summary(run)
    control = [
        m for m in summary["metrics"] if m["key"] == "injected_thought.false_positive[control]"
    ]
    assert len(control) == 1
    in_verdicts = [
        m for v in summary["verdicts"] for m in v["metrics"] if m["condition"] == "control"
    ]
    assert len(in_verdicts) > 1
    random = next(m for m in summary["metrics"] if m["condition"] == "random_vector")
    assert "p_value" in random["params"]  # from the random_vector verdict, not the detection one


def test_version_1_0_summary_is_read_with_derived_metrics(run: Path, tmp_path: Path) -> None:
    data = json.loads((run / "summary.json").read_text())
    expected = data.pop("metrics")
    del data["protocols"]
    data["schema_version"] = "1.0"
    (tmp_path / "summary.json").write_text(json.dumps(data))
    assert load_summary(tmp_path)["metrics"] == expected == flat_metrics(data["verdicts"])
    data["schema_version"] = "1.1"
    (tmp_path / "summary.json").write_text(json.dumps(data))
    with pytest.raises(RecordsError, match="'protocols' is a required property"):
        load_summary(tmp_path)


def test_summary_failing_the_schema_is_kept_aside_not_written(run: Path, tmp_path: Path) -> None:
    summary = load_summary(run)
    summary["metrics"][0]["k"] = -1
    with pytest.raises(RecordsError, match=r"metrics/0/k.*kept as .*summary\.invalid\.json"):
        save_summary(summary, tmp_path)
    assert not (tmp_path / "summary.json").exists()
    assert json.loads((tmp_path / "summary.invalid.json").read_text())["metrics"][0]["k"] == -1


def test_unreadable_summary_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(RecordsError, match="summary.json is not valid JSON"):
        load_summary(tmp_path)


def _rebuild(run: Path, keep_verdict: Any, change_record: Any) -> dict[str, Any]:
    """build_summary of a run's records and verdicts, after dropping / editing some."""
    from dataclasses import replace

    from introspection_bench.records import RecordStore
    from introspection_bench.session import RunConfig
    from introspection_bench.summary import build_summary

    summary = load_summary(run)
    verdicts = [
        v | {"identity": summary["identity"]} for v in summary["verdicts"] if keep_verdict(v)
    ]
    records = [replace(r, **change_record(r)) for r in RecordStore(run).all()]
    return build_summary(RunConfig.from_key(summary["config"]), records, verdicts, elapsed_s=1.0)


def test_partial_run_is_marked_incomplete_with_reasons(run: Path) -> None:
    def gaps(record: Any) -> dict[str, Any]:
        if record.trial_id == "prefill/none/0":
            return {"grades": {}}  # generated, never graded (Ctrl-C between the phases)
        if record.trial_id == "yes_bias/none/1":
            return {"grades": {}, "error": "judge unreachable"}
        return {}

    summary = _rebuild(run, lambda v: v["test"] != "prefill", gaps)
    assert summary["complete"] is False
    missing, ungraded, failed = summary["incomplete"]
    assert missing.startswith("2 test(s) without a verdict: prefill[layer=0.5,strength=1]")
    assert ungraded == "1 trial(s) generated but not graded (e.g. prefill/none/0)"
    assert failed.startswith("1 of ") and failed.endswith(
        "trial(s) with errors (yes_bias); first, yes_bias/none/1: judge unreachable"
    )


def test_rebuilt_full_run_is_complete(run: Path) -> None:
    summary = _rebuild(run, lambda v: True, lambda r: {})
    assert summary["complete"] is True and summary["incomplete"] == []


def test_completeness_is_required_from_1_2_and_unknown_before(run: Path, tmp_path: Path) -> None:
    data = json.loads((run / "summary.json").read_text())
    del data["complete"], data["incomplete"]
    (tmp_path / "summary.json").write_text(json.dumps(data))
    with pytest.raises(RecordsError, match="'complete' is a required property"):
        load_summary(tmp_path)
    data["schema_version"] = "1.1"
    (tmp_path / "summary.json").write_text(json.dumps(data))
    old = load_summary(tmp_path)
    assert old["complete"] is None and "completeness not recorded" in old["incomplete"][0]


def test_git_hash_never_writes_the_index(tmp_path: Path) -> None:
    """`git status` without GIT_OPTIONAL_LOCKS=0 rewrites .git/index under index.lock; a run
    interrupted there leaves the lock, and the user's next commit fails."""
    import os
    import subprocess

    from introspection_bench.summary import git_hash

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "a.txt").write_text("one\n")
    git("add", "a.txt")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "one")
    index = tmp_path / ".git" / "index"
    before = index.stat().st_mtime_ns
    # Same content, new mtime: a locking `git status` would refresh the index and rewrite it.
    os.utime(tmp_path / "a.txt", ns=(before + 10**9, before + 10**9))
    commit = git_hash(tmp_path)
    assert commit is not None and not commit.endswith("-dirty")
    assert index.stat().st_mtime_ns == before
    assert not (tmp_path / ".git" / "index.lock").exists()
