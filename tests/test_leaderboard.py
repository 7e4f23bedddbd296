"""Leaderboard: submission validation and the sortable static page (headless Chromium)."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from synthetic_runs import cached_run, chromium, dump_dom, edit_summary, rewrite_run

from introspection_bench.leaderboard import build_leaderboard, load_submission
from introspection_bench.records import TrialRecord

#: model -> (skill, false-positive rate) of its synthetic run.
MODELS = {"good": (0.9, 0.05), "beta": (0.3, 0.4), "gamma": (0.6, 0.15)}


def _copy(name: str, tmp_path: Path, **kwargs: Any) -> Path:
    target = tmp_path / name
    shutil.copytree(cached_run(model=name, **kwargs), target)
    return target


def _first(summary: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in summary["metrics"] if m["name"] == name)


def test_valid_submission_is_accepted() -> None:
    submission = load_submission(cached_run(model="good", skill=0.9))
    assert submission.accepted, submission.reasons
    assert len(submission.records) == submission.summary["n_trials"]


def test_summary_path_is_accepted_too() -> None:
    assert load_submission(cached_run(model="good", skill=0.9) / "summary.json").accepted


def test_inflated_rate_is_rejected(tmp_path: Path) -> None:
    run = _copy("good", tmp_path, skill=0.9)

    def inflate(summary: dict[str, Any]) -> None:
        metric = _first(summary, "thought_vs_text.naming")
        metric["k"] = metric["n"] - metric["k"] or 1

    edit_summary(run, inflate)
    reasons = load_submission(run).reasons
    assert len(reasons) == 1 and re.match(
        r"thought_vs_text\.naming\[think\]@L\d+,s\d: summary \d+/8 = .*, "
        r"trials\.jsonl gives \d+/8 = .* \(differs in k\)$",
        reasons[0],
    )


def _best_success(summary: dict[str, Any]) -> dict[str, Any]:
    cells = [m for m in summary["metrics"] if m["name"] == "injected_thought.success"]
    return max(cells, key=lambda m: (m["interval"]["low"], m["estimate"]))


def test_edited_estimate_and_interval_with_counts_untouched_are_rejected(tmp_path: Path) -> None:
    run = _copy("beta", tmp_path, skill=0.3, false_positive=0.4)
    key = _best_success(json.loads((run / "summary.json").read_text()))["key"]

    def inflate(summary: dict[str, Any]) -> None:
        metric = next(m for m in summary["metrics"] if m["key"] == key)
        metric.update(k=0, estimate=0.9)
        metric["interval"].update(low=0.8, high=0.99)

    edit_summary(run, inflate)
    (reason,) = [r for r in load_submission(run).reasons if r.startswith(key)]
    assert "summary 0/8 = 0.9 [0.8, 0.99], trials.jsonl gives" in reason
    assert reason.endswith("(differs in estimate, high, k, low)")
    runs = [
        cached_run(model=name, skill=sk, false_positive=fp) for name, (sk, fp) in MODELS.items()
    ]
    board = build_leaderboard([*runs, run], tmp_path / "site")
    assert [s.source for s in board.rejected] == [str(run)]
    assert "90.0% [80.0%, 99.0%]" not in board.html_path.read_text()


def test_every_verdict_set_to_passed_is_rejected(tmp_path: Path) -> None:
    run = _copy("beta", tmp_path, skill=0.3, false_positive=0.4)
    failed = [
        v for v in json.loads((run / "summary.json").read_text())["verdicts"] if not v["passed"]
    ]
    assert failed
    edit_summary(run, lambda s: [v.update(passed=True) for v in s["verdicts"]])
    reasons = load_submission(run).reasons
    first = failed[0]
    assert (
        f"verdict {first['test']}[{first['cell']['label']}]: summary says PASS, "
        "trials.jsonl with thresholds version 1 gives FAIL"
    ) in reasons
    assert len(reasons) <= 6  # listed up to 5, then "... and N more mismatches"


def test_verdicts_are_recomputed_with_the_pinned_thresholds(tmp_path: Path) -> None:
    run = _copy("good", tmp_path, skill=0.9)
    edit_summary(run, lambda s: s["identity"].update(thresholds_version="0-lenient"))
    assert (
        "decided under thresholds version 0-lenient; this leaderboard pins version 1 "
        "(suites/thresholds.toml)"
    ) in load_submission(run).reasons


def _renamed(record: TrialRecord) -> TrialRecord:
    return replace(record, model="renamed", model_fingerprint="fp-renamed")


def test_same_run_under_another_identity_is_rejected(tmp_path: Path) -> None:
    original = cached_run(model="good", skill=0.9)
    edited = _copy("good", tmp_path, skill=0.9)
    edit_summary(edited, lambda s: s["identity"].update(model_fingerprint="f" * 64))
    assert "records carry model fingerprint fp-good, the summary ffffffffffff" in (
        load_submission(edited).reasons
    )
    renamed = tmp_path / "renamed"
    shutil.copytree(original, renamed)
    rewrite_run(renamed, _renamed)
    edit_summary(
        renamed, lambda s: s["identity"].update(model="renamed", model_fingerprint="fp-renamed")
    )
    assert load_submission(renamed).accepted  # valid on its own: only the comparison finds it
    other = cached_run(model="gamma", skill=0.6, false_positive=0.15)
    board = build_leaderboard([original, renamed, other], tmp_path / "site")
    assert [s.source for s in board.accepted] == [str(other)]
    by_source = {s.source: s.reasons for s in board.rejected}
    assert by_source[str(renamed)] == [
        f"same trial content as {original} (376 of 376 records identical), submitted as model "
        "good (fingerprint fp-good): one run under two identities"
    ]
    assert "submitted as model renamed (fingerprint fp-renamed)" in by_source[str(original)][0]
    assert "fp-gamma" in board.html_path.read_text()  # fingerprints are shown


def test_grades_flipped_consistently_with_the_counts_are_rejected(tmp_path: Path) -> None:
    run = _copy("beta", tmp_path, skill=0.3, false_positive=0.4)

    def claim_success(record: TrialRecord) -> TrialRecord:
        if record.condition != "injected" or record.protocol != "injected_thought":
            return record
        grades = dict(record.grades, affirms=True, affirm_and_name=True, success=True)
        return replace(record, grades=grades | {"coherent": True})

    rewrite_run(run, claim_success)
    reasons = load_submission(run).reasons
    assert len(reasons) >= 1 and all(
        r.startswith("re-graded 328 sampled completions") for r in reasons
    )
    assert any(
        re.search(r"success disagrees on \d+/\d+ = .* above the judge's measured error", r)
        for r in reasons
    )
    assert load_submission(cached_run(model="beta", skill=0.3, false_positive=0.4)).accepted


def test_incomplete_run_is_rejected(tmp_path: Path) -> None:
    run = _copy("good", tmp_path, skill=0.9)
    rewrite_run(run, lambda r: replace(r, grades={}) if r.trial_id == "prefill/none/3" else r)
    (reason,) = load_submission(run).reasons
    assert reason == ("incomplete run: 1 trial(s) generated but not graded (e.g. prefill/none/3)")


def test_a_non_object_line_rejects_that_submission_only(tmp_path: Path) -> None:
    bad = _copy("good", tmp_path, skill=0.9)
    with (bad / "trials.jsonl").open("a") as handle:
        handle.write("[1, 2]\n")
    others = [
        cached_run(model=n, skill=sk, false_positive=fp)
        for n, (sk, fp) in MODELS.items()
        if n != "good"
    ]
    board = build_leaderboard([bad, *others], tmp_path / "site")
    assert len(board.accepted) == 2 and board.html_path.is_file()
    (rejected,) = board.rejected
    (reason,) = rejected.reasons
    assert (
        reason.startswith("trials: ") and "holds a JSON list, not a trial record object" in reason
    )


def test_tampered_cosine_mean_is_rejected(tmp_path: Path) -> None:
    run = _copy("good", tmp_path, skill=0.9)
    edit_summary(
        run, lambda s: _first(s, "intentional_control.think_minus_dont").update(estimate=0.5)
    )
    assert any("intentional_control.think_minus_dont" in r for r in load_submission(run).reasons)


def test_other_stimuli_are_rejected(tmp_path: Path) -> None:
    run = tmp_path / "other"
    shutil.copytree(
        cached_run(model="other-stimuli", stimuli_hash="a" * 64, trials=4, layers=(0.5,)), run
    )
    reasons = load_submission(run).reasons
    assert any("is not the pinned paper_stimuli.json" in r for r in reasons)


def test_missing_controls_and_trials_are_rejected(tmp_path: Path) -> None:
    run = _copy("good", tmp_path, skill=0.9)

    def drop_random_vector(summary: dict[str, Any]) -> None:
        summary["verdicts"] = [v for v in summary["verdicts"] if v["test"] != "random_vector"]
        summary["metrics"] = [m for m in summary["metrics"] if m["condition"] != "random_vector"]
        for verdict in summary["verdicts"]:
            verdict["metrics"] = [
                m for m in verdict["metrics"] if m["condition"] != "random_vector"
            ]

    edit_summary(run, drop_random_vector)
    assert (
        "required controls missing: injected_thought.random_affirms[random_vector]"
        in load_submission(run).reasons
    )
    (run / "trials.jsonl").unlink()
    assert any("no trials.jsonl" in r for r in load_submission(run).reasons)


def test_schema_violation_is_rejected(tmp_path: Path) -> None:
    run = _copy("good", tmp_path, skill=0.9)
    edit_summary(run, lambda s: s["metrics"][0].pop("interval"))
    (reason,) = load_submission(run).reasons
    assert reason.startswith("schema:") and "interval" in reason


def test_other_judge_is_rejected(tmp_path: Path) -> None:
    runs = [
        cached_run(model=name, skill=skill, false_positive=fp)
        for name, (skill, fp) in MODELS.items()
    ]
    other = tmp_path / "llm-graded"
    shutil.copytree(
        cached_run(model="llm-graded", judge="openai:gpt-4o-mini@1", trials=4, layers=(0.5,)), other
    )
    board = build_leaderboard([*runs, other], tmp_path / "board")
    assert board.judge == "rule@1" and len(board.accepted) == 3
    (rejected,) = board.rejected
    assert rejected.reasons == ["graded by openai:gpt-4o-mini@1; this leaderboard uses rule@1"]


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("board")
    bad = base / "tampered"
    shutil.copytree(cached_run(model="tampered", skill=0.5), bad)
    edit_summary(bad, lambda s: _first(s, "injected_thought.success").update(k=8, estimate=1.0))
    runs = [
        cached_run(model=name, skill=skill, false_positive=fp)
        for name, (skill, fp) in MODELS.items()
    ]
    built = build_leaderboard([*runs, bad], base / "site")
    assert [s.source for s in built.rejected] == [str(bad)]
    return built.html_path


def test_page_json_lists_rows_and_rejections(board: Path) -> None:
    data = json.loads((board.parent / "leaderboard.json").read_text())
    assert {row["model"] for row in data["accepted"]} == set(MODELS)
    row = data["accepted"][0]
    assert {
        "success",
        "net",
        "false_positive",
        "thought_vs_text",
        "prefill",
        "intentional",
        "yes_bias",
    } <= set(row["values"])
    assert all(v["low"] <= v["estimate"] <= v["high"] for v in row["values"].values())
    assert data["rejected"][0]["reasons"][0].startswith("injected_thought.success[injected]@")


def _rows(dom: str) -> list[tuple[str, dict[str, float]]]:
    """(model, column key -> data-value) per body row, in page order."""
    keys = re.findall(r'<th data-key="(\w+)"', dom)
    body = dom.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = []
    for row in re.findall(r"<tr class=\"submission\">(.*?)</tr>", body, flags=re.S):
        values = re.findall(r'<td(?: data-value="([^"]*)")?>', row)
        model = values[0]
        numbers = {
            k: float(v) if v else float("nan")
            for k, v in zip(keys[1:-1], values[1:-1], strict=True)
        }
        rows.append((model, numbers))
    return rows


@pytest.mark.skipif(
    chromium() is None,
    reason="chromium not installed (apt-get install -y chromium): sorting not checked",
)
@pytest.mark.parametrize(
    ("column", "direction"),
    [("success", "desc"), ("success", "asc"), ("false_positive", None), ("model", None)],
)
def test_sorting_in_chromium(
    board: Path, tmp_path: Path, column: str, direction: str | None
) -> None:
    query = f"?sort={column}" + (f"&dir={direction}" if direction else "")
    dom = dump_dom(board.as_uri() + query, tmp_path / "profile")
    assert f'data-sorted-by="{column}"' in dom
    rows = _rows(dom)
    assert len(rows) == len(MODELS)
    if column == "model":
        assert 'aria-sort="ascending"' in dom  # text columns start ascending
        assert [m for m, _ in rows] == sorted(MODELS)
        return
    values = [numbers[column] for _, numbers in rows]
    descending = (
        direction != "asc"
    )  # a first click on a number column sorts best-first (descending)
    assert f'aria-sort="{"descending" if descending else "ascending"}"' in dom
    assert values == sorted(values, reverse=descending)
    assert len(set(values)) > 1, "sorting is not exercised when all values tie"
    assert "tampered" in dom.split('id="rejected"', 1)[1]


def test_a_merged_run_sorted_by_trial_id_still_validates(tmp_path: Path) -> None:
    """`merge` writes trials.jsonl sorted by trial id; the bootstrap must not depend on it."""
    from introspection_bench.records import RecordStore

    run = _copy("good", tmp_path, skill=0.9)
    RecordStore(run).merge_shards()
    assert load_submission(run).accepted, load_submission(run).reasons


def test_interrupted_run_is_rejected_as_incomplete_not_as_unreadable(tmp_path: Path) -> None:
    run = _copy("good", tmp_path, skill=0.9)
    trials = run / "trials.jsonl"
    kept = [line for line in trials.read_text().splitlines() if '"injected_thought"' not in line]
    trials.write_text("".join(line + "\n" for line in kept))  # interrupted before Exp 1 ran

    def partial(summary: dict[str, Any]) -> None:
        summary["verdicts"] = [
            v for v in summary["verdicts"] if v["protocol"] != "injected_thought"
        ]
        summary["metrics"] = [m for m in summary["metrics"] if m["protocol"] != "injected_thought"]
        summary.update(
            n_trials=len(kept), complete=False, incomplete=["9 test(s) without a verdict"]
        )

    edit_summary(run, partial)
    reasons = load_submission(run).reasons
    assert reasons[0].startswith("required controls missing: injected_thought.false_positive")
    assert reasons[1].startswith("incomplete run: 9 test(s) without a verdict: injected_thought[")
    assert not any("cannot recompute" in r or "missing from the summary" in r for r in reasons)
