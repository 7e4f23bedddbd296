"""report.html / report.md from a synthetic run directory, checked in headless Chromium."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from synthetic_runs import cached_run, chromium, dump_dom, edit_summary

from introspection_bench.errors import RecordsError
from introspection_bench.records import RecordStore
from introspection_bench.report import (
    ACCURACY_FILE,
    GRADING_FIXTURES,
    Plot,
    Section,
    classify_outcome,
    judge_accuracy_table,
    render_html,
    write_reports,
)
from introspection_bench.summary import load_summary

needs_chromium = pytest.mark.skipif(
    chromium() is None,
    reason="chromium not installed (apt-get install -y chromium): browser rendering not checked",
)
PROTOCOLS = (
    "injected_thought",
    "thought_vs_text",
    "prefill",
    "intentional_control",
    "yes_bias",
    "alternative_prompt",
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-layer synthetic run with a cached judge accuracy, reported once."""
    target = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(cached_run(model="good", skill=0.9, false_positive=0.05), target)
    assert (
        judge_accuracy_table(load_summary(target), target, measure=False) is None
    )  # nothing cached yet
    digest = hashlib.sha256()
    for path in sorted(GRADING_FIXTURES.glob("*.jsonl")):
        digest.update(path.read_bytes())
    table = {"affirms": {"accuracy": 0.99, "n": 300, "false_positive_rate": 0.01}}
    (target / ACCURACY_FILE).write_text(
        json.dumps(
            {
                "judge": "rule@1",
                "fixtures_sha256": digest.hexdigest(),
                "n_cases": 300,
                "table": table,
            }
        )
    )
    write_reports(target, judge_accuracy=False)
    return target


def test_html_is_self_contained(run_dir: Path) -> None:
    text = (run_dir / "report.html").read_text()
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", text), (
        "external resource in report.html"
    )
    images = re.findall(r"<img src='data:image/png;base64,([A-Za-z0-9+/=]+)'", text)
    assert len(images) >= 8
    assert all(base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" for data in images)


def test_markdown_has_tables_plots_examples_and_judge(run_dir: Path) -> None:
    text = (run_dir / "report.md").read_text()
    for protocol in PROTOCOLS:
        assert f"## {protocol} (v1)" in text
    assert "| test | cell | metrics: k/n, 95% interval | rule | multiplicity | verdict |" in text
    links = re.findall(r"\]\((plots/[^)]+\.png)\)", text)
    assert {
        "plots/injected_thought_rates.png",
        "plots/prefill_rates.png",
        "plots/intentional_control_cosine.png",
        "plots/injected_thought_success_injected_heatmap.png",
    } <= set(links)
    assert all((run_dir / link).is_file() for link in links)
    for outcome in ("success", "miss", "false alarm", "incoherent"):
        assert f"### {outcome}" in text
    assert "Graded by `rule@1`" in text and "| affirms | 99.0% | 300 | 1.0% |" in text


def test_outcomes_are_classified_from_grades() -> None:
    records = RecordStore(cached_run(model="good", skill=0.9, false_positive=0.05)).all()
    outcomes = {classify_outcome(r) for r in records if r.protocol == "injected_thought"}
    assert outcomes == {"success", "miss", "false alarm", "incoherent", None}
    assert all(classify_outcome(r) is None for r in records if r.protocol == "intentional_control")


@needs_chromium
def test_report_renders_tables_and_plots_in_chromium(run_dir: Path, tmp_path: Path) -> None:
    dom = dump_dom((run_dir / "report.html").as_uri(), tmp_path / "profile")
    loaded = re.search(r'data-plots-loaded="(\d+)"', dom)
    n_images = dom.count("<img ")
    assert loaded is not None, "the page's load script did not run"
    assert int(loaded.group(1)) == n_images >= 8, "some plots did not decode"
    assert '<p class="broken">' not in dom
    assert dom.count('<table class="verdicts">') == len(PROTOCOLS)
    for protocol in PROTOCOLS:
        assert f'<section id="{protocol}">' in dom
    # Every verdict of the summary is a row, with its pass/fail.
    summary = load_summary(run_dir)
    rows = re.findall(r'<span class="(pass|fail)">', dom)
    assert len(rows) == len(summary["verdicts"])
    assert rows.count("pass") == sum(v["passed"] for v in summary["verdicts"])
    assert "Example transcripts" in dom and '<table class="judge">' in dom


@needs_chromium
def test_a_broken_plot_is_flagged_in_the_page(run_dir: Path, tmp_path: Path) -> None:
    broken = Section("injected_thought", "1", [], [Plot("bad", "bad plot", b"not a png")])
    page = tmp_path / "broken.html"
    page.write_text(render_html(load_summary(run_dir), [broken], [], None))
    dom = dump_dom(page.as_uri(), tmp_path / "profile")
    assert 'data-plots-loaded="0"' in dom and "plot failed to render: bad plot" in dom


def test_report_of_a_one_layer_run_has_no_heatmap(tmp_path: Path) -> None:
    run = tmp_path / "one"
    shutil.copytree(
        cached_run(model="one-layer", layers=(0.5,), strengths=(1.0, 2.0), trials=4), run
    )
    write_reports(run, judge_accuracy=False)
    text = (run / "report.md").read_text()
    assert "heatmap" not in text and "plots/injected_thought_rates.png" in text
    assert "accuracy on the labelled cases was not measured" in text


def test_report_refuses_an_invalid_summary(tmp_path: Path) -> None:
    run = tmp_path / "bad"
    shutil.copytree(
        cached_run(model="one-layer", layers=(0.5,), strengths=(1.0, 2.0), trials=4), run
    )
    edit_summary(run, lambda s: s["identity"].pop("stimuli_hash"))
    with pytest.raises(RecordsError, match="stimuli_hash"):
        write_reports(run, judge_accuracy=False)


def test_markdown_escapes_model_config_and_git_strings(tmp_path: Path) -> None:
    run = tmp_path / "hostile"
    shutil.copytree(
        cached_run(model="one-layer", layers=(0.5,), strengths=(1.0, 2.0), trials=4), run
    )
    payload = "<img src=x onerror=alert(1)>"

    def poison(summary: dict) -> None:
        summary["identity"]["model"] = f"local:/m/{payload}"
        summary["config"]["model"] = f"local:/m/{payload}"
        summary["identity"]["judge"] = f"rule@1`{payload}"
        summary["git"] = f"abc{payload}|x"

    edit_summary(run, poison)
    write_reports(run, judge_accuracy=False)
    text = (run / "report.md").read_text()
    assert "# introspection-bench: local:/m/&lt;img src=x onerror=alert(1)&gt;" in text
    assert "abc&lt;img src=x onerror=alert(1)&gt;\\|x" in text
    markdown_it = pytest.importorskip("markdown_it")
    rendered = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(text)
    assert "<img src=x" not in rendered and "onerror=alert(1)&gt;" in rendered


def test_report_says_whether_the_run_is_complete(run_dir: Path, tmp_path: Path) -> None:
    assert (
        "| completeness | complete: every test has a verdict" in (run_dir / "report.md").read_text()
    )
    run = tmp_path / "partial"
    shutil.copytree(
        cached_run(model="one-layer", layers=(0.5,), strengths=(1.0, 2.0), trials=4), run
    )
    reason = "2 test(s) without a verdict: prefill[layer=0.5,strength=1], ..."
    edit_summary(run, lambda s: s.update(complete=False, incomplete=[reason]))
    write_reports(run, judge_accuracy=False)
    assert f"| completeness | INCOMPLETE: {reason} |" in (run / "report.md").read_text()
    assert f"INCOMPLETE: {reason}" in (run / "report.html").read_text()


def test_report_recomputes_the_verdicts_from_the_records(run_dir: Path, tmp_path: Path) -> None:
    assert (
        "| records check | every verdict and metric recomputed from trials.jsonl "
        "(thresholds version 1): they match |"
    ) in (run_dir / "report.md").read_text()
    run = tmp_path / "all-passed"
    shutil.copytree(
        cached_run(model="one-layer", layers=(0.5,), strengths=(1.0, 2.0), trials=4), run
    )
    edit_summary(run, lambda s: [v.update(passed=True) for v in s["verdicts"]])
    write_reports(run, judge_accuracy=False)
    text = (run / "report.md").read_text()
    assert re.search(
        r"\| records check \| MISMATCH: \d+ difference\(s\) between summary\.json and "
        r"trials\.jsonl \(first: verdict \w+\[.*\]: summary says PASS, trials\.jsonl with "
        r"thresholds version 1 gives FAIL\)",
        text,
    )


def _calibration(judge: str) -> dict:
    from introspection_bench.judges.accuracy import LabelledCase
    from introspection_bench.judges.base import Grade, GradeRequest
    from introspection_bench.judges.calibrate import summarise_graded

    def case(i: int, family: str, affirms: bool) -> LabelledCase:
        request = GradeRequest(protocol="injected_thought", response=f"reply {i}", word="ocean")
        return LabelledCase(f"c{i}", request, {"affirms": affirms}, extra={"family": family})

    def grade(affirms: bool | None) -> Grade:
        if affirms is None:
            return Grade(criteria={}, judge=judge, error="unparseable judge output")
        return Grade(criteria={"affirms": affirms}, judge=judge)

    graded = [
        (case(1, "qwen", True), grade(True)),
        (case(2, "qwen", False), grade(True)),
        (case(3, "llama", False), grade(False)),
        (case(4, "llama", True), grade(None)),
    ]
    return summarise_graded(graded, judge) | {"labels": "labels.jsonl"}


def test_both_reports_show_the_calibration_of_the_runs_judge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTROSPECTION_BENCH_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "calibrated"
    shutil.copytree(cached_run(model="one-layer", layers=(0.5,), strengths=(1.0,), trials=4), run)
    judge = str(load_summary(run)["identity"]["judge"])
    (run / "calibration.json").write_text(json.dumps(_calibration(judge)))
    write_reports(run, judge_accuracy=False)
    page, markdown = (run / "report.html").read_text(), (run / "report.md").read_text()
    assert "<section id='calibration'><h2>Judge calibration</h2>" in page
    assert f"{judge} on 4 labelled cases (labels.jsonl; 1 judge errors)" in page
    # all: tp 1, fp 1, tn 1, 1 error: accuracy 2/4, false yes 1/2, miss 0/1, kappa over the
    # 3 judged (2/3 - 4/9) / (1 - 4/9) = 0.4; the rates with 95% Wilson intervals
    all_row = [
        "all", "affirms", "4", "50.0% [15.0, 85.0]", "50.0% [9.5, 90.5]", "0.0%", "0.40",
        "1/1/1/0", "1",
    ]  # fmt: skip
    assert "<tr>" + "".join(f"<td>{c}</td>" for c in all_row) + "</tr>" in page
    qwen_row = [
        "qwen", "affirms", "2", "50.0% [9.5, 90.5]", "100.0% [20.7, 100.0]", "0.0%", "0.00",
        "1/1/0/0", "0",
    ]  # fmt: skip
    assert "<tr>" + "".join(f"<td>{c}</td>" for c in qwen_row) + "</tr>" in page
    assert (
        "| affirms | 4 | 50.0% [15.0, 85.0] | 50.0% [9.5, 90.5] | 0.0% | 0.40 | 1/1/1/0 | 1 |"
        in markdown
    )
    assert (
        "| llama | affirms | 2 | 50.0% [9.5, 90.5] | 0.0% [0.0, 79.3] | - | 1.00 | 0/0/1/0 | 1 |"
        in markdown
    )

    (run / "calibration.json").write_text(json.dumps(_calibration("openai:other@2")))
    write_reports(run, judge_accuracy=False)
    assert "id='calibration'" not in (run / "report.html").read_text(), "another judge's"
    assert "Judge calibration" not in (run / "report.md").read_text()


def test_a_rule_graded_run_shows_the_shipped_calibration_for_its_models_family(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No calibrate run needed: the shipped rule_calibration.json, and the family's goals."""
    from introspection_bench.judges.rule import RuleJudge

    monkeypatch.setenv("INTROSPECTION_BENCH_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "qwen"
    shutil.copytree(cached_run(model="one-layer", layers=(0.5,), strengths=(1.0,), trials=4), run)
    judge = RuleJudge().label

    def as_qwen(summary: dict) -> None:
        summary["identity"].update(judge=judge, model="hf:Qwen/Qwen2.5-Coder-7B-Instruct")

    edit_summary(run, as_qwen)
    write_reports(run, judge_accuracy=False)
    page, markdown = (run / "report.html").read_text(), (run / "report.md").read_text()
    assert "<section id='calibration'>" in page
    assert f"{judge} on 455 labelled cases (fixtures/grading/corpus/test.jsonl" in markdown
    note = re.search(r"This run's model \(hf:Qwen/Qwen2\.5-Coder-7B-Instruct\).*", markdown)
    assert note, markdown[-3000:]
    # The figures the shipped file holds for the qwen family, and the goals they miss.
    shipped = json.loads(
        (Path(__file__).parents[1] / "fixtures/grading/corpus/rule_calibration.json").read_text()
    )
    affirms = shipped["by_family"]["qwen"]["affirms"]
    assert f"affirms {affirms['accuracy']:.1%}" in note[0]
    assert ("affirms false yes <= 3%" in note[0]) == (affirms["false_yes_rate"] > 0.03)
    assert "class='family-note'" in page

    edit_summary(run, lambda s: s["identity"].update(model="hf:meta-llama/Llama-3.1-8B"))
    write_reports(run, judge_accuracy=False)
    markdown = (run / "report.md").read_text()
    assert "is of the llama family; on the calibration's llama replies" in markdown
