"""`introspection-bench calibrate` end to end against a real OpenAI-compatible server.

The server is `transformers serve` of SmolLM2-135M (tests/servers.py), started once for this
module. SmolLM2 is a poor judge: the test checks that the command's numbers are right (each one
recomputed here from the per-row grades it writes, and those grades are the judge's own), not
that they are good. SmolLM2-135M almost never writes the FINAL ANSWERS block the parser reads,
so its rows are mostly judge errors; to exercise every confusion cell too, three rows have a
verdict in the judge's verdict cache beforehand (as after an earlier, interrupted calibration)
and only the other two are sent to the server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import SERVED_MODEL, JudgeServer

from introspection_bench.judges.accuracy import load_labelled_cases
from introspection_bench.judges.base import Grade, build_judge
from introspection_bench.judges.cache import VerdictCache
from introspection_bench.judges.prompts import PROMPT_VERSION, finish_criteria

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "grading" / "corpus"
#: Short corpus replies of three families, with yes and no labels on every criterion.
ROW_IDS = ("corpus-0076", "corpus-0276", "corpus-0174", "corpus-0288", "corpus-0222")
#: Verdicts cached before the command runs (row id -> asked criteria): a false yes, misses, and
#: agreements. The other rows are graded by the server.
SEEDED = {
    "corpus-0076": {"coherent": True, "affirms": True, "affirm_and_name": False},
    "corpus-0276": {"coherent": True, "affirms": False, "affirm_and_name": False},
    "corpus-0174": {"coherent": False, "affirms": False, "affirm_and_name": False},
}
CLI = Path(sys.executable).with_name("introspection-bench")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JudgeServer]:
    running = JudgeServer(tmp_path_factory.mktemp("calibrate-judge-server"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture()
def labels_file(tmp_path: Path) -> Path:
    lines = {}
    for split in ("dev", "test"):
        for line in (CORPUS / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
            row_id = json.loads(line)["id"]
            if row_id in ROW_IDS:
                lines[row_id] = line
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(lines[i] + "\n" for i in ROW_IDS), encoding="utf-8")
    return path


def _recount(rows: list[dict], criterion: str) -> dict[str, int]:
    counts = {"tp": 0, "fp": 0, "tn": 0, "fn": 0, "errors": 0}
    for row in rows:
        label = row["labels"].get(criterion)
        if not isinstance(label, bool):
            continue
        verdict = None if row["error"] else row["criteria"].get(criterion)
        if not isinstance(verdict, bool):
            counts["errors"] += 1
            continue
        counts[("t" if verdict == label else "f") + ("p" if verdict else "n")] += 1
    return counts


def _check_stats(stats: dict, rows: list[dict], criterion: str) -> None:
    counts = _recount(rows, criterion)
    errors = counts.pop("errors")
    tp, fp, tn, fn = counts["tp"], counts["fp"], counts["tn"], counts["fn"]
    judged = tp + fp + tn + fn
    assert stats["confusion"] == counts, criterion
    assert stats["errors"] == errors and stats["n"] == judged + errors, criterion
    assert stats["accuracy"] == pytest.approx((tp + tn) / (judged + errors))
    assert stats["false_yes_rate"] == (pytest.approx(fp / (fp + tn)) if fp + tn else None)
    assert stats["miss_rate"] == (pytest.approx(fn / (fn + tp)) if fn + tp else None)
    pairs = [
        (row["labels"][criterion], row["criteria"][criterion])
        for row in rows
        if isinstance(row["labels"].get(criterion), bool)
        and not row["error"]
        and isinstance(row["criteria"].get(criterion), bool)
    ]
    if not pairs:
        assert stats["kappa"] is None
        return
    observed = sum(a == b for a, b in pairs) / len(pairs)
    yes_label = sum(a for a, _ in pairs) / len(pairs)
    yes_judge = sum(b for _, b in pairs) / len(pairs)
    chance = yes_label * yes_judge + (1 - yes_label) * (1 - yes_judge)
    if chance < 1:
        assert stats["kappa"] == pytest.approx((observed - chance) / (1 - chance)), criterion
    else:
        assert stats["kappa"] == (1.0 if observed == 1 else 0.0)


def _requests_received(server: JudgeServer) -> int:
    # uvicorn's access log: one line per answered request (transformers' own request logging
    # depends on its verbosity, so it is not counted).
    return server.log.read_text(errors="replace").count('"POST /v1/chat/completions HTTP/1.1"')


def test_calibrate_an_openai_judge_end_to_end(
    server: JudgeServer, labels_file: Path, tmp_path: Path
) -> None:
    out, cache = tmp_path / "calibration.json", tmp_path / "cache"
    cases = load_labelled_cases(labels_file)
    judge = build_judge(
        f"openai:{SERVED_MODEL}", base_url=server.base_url, cache_dir=cache / "verdicts"
    )
    stored = VerdictCache(cache / "verdicts")
    for case in cases:
        if case.id in SEEDED:
            criteria = finish_criteria("injected_thought", SEEDED[case.id])
            grade = Grade(criteria=criteria, judge=judge.judge_id, raw="seeded by the test")
            stored.put(judge.cache_key(case.request), grade)
    sent_before = _requests_received(server)
    command = [
        str(CLI), "calibrate", "--judge", f"openai:{SERVED_MODEL}", "--judge-url",
        server.base_url, "--labels", str(labels_file), "--out", str(out),
        # One CPU-served answer can take a minute on busy cores: a timeout would retry it
        # while the server still works on it.
        "--judge-timeout", "600", "--judge-concurrency", "1",
    ]  # fmt: skip
    env = {**os.environ, "INTROSPECTION_BENCH_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stderr
    assert f"calibration written to {out}" in done.stdout
    assert _requests_received(server) - sent_before == len(ROW_IDS) - len(SEEDED)

    result = json.loads(out.read_text(encoding="utf-8"))
    rows = result["rows"]
    assert result["judge"] == judge.judge_id == f"openai:{SERVED_MODEL}@{PROMPT_VERSION}"
    assert result["n_cases"] == len(ROW_IDS)
    assert [r["id"] for r in rows] == list(ROW_IDS)
    assert [r["labels"] for r in rows] == [dict(c.labels) for c in cases]
    assert result["n_errors"] == sum(1 for r in rows if r["error"])
    for row, case in zip(rows, cases, strict=True):
        cached = stored.get(judge.cache_key(case.request))
        if row["error"]:  # the server answered, in a form the parser cannot read
            assert row["error"].startswith("unparseable judge output") and row["raw"], row
            assert row["criteria"] == {} and cached is None, "a failure is never a 'no'"
        else:  # the judge's own verdict: the seeded one, or the server's, now cached
            assert cached is not None and dict(cached.criteria) == row["criteria"], row["id"]
            if case.id in SEEDED:
                assert cached.raw == "seeded by the test"

    criteria = {c for r in rows for c, v in r["labels"].items() if isinstance(v, bool)}
    assert set(result["criteria"]) == criteria
    for criterion in criteria:
        _check_stats(result["criteria"][criterion], rows, criterion)
    cells = {k for s in result["criteria"].values() for k, v in s["confusion"].items() if v}
    assert cells == {"tp", "fp", "tn", "fn"}, "every confusion cell is exercised"
    families = {r["family"] for r in rows}
    assert set(result["by_family"]) == families == {"qwen", "llama", "mistral"}
    for family in families:
        in_family = [r for r in rows if r["family"] == family]
        for criterion, stats in result["by_family"][family].items():
            _check_stats(stats, in_family, criterion)
    assert "affirms" in done.stdout and "kappa" in done.stdout


def test_calibrate_refuses_judge_options_for_a_rule_judge(labels_file: Path) -> None:
    done = subprocess.run(
        [str(CLI), "calibrate", "--labels", str(labels_file), "--judge-timeout", "5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--judge-timeout is for OpenAI-compatible judges" in lines[0]
