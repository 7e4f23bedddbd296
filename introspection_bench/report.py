"""Run reports: a self-contained `report.html` (plots inlined as base64 PNG) and `report.md`.

Both are built from the run directory alone (`summary.json` + `trials.jsonl`), so a finished or
re-graded run can be reported again offline: `introspection-bench report reports/<run>`.
Per protocol: a table of every verdict (k/n, interval, rule, verdict) and its plots; then
example transcripts for each outcome, and which judge graded with its measured accuracy.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from introspection_bench import plots
from introspection_bench.records import RecordStore, TrialRecord
from introspection_bench.summary import load_summary

REPORT_HTML = "report.html"
REPORT_MD = "report.md"
PLOTS_DIR = "plots"
ACCURACY_FILE = "judge_accuracy.json"
GRADING_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "grading"
PROTOCOL_ORDER = (
    "injected_thought",
    "thought_vs_text",
    "prefill",
    "intentional_control",
    "yes_bias",
    "alternative_prompt",
)
OUTCOMES = ("success", "miss", "false alarm", "incoherent")
EXAMPLES_PER_OUTCOME = 2
#: Protocols whose graded records are sorted into OUTCOMES, in the order examples are taken from.
_EXAMPLE_PROTOCOLS = ("injected_thought", "alternative_prompt", "yes_bias")


@dataclass(frozen=True)
class Plot:
    """One figure of the report."""

    name: str
    """File stem (`plots/<name>.png` beside report.md)."""
    caption: str
    png: bytes


@dataclass(frozen=True)
class Section:
    """One protocol's part of the report."""

    protocol: str
    version: str
    rows: Sequence[tuple[str, str, Sequence[str], str, str, bool]]
    """Per verdict: test, cell label, metric lines, rule, multiple comparison, passed."""
    plots: Sequence[Plot]


@dataclass(frozen=True)
class Example:
    """One transcript shown as an example of an outcome."""

    outcome: str
    record: TrialRecord


def write_reports(report_dir: Path, *, judge_accuracy: bool = True) -> tuple[Path, Path]:
    """Write `report.html`, `report.md` and `plots/*.png` into a run directory.

    Args:
        report_dir: Run directory holding `summary.json` and `trials.jsonl`.
        judge_accuracy: Measure the rule judge on fixtures/grading when no cached measurement
            exists (about half a minute on a CPU); False reports only a cached one.

    Returns:
        Paths of report.html and report.md.

    Raises:
        RecordsError: When summary.json is missing or fails its schema.

    """
    report_dir = Path(report_dir)
    summary = load_summary(report_dir)
    records = RecordStore(report_dir).all()
    sections = build_sections(summary, records)
    examples = pick_examples(records)
    accuracy = judge_accuracy_table(summary, report_dir, measure=judge_accuracy)
    plots_dir = report_dir / PLOTS_DIR
    plots_dir.mkdir(exist_ok=True)
    for section in sections:
        for plot in section.plots:
            (plots_dir / f"{plot.name}.png").write_bytes(plot.png)
    html_path, md_path = report_dir / REPORT_HTML, report_dir / REPORT_MD
    agreements = judge_agreements(report_dir)
    check = records_check(summary, records)
    from introspection_bench.judges.calibrate import calibration_markdown, find_calibration
    from introspection_bench.models import cache_root

    # A calibration of this run's judge (`introspection-bench calibrate`, or the one shipped
    # for the rule grader): both reports show it, with the figures of the run model's family.
    calibration = find_calibration(str(summary["identity"]["judge"]), report_dir, cache_root())
    page = render_html(summary, sections, examples, accuracy, agreements, check, calibration)
    _write_atomic(html_path, page)
    markdown = render_markdown(summary, sections, examples, accuracy, agreements, check)
    if calibration:
        markdown += calibration_markdown(calibration, str(summary["identity"]["model"]))
    _write_atomic(md_path, markdown)
    return html_path, md_path


def judge_agreements(report_dir: Path) -> list[dict[str, Any]]:
    """Agreements written by `introspection-bench regrade` (`agreement.<judge>.json`), if any."""
    found = []
    for path in sorted(Path(report_dir).glob("agreement.*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        found.append(data)
    return found


def _agreement_rows(agreement: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for c in agreement["criteria"]:
        share = "n/a" if c["agreement"] is None else f"{100 * c['agreement']:.1f}%"
        if c["kappa"] is None:
            kappa = "undefined"
        else:
            kappa = f"{c['kappa']:.2f} [{c['kappa_low']:.2f}, {c['kappa_high']:.2f}]"
        rows.append((c["criterion"], str(c["n"]), share, kappa))
    return rows


def _write_atomic(path: Path, text: str) -> None:
    staging = path.with_suffix(".tmp")
    staging.write_text(text, encoding="utf-8")
    staging.replace(path)


def build_sections(summary: Mapping[str, Any], records: Sequence[TrialRecord]) -> list[Section]:
    """One section per protocol with a verdict: its table rows and plots."""
    by_protocol: dict[str, list[Mapping[str, Any]]] = {}
    for verdict in summary["verdicts"]:
        by_protocol.setdefault(verdict["protocol"], []).append(verdict)
    sections = []
    for protocol in sorted(
        by_protocol, key=lambda p: (PROTOCOL_ORDER.index(p) if p in PROTOCOL_ORDER else 99, p)
    ):
        verdicts = by_protocol[protocol]
        rows = [
            (
                v["test"],
                v["cell"]["label"],
                [_metric_line(m) for m in v["metrics"]],
                v["rule"],
                v.get("multiple_comparison", "none"),
                bool(v["passed"]),
            )
            for v in verdicts
        ]
        version = str(summary.get("protocols", {}).get(protocol, verdicts[0]["protocol_version"]))
        sections.append(
            Section(protocol, version, rows, _protocol_plots(protocol, summary, records))
        )
    return sections


def _metric_line(metric: Mapping[str, Any]) -> str:
    cell = ", ".join(
        part
        for part in (
            f"L{metric['layer']}" if metric["layer"] is not None else "",
            f"s{metric['strength']:g}" if metric["strength"] is not None else "",
        )
        if part
    )
    where = f" {cell}" if cell else ""
    label = f"{metric['name'].split('.', 1)[-1]} [{metric['condition']}]{where}"
    if metric.get("k") is not None and metric.get("n") is not None:
        return (
            f"{label}: {metric['k']}/{metric['n']} = {_pct(metric['estimate'])} "
            f"[{_pct(metric['low'])}, {_pct(metric['high'])}] ({metric['method']})"
        )
    return (
        f"{label}: {metric['estimate']:+.4f} [{metric['low']:+.4f}, {metric['high']:+.4f}] "
        f"(n={metric.get('n')}, {metric['method']})"
    )


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.1f}%"


def _protocol_plots(
    protocol: str, summary: Mapping[str, Any], records: Sequence[TrialRecord]
) -> list[Plot]:
    metrics = summary["metrics"]
    found: list[Plot] = []
    rates = plots.plot_rates_by_strength(metrics, protocol)
    if rates is not None:
        captions = {
            "injected_thought": "Detection (success) and false-positive rates by strength",
            "prefill": "Apology rate by condition and strength",
        }
        found.append(
            Plot(
                f"{protocol}_rates", captions.get(protocol, f"{protocol} rates by strength"), rates
            )
        )
    for name, condition in _HEATMAPS.get(protocol, ()):
        heatmap = plots.plot_rate_heatmap(metrics, name, condition)
        if heatmap is not None:
            stem = name.split(".", 1)[1]
            found.append(
                Plot(
                    f"{protocol}_{stem}_{condition}_heatmap",
                    f"{name} [{condition}]: layer x strength",
                    heatmap,
                )
            )
    if protocol == "intentional_control":
        layers = sorted(
            {m["layer"] for m in metrics if m["protocol"] == protocol and m["layer"] is not None}
        )
        cosine = plots.plot_cosine_by_layer(records, layers)
        if cosine is not None:
            found.append(
                Plot(
                    "intentional_control_cosine", "Cosine with the concept vector by layer", cosine
                )
            )
    return found


_HEATMAPS: Mapping[str, Sequence[tuple[str, str]]] = {
    "injected_thought": (
        ("injected_thought.success", "injected"),
        ("injected_thought.random_affirms", "random_vector"),
    ),
    "prefill": (("prefill.apology", "matching"),),
    "thought_vs_text": (("thought_vs_text.naming", "think"),),
    "yes_bias": (("yes_bias.affirmative", "injected"),),
    "alternative_prompt": (("alternative_prompt.success", "injected"),),
}


def classify_outcome(record: TrialRecord) -> str | None:
    """Sort a graded record into success / miss / false alarm / incoherent (None: none of these).

    Injected trials succeed or miss; uninjected and random-vector trials that claim detection
    (or answer "yes" to a no-question) are false alarms; an incoherent reply is `incoherent`.
    """
    grades = record.grades
    if record.error is not None or not grades or record.protocol not in _EXAMPLE_PROTOCOLS:
        return None
    if grades.get("coherent") is False:
        return "incoherent"
    if record.protocol == "yes_bias":
        return "false alarm" if grades.get("affirmative") else None
    if record.condition == "injected":
        return "success" if grades.get("success") else "miss"
    claimed = (
        grades.get("affirms") if record.protocol == "injected_thought" else grades.get("success")
    )
    return "false alarm" if claimed else None


def pick_examples(
    records: Sequence[TrialRecord], per_outcome: int = EXAMPLES_PER_OUTCOME
) -> list[Example]:
    """Pick up to `per_outcome` transcripts per outcome, Exp 1 first, in trial-id order."""
    ordered = sorted(
        records,
        key=lambda r: (
            _EXAMPLE_PROTOCOLS.index(r.protocol) if r.protocol in _EXAMPLE_PROTOCOLS else 99,
            r.trial_id,
        ),
    )
    chosen: dict[str, list[Example]] = {outcome: [] for outcome in OUTCOMES}
    for record in ordered:
        outcome = classify_outcome(record)
        if outcome is not None and len(chosen[outcome]) < per_outcome:
            chosen[outcome].append(Example(outcome, record))
    return [example for outcome in OUTCOMES for example in chosen[outcome]]


def judge_accuracy_table(
    summary: Mapping[str, Any], report_dir: Path, *, measure: bool
) -> dict[str, Any] | None:
    """Get the judge's accuracy on fixtures/grading: cached in the run dir, else measured.

    Only the rule judge is measured here (offline, deterministic); other judges need their
    endpoint, so only a cached measurement is shown for them.

    Returns:
        {"judge", "fixtures_sha256", "n_cases", "table"} or None when not available.

    """
    judge = str(summary["identity"]["judge"])
    if not GRADING_FIXTURES.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(GRADING_FIXTURES.glob("*.jsonl")):
        digest.update(path.read_bytes())
    fixtures_sha = digest.hexdigest()
    cache = Path(report_dir) / ACCURACY_FILE
    if cache.is_file():
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached.get("judge") == judge and cached.get("fixtures_sha256") == fixtures_sha:
            return dict(cached)
    if not measure or not judge.startswith("rule@"):
        return None
    from introspection_bench.judges.accuracy import load_labelled_cases, measure_accuracy
    from introspection_bench.judges.base import build_judge

    grader = build_judge("rule")
    if f"{grader.name}@{grader.version}" != judge:
        return None  # the installed rule grader is another version than the one that graded
    cases = load_labelled_cases(GRADING_FIXTURES)
    result = {
        "judge": judge,
        "fixtures_sha256": fixtures_sha,
        "n_cases": len(cases),
        "table": measure_accuracy(grader, cases),
    }
    cache.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


def records_check(summary: Mapping[str, Any], records: Sequence[TrialRecord]) -> str:
    """Whether the summary's verdicts and metrics are what its records give (recomputed).

    Uses this checkout's suites/thresholds.toml, when it has the run's thresholds version.
    """
    from introspection_bench.submission import recompute
    from introspection_bench.thresholds import default_thresholds_path, load_thresholds

    thresholds = load_thresholds(default_thresholds_path())
    version, run_version = (
        str(thresholds.get("version")),
        summary["identity"].get("thresholds_version"),
    )
    if str(run_version) != version:
        return (
            f"not rechecked: decided under thresholds version {run_version}, this checkout "
            f"has {version}"
        )
    _, mismatches = recompute(summary, records, thresholds)
    if not mismatches:
        return (
            f"every verdict and metric recomputed from trials.jsonl (thresholds version "
            f"{version}): they match"
        )
    return (
        f"MISMATCH: {len(mismatches)} difference(s) between summary.json and trials.jsonl "
        f"(first: {mismatches[0]}); `introspection-bench validate` lists them"
    )


def _run_facts(summary: Mapping[str, Any], check: str | None = None) -> list[tuple[str, str]]:
    identity, config = summary["identity"], summary["config"]
    passed = sum(1 for v in summary["verdicts"] if v["passed"])
    return [
        ("model", f"{identity['model']} (fingerprint {identity['model_fingerprint'][:16]})"),
        ("completeness", _completeness(summary)),
        *([("records check", check)] if check else []),
        ("verdicts", f"{passed}/{len(summary['verdicts'])} passed"),
        ("trials", f"{summary['n_trials']} ({summary['n_errors']} with errors)"),
        ("judge", str(identity["judge"])),
        ("config", ", ".join(f"{k}={json.dumps(v)}" for k, v in config.items())),
        ("stimuli sha256", str(identity["stimuli_hash"])),
        ("chat template sha256", str(identity["chat_template_hash"])),
        ("thresholds version", str(identity.get("thresholds_version", "?"))),
        ("git", str(summary.get("git"))),
        ("versions", ", ".join(f"{k} {v}" for k, v in summary["versions"].items())),
        (
            "created",
            f"{summary['created']} (schema {summary['schema_version']}, "
            f"{summary.get('elapsed_s', '?')} s)",
        ),
    ]


def _completeness(summary: Mapping[str, Any]) -> str:
    """`complete`, or `INCOMPLETE: <reasons>` (a partial run's verdicts are not the model's)."""
    if summary.get("complete") is True:
        return "complete: every test has a verdict, every trial is graded"
    reasons = "; ".join(summary.get("incomplete") or ["no reason recorded"])
    if summary.get("complete") is None:
        return f"unknown ({reasons})"
    return f"INCOMPLETE: {reasons}"


def _accuracy_rows(accuracy: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for criterion, row in accuracy["table"].items():
        fpr = row.get("false_positive_rate")
        rows.append(
            (
                criterion,
                _pct(float(row["accuracy"])),
                str(row["n"]),
                "-" if fpr is None else _pct(float(fpr)),
            )
        )
    return rows


def _example_facts(record: TrialRecord) -> str:
    """`condition injected, concept dust, layer 20, strength 0.5; graded ... by rule@1`."""
    facts = [f"condition {record.condition}"]
    for name, value in (
        ("concept", record.concept),
        ("layer", record.layer),
        ("strength", record.strength),
    ):
        if value is not None:
            facts.append(f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}")
    grades = ", ".join(f"{k}={v}" for k, v in record.grades.items())
    return ", ".join(facts) + f"; graded {grades} by {record.judge}"


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:72em;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.8em 0}
th,td{border:1px solid #ccc;padding:.3em .6em;vertical-align:top;
text-align:left;font-size:.9em}th{background:#f3f3f3}.pass{color:#0a6b2d;font-weight:bold}
.fail{color:#b00020;font-weight:bold}figure{display:inline-block;margin:.5em}figcaption{font-size:.85em}
pre{white-space:pre-wrap;background:#f7f7f7;padding:.5em;border:1px solid #e3e3e3;font-size:.85em}
.broken{color:#b00020}pre.completion{background:#eef5ff}ul.metrics{margin:0;padding-left:1.1em}
"""
_IMAGE_CHECK = """
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images), loaded = 0;
  images.forEach(function (img) {
    if (img.complete && img.naturalWidth > 0) { loaded += 1; return; }
    var note = document.createElement('p'); note.className = 'broken';
    note.textContent = 'plot failed to render: ' + img.alt; img.after(note);
  });
  document.body.setAttribute('data-plots-loaded', String(loaded));
});
"""


def render_html(
    summary: Mapping[str, Any],
    sections: Sequence[Section],
    examples: Sequence[Example],
    accuracy: Mapping[str, Any] | None,
    agreements: Sequence[Mapping[str, Any]] = (),
    check: str | None = None,
    calibration: Mapping[str, Any] | None = None,
) -> str:
    """Render the self-contained HTML report (inline CSS, plots as data: URIs).

    `calibration` (`judges.calibrate`) of the run's judge, when given, follows the judge section.
    """
    e = html.escape
    title = f"introspection-bench: {summary['identity']['model']}"
    out = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        "<table class='run'>",
    ]
    out += [f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _run_facts(summary, check)]
    out.append("</table>")
    for section in sections:
        out.append(
            f"<section id='{e(section.protocol)}'>"
            f"<h2>{e(section.protocol)} (v{e(section.version)})</h2>"
        )
        out.append(
            "<table class='verdicts'><tr><th>test</th><th>cell</th>"
            "<th>metrics: k/n, 95% interval</th>"
            "<th>rule</th><th>multiplicity</th><th>verdict</th></tr>"
        )
        for test, cell, metric_lines, rule, multiplicity, passed in section.rows:
            items = "".join(f"<li>{e(line)}</li>" for line in metric_lines)
            status = (
                "<span class='pass'>PASS</span>" if passed else "<span class='fail'>FAIL</span>"
            )
            out.append(
                f"<tr><td>{e(test)}</td><td>{e(cell)}</td><td><ul class='metrics'>{items}</ul></td>"
                f"<td>{e(rule)}</td><td>{e(multiplicity)}</td><td>{status}</td></tr>"
            )
        out.append("</table>")
        for plot in section.plots:
            data = base64.b64encode(plot.png).decode("ascii")
            out.append(
                f"<figure><img src='data:image/png;base64,{data}' alt='{e(plot.caption)}'>"
                f"<figcaption>{e(plot.caption)}</figcaption></figure>"
            )
        out.append("</section>")
    out.append("<section id='examples'><h2>Example transcripts</h2>")
    if not examples:
        out.append(
            "<p>No graded transcripts of injected_thought, alternative_prompt or yes_bias.</p>"
        )
    for outcome in OUTCOMES:
        chosen = [x for x in examples if x.outcome == outcome]
        out.append(f"<h3>{e(outcome)}</h3>" + ("" if chosen else "<p>none in this run</p>"))
        for example in chosen:
            r = example.record
            out.append(
                f"<p><code>{e(r.trial_id)}</code>: {e(_example_facts(r))}</p>"
                f"<details><summary>prompt</summary><pre>{e(r.prompt)}</pre></details>"
                f"<pre class='completion'>{e(r.completion)}</pre>"
            )
    out.append("</section>" + _judge_html(summary, accuracy))
    if calibration:
        from introspection_bench.judges.calibrate import calibration_html

        out.append(calibration_html(calibration, str(summary["identity"]["model"])))
    for agreement in agreements:
        judges = " vs ".join(html.escape(j) for j in agreement["judges"])
        rows = "".join(
            f"<tr><td>{html.escape(a)}</td><td>{b}</td><td>{c}</td><td>{d}</td></tr>"
            for a, b, c, d in _agreement_rows(agreement)
        )
        out.append(
            f"<section class='agreement'><h2>Agreement between judges: {judges}</h2>"
            "<table class='judge'><tr><th>criterion</th><th>n</th><th>agreement</th>"
            f"<th>Cohen's kappa [95%]</th></tr>{rows}</table></section>"
        )
    out.append(f"<script>{_IMAGE_CHECK}</script></body></html>")
    return "\n".join(out)


def _judge_html(summary: Mapping[str, Any], accuracy: Mapping[str, Any] | None) -> str:
    e = html.escape
    judge = e(str(summary["identity"]["judge"]))
    if accuracy is None:
        return (
            f"<section id='judge'><h2>Judge</h2><p>Graded by <code>{judge}</code>; "
            "its accuracy on the "
            "labelled cases (fixtures/grading) was not measured for this report.</p></section>"
        )
    rows = "".join(
        f"<tr><td>{e(a)}</td><td>{e(b)}</td><td>{e(c)}</td><td>{e(d)}</td></tr>"
        for a, b, c, d in _accuracy_rows(accuracy)
    )
    return (
        f"<section id='judge'><h2>Judge</h2><p>Graded by <code>{judge}</code>; agreement with "
        f"{accuracy['n_cases']} hand-labelled cases (fixtures/grading):</p><table class='judge'>"
        "<tr><th>criterion</th><th>accuracy</th><th>n</th><th>false yes</th></tr>"
        f"{rows}</table></section>"
    )


def render_markdown(
    summary: Mapping[str, Any],
    sections: Sequence[Section],
    examples: Sequence[Example],
    accuracy: Mapping[str, Any] | None,
    agreements: Sequence[Mapping[str, Any]] = (),
    check: str | None = None,
) -> str:
    """Render the Markdown report; plots are linked from `plots/` beside it."""
    out = [f"# introspection-bench: {_md(summary['identity']['model'])}", "", "| | |", "|---|---|"]
    out += [f"| {k} | {_md(v)} |" for k, v in _run_facts(summary, check)]
    for section in sections:
        out += [
            "",
            f"## {section.protocol} (v{section.version})",
            "",
            "| test | cell | metrics: k/n, 95% interval | rule | multiplicity | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for test, cell, metric_lines, rule, multiplicity, passed in section.rows:
            metrics = "<br>".join(_md(line) for line in metric_lines)
            out.append(
                f"| {_md(test)} | {_md(cell)} | {metrics} | {_md(rule)} | {_md(multiplicity)} | "
                f"{'PASS' if passed else 'FAIL'} |"
            )
        out += [f"\n![{plot.caption}]({PLOTS_DIR}/{plot.name}.png)" for plot in section.plots]
    out += ["", "## Example transcripts"]
    for outcome in OUTCOMES:
        out += ["", f"### {outcome}"]
        chosen = [x for x in examples if x.outcome == outcome]
        if not chosen:
            out.append("none in this run")
        for example in chosen:
            r = example.record
            out += [
                "",
                f"{_code(r.trial_id)}: {_md(_example_facts(r))}",
                "",
                "```text",
                r.completion.replace("```", "'''"),
                "```",
            ]
    out += ["", "## Judge", "", f"Graded by {_code(summary['identity']['judge'])}."]
    if accuracy is not None:
        out += [
            f"Agreement with {accuracy['n_cases']} hand-labelled cases (fixtures/grading):",
            "",
            "| criterion | accuracy | n | false yes |",
            "|---|---|---|---|",
        ]
        out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in _accuracy_rows(accuracy)]
    else:
        out.append("Its accuracy on the labelled cases was not measured for this report.")
    for agreement in agreements:
        judges = " vs ".join(_md(j) for j in agreement["judges"])
        out += ["", f"## Agreement between judges: {judges}", ""]
        out += ["| criterion | n | agreement | Cohen's kappa [95%] |", "|---|---|---|---|"]
        out += [
            f"| {_md(a)} | {_md(b)} | {_md(c)} | {_md(d)} |"
            for a, b, c, d in _agreement_rows(agreement)
        ]
    return "\n".join(out) + "\n"


def _md(text: object) -> str:
    """Text for a Markdown line or table cell, with HTML and the cell separator escaped.

    Model specs, configs and git strings come from the run and may hold HTML (`<img onerror>`)
    that a Markdown renderer would pass through.
    """
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("\n", " ")


def _code(text: object) -> str:
    """An inline code span that no backtick in `text` can close early."""
    body = str(text).replace("\n", " ").replace("|", "\\|")
    longest = max((len(run) for run in re.findall("`+", body)), default=0)
    if not longest:
        return f"`{body}`"
    fence = "`" * (longest + 1)
    return f"{fence} {body} {fence}"
