"""Leaderboard: submission validation and the sortable static page (headless Chromium)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from synthetic_runs import cached_run, chromium, dump_dom, edit_summary

from introspection_bench.leaderboard import build_leaderboard, load_submission

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
        r"thought_vs_text\.naming\[think\]@L\d+,s\d: summary \d+/8, trials\.jsonl gives \d+/8",
        reasons[0],
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
