"""Calibrate any judge on labelled replies: accuracy, false-yes and miss rates, kappa, confusion.

`introspection-bench calibrate --judge J --labels FILE` grades the labelled cases with judge J
(rule, openai:<model> at --judge-url, hf:, local:), compares each boolean criterion with the
human label and writes the result as JSON. Reports show the calibration of the judge that
graded a run when one is found (`find_calibration`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from introspection_bench.judges.accuracy import LabelledCase, grade_cases, load_labelled_cases
from introspection_bench.judges.base import Grade, Judge
from introspection_bench.stats import rate

CALIBRATION_FILE = "calibration.json"
_RAW_CHARS = 1000
#: The shipped corpus of real replies of other models (fixtures/grading/corpus).
CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "grading" / "corpus"
#: The installed rule grader's calibration on the corpus's test split, shipped so that every
#: report graded by that version shows it without a `calibrate` run. Regenerate it with the
#: grader (tests/judges/test_corpus_accuracy.py fails while it is stale):
#:     introspection-bench calibrate --judge rule --labels fixtures/grading/corpus/test.jsonl \
#:         --out fixtures/grading/corpus/rule_calibration.json
SHIPPED_RULE_CALIBRATION = CORPUS / "rule_calibration.json"
#: The accuracy the grader aims for per model family (issue 10): minimum accuracy, and for
#: `affirms` a maximum false-yes rate. Reports say which ones a run's family misses.
GOALS: dict[str, tuple[float, float | None]] = {
    "affirms": (0.95, 0.03),
    "affirm_and_name": (0.95, None),
    "coherent": (0.90, None),
}
#: Fewer labelled replies than this on a criterion are shown but not held against `GOALS`
#: (3 replies give a 95% interval 70 points wide).
GOAL_MIN_REPLIES = 20
#: Corpus families as they appear in model names, in the order they are tried ("codellama"
#: before "llama"); the suite's `default` model is SmolLM2.
_FAMILY_NAMES = ("codellama", "deepseek", "qwen", "llama", "gemma", "mistral", "smollm")


def model_family(model: str) -> str | None:
    """The corpus family (`family` of its rows) of a model spec or name, or None if unknown."""
    lowered = model.lower()
    if lowered == "default" or lowered.startswith("default+"):
        return "smollm"
    for family in _FAMILY_NAMES:
        if family in lowered:
            return "llama" if family == "codellama" else family
    return None


def calibrate(
    judge: Judge, cases: Sequence[LabelledCase], labels_sha256: str = ""
) -> dict[str, Any]:
    """Grade `cases` with `judge` and measure it against the human labels.

    A judge error counts against the judge (a disagreement, never a "no").

    Args:
        judge: The judge to measure.
        cases: Labelled cases (`accuracy.load_labelled_cases`).
        labels_sha256: Digest of the labels file, recorded for provenance.

    Returns:
        {"judge", "labels_sha256", "created", "n_cases", "n_errors", "criteria": {criterion:
        stats}, "by_family": {family: {criterion: stats}}, "by_model": {source model:
        {criterion: stats}}, "rows": [one per case]}; stats are those of `criterion_stats`, rows
        those of `graded_rows`. Cases without a `family` or `model` field are left out of those
        breakdowns (never out of "criteria").

    """
    graded = grade_cases(judge, cases)
    label = next((g.judge for _, g in graded if g.judge), f"{judge.name}@{judge.version}")
    return summarise_graded(graded, label, labels_sha256)


def summarise_graded(
    graded: Sequence[tuple[LabelledCase, Grade]], judge_label: str, labels_sha256: str = ""
) -> dict[str, Any]:
    """The calibration of already graded cases (see `calibrate`)."""
    return {
        "judge": judge_label,
        "labels_sha256": labels_sha256,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "n_cases": len(graded),
        "n_errors": sum(1 for _, g in graded if g.error),
        "criteria": criterion_table(graded),
        "by_family": _breakdown(graded, "family"),
        # Source models, so that one model a family's figure hides can be seen (a code model
        # whose replies the judge misreads, say).
        "by_model": _breakdown(graded, "model"),
        "rows": graded_rows(graded),
    }


def _breakdown(
    graded: Sequence[tuple[LabelledCase, Grade]], field: str
) -> dict[str, dict[str, dict[str, Any]]]:
    """`criterion_table` per value of the cases' `field` (family, model), sorted by value."""
    values = sorted({str(c.extra[field]) for c, _ in graded if c.extra.get(field)})
    return {
        value: criterion_table((c, g) for c, g in graded if str(c.extra.get(field)) == value)
        for value in values
    }


def graded_rows(graded: Iterable[tuple[LabelledCase, Grade]]) -> list[dict[str, Any]]:
    """One row per case: id, family, the human labels, the judge's criteria and its error.

    Every statistic of the calibration can be recomputed from these rows, and a user can read
    the judge's disagreements without grading again; a failed row keeps the start of the
    judge's output (`raw`, at most `_RAW_CHARS` characters) to show why it failed.
    """
    return [
        {
            "id": case.id,
            "family": case.extra.get("family"),
            "model": case.extra.get("model"),
            "labels": dict(case.labels),
            "criteria": dict(grade.criteria),
            "error": grade.error,
            "raw": grade.raw[:_RAW_CHARS] if grade.error and grade.raw else None,
        }
        for case, grade in graded
    ]


def criterion_table(graded: Iterable[tuple[LabelledCase, Grade]]) -> dict[str, dict[str, Any]]:
    """Per boolean criterion: the confusion counts and the statistics derived from them.

    A case the judge failed on (an error, or no boolean verdict for the criterion) is counted in
    `errors`, not in the confusion counts: it is neither a "yes" nor a "no".
    """
    counts: dict[str, dict[str, int]] = {}
    for case, grade in graded:
        for criterion, label in case.labels.items():
            if not isinstance(label, bool):
                continue
            predicted = None if grade.error else grade.criteria.get(criterion)
            cell = counts.setdefault(criterion, {"tp": 0, "fp": 0, "tn": 0, "fn": 0, "errors": 0})
            if not isinstance(predicted, bool):
                cell["errors"] += 1
                continue
            key = ("t" if predicted == label else "f") + ("p" if predicted else "n")
            cell[key] += 1
    return {criterion: criterion_stats(**cell) for criterion, cell in sorted(counts.items())}


def criterion_stats(tp: int, fp: int, tn: int, fn: int, errors: int = 0) -> dict[str, Any]:
    """Statistics of one criterion from its confusion counts and the judge's failures.

    Args:
        tp: Labelled yes, judged yes.
        fp: Labelled no, judged yes.
        tn: Labelled no, judged no.
        fn: Labelled yes, judged no.
        errors: Labelled cases the judge gave no verdict on.

    Returns:
        n (every labelled case), accuracy ((tp + tn) / n: a failure counts as a disagreement),
        false_yes_rate (fp / (fp + tn)), miss_rate (fn / (fn + tp)), kappa (Cohen's, over the
        judged cases), the confusion counts and errors; a rate without a denominator is None.
        Each rate has a 95% Wilson interval (`accuracy_ci`, `false_yes_ci`, `miss_ci`, [low,
        high]; None with the rate): with 32 replies that claim nothing, one false yes is 3.1%
        but the interval runs from 0.6% to 16%, and a per-family goal must be read with it.

    """
    judged = tp + fp + tn + fn
    n = judged + errors
    accuracy = (tp + tn) / n if n else None
    if judged:
        agreement = (tp + tn) / judged
        p_label, p_judge = (tp + fn) / judged, (tp + fp) / judged
        expected = p_label * p_judge + (1 - p_label) * (1 - p_judge)
        if expected < 1:
            kappa: float | None = (agreement - expected) / (1 - expected)
        else:  # one class only, in labels and verdicts alike
            kappa = 1.0 if agreement == 1 else 0.0
    else:
        kappa = None
    return {
        "n": n,
        "accuracy": accuracy,
        "false_yes_rate": fp / (fp + tn) if fp + tn else None,
        "miss_rate": fn / (fn + tp) if fn + tp else None,
        "accuracy_ci": _interval(tp + tn, n),
        "false_yes_ci": _interval(fp, fp + tn),
        "miss_ci": _interval(fn, fn + tp),
        "kappa": kappa,
        "confusion": {"tp": tp, "fp": fp, "tn": tn, "fn": fn},
        "errors": errors,
    }


def _interval(k: int, n: int) -> list[float] | None:
    """95% Wilson interval of k of n as [low, high]; None without cases."""
    if not n:
        return None
    r = rate(k, n)
    return [r.low, r.high]


def labels_digest(path: str | Path) -> str:
    """SHA-256 over the labels file (or every `*.jsonl` of a directory, sorted by name)."""
    root = Path(path)
    files = sorted(root.glob("*.jsonl")) if root.is_dir() else [root]
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.read_bytes())
    return digest.hexdigest()


def calibrate_file(judge: Judge, labels: str | Path) -> dict[str, Any]:
    """Load a labels file (or directory) and calibrate `judge` on it."""
    result = calibrate(judge, load_labelled_cases(labels), labels_digest(labels))
    result["labels"] = str(labels)
    return result


def format_calibration(result: Mapping[str, Any], by_model: bool = False) -> str:
    """Aligned text table: one line per criterion, then one per family and criterion.

    With `by_model`, then one per source model and criterion (`by_model` of the result).
    """
    rows = [("", result["criteria"])] + [
        (f"{family}/", table) for family, table in result.get("by_family", {}).items()
    ]
    if by_model:
        rows += [(f"{model}/", table) for model, table in result.get("by_model", {}).items()]
    width = max([25] + [len(prefix + criterion) for prefix, table in rows for criterion in table])
    lines = [
        f"judge {result['judge']} on {result['n_cases']} labelled cases"
        f" ({result['n_errors']} judge errors)",
        f"{'criterion':<{width}} {'n':>4} {'accuracy':>8} {'95% CI':>13} {'false yes':>9}"
        f" {'95% CI':>13} {'miss':>6} {'kappa':>6}   tp   fp   tn   fn  err",
    ]
    for prefix, table in rows:
        for criterion, s in table.items():
            c = s["confusion"]
            lines.append(
                f"{prefix + criterion:<{width}} {s['n']:>4} {_pct(s['accuracy']):>8}"
                f" {_ci(s.get('accuracy_ci')):>13} {_pct(s['false_yes_rate']):>9}"
                f" {_ci(s.get('false_yes_ci')):>13} {_pct(s['miss_rate']):>6}"
                f" {_num(s['kappa']):>6} {c['tp']:>4} {c['fp']:>4} {c['tn']:>4} {c['fn']:>4}"
                f" {s['errors']:>4}"
            )
    return "\n".join(lines)


def default_path(judge_label: str, cache: Path) -> Path:
    """Where `calibrate` writes by default: `<cache>/calibrations/<judge label>.json`."""
    return cache / "calibrations" / (re.sub(r"[^A-Za-z0-9@._-]+", "_", judge_label) + ".json")


def find_calibration(judge_label: str, report_dir: Path, cache: Path) -> dict[str, Any] | None:
    """The calibration of `judge_label`, first found of three.

    The run dir's calibration.json, the cache's (`calibrate` writes there), and the shipped one
    of the rule grader (`SHIPPED_RULE_CALIBRATION`), each only if it is of that judge.
    """
    for path in (
        Path(report_dir) / CALIBRATION_FILE,
        default_path(judge_label, cache),
        SHIPPED_RULE_CALIBRATION,
    ):
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("judge") == judge_label:
                return dict(data)
    return None


def family_note(result: Mapping[str, Any], model: str) -> str:
    """One paragraph on the calibration's figures for the family of the run's `model`.

    Names the family's accuracy (and false yes on `affirms`) per criterion of `GOALS`, and which
    goals it misses, so a reader of a Qwen run sees that its `control` verdict rests on a
    false-yes rate above the goal; "" for a calibration without per-family figures.
    """
    tables = result.get("by_family") or {}
    if not tables:
        return ""
    family = model_family(model)
    if family is None or family not in tables:
        known = f"the {family} family" if family else "a family not named here"
        return (
            f"This run's model ({model}) is of {known}, of which the calibration holds no "
            "labelled replies: read the pooled figures."
        )
    table = tables[family]
    figures, missed, few = [], [], []
    for criterion, (min_accuracy, max_false_yes) in GOALS.items():
        stats = table.get(criterion)
        if not stats or stats.get("accuracy") is None:
            continue
        figure = f"{criterion} {_with_ci(stats['accuracy'], stats.get('accuracy_ci'))}"
        judged = stats["n"] >= GOAL_MIN_REPLIES
        if not judged:
            few.append(f"{criterion} ({stats['n']})")
        elif stats["accuracy"] < min_accuracy:
            missed.append(f"{criterion} accuracy >= {min_accuracy:.0%}")
        if max_false_yes is not None and stats.get("false_yes_rate") is not None:
            figure += f" (false yes {_with_ci(stats['false_yes_rate'], stats.get('false_yes_ci'))})"
            if judged and stats["false_yes_rate"] > max_false_yes:
                missed.append(f"{criterion} false yes <= {max_false_yes:.0%}")
        figures.append(figure)
    note = (
        f"This run's model ({model}) is of the {family} family; on the calibration's {family} "
        f"replies the judge scored {', '.join(figures)}."
    )
    if few:
        note += f" Too few labelled replies to hold against the grader's goals: {', '.join(few)}."
    if missed:
        affirms_missed = any(goal.startswith("affirms ") for goal in missed)
        rests = " (control and random_vector count affirms)" if affirms_missed else ""
        note += (
            f" Below the grader's goals there ({', '.join(missed)}): verdicts that rest on "
            f"these criteria{rests} are less certain for this model; calibrate an LLM judge on "
            "the shipped corpus and grade with it (README, Calibrating a judge)."
        )
    return note


def calibration_markdown(result: Mapping[str, Any], model: str | None = None) -> str:
    """The calibration as a Markdown section for reports: all replies, then per family.

    With the run's `model`, a paragraph on its family's figures (`family_note`) comes first.
    """
    note = family_note(result, model) if model is not None else ""
    out = [
        "",
        "### Judge calibration",
        "",
        *([note, ""] if note else []),
        _calibration_intro(result) + ":",
        "",
        "| criterion | n | accuracy (95% CI) | false yes (95% CI) | miss | kappa | tp/fp/tn/fn "
        "| errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    out += [
        "| " + " | ".join(cells) + " |"
        for family, cells in _calibration_rows(result)
        if family == "all"
    ]
    by_family = [
        "| " + " | ".join((family, *cells)) + " |"
        for family, cells in _calibration_rows(result)
        if family != "all"
    ]
    if by_family:
        out += [
            "",
            "| family | criterion | n | accuracy (95% CI) | false yes (95% CI) | miss | kappa "
            "| tp/fp/tn/fn | errors |",
            "|---|---|---|---|---|---|---|---|---|",
            *by_family,
        ]
    return "\n".join(out) + "\n"


def calibration_html(result: Mapping[str, Any], model: str | None = None) -> str:
    """The calibration as an HTML section (`id='calibration'`) for report.html.

    With the run's `model`, a paragraph on its family's figures (`family_note`) comes first.
    """
    e = html.escape
    note = family_note(result, model) if model is not None else ""
    head = "".join(
        f"<th>{e(h)}</th>"
        for h in (
            "family", "criterion", "n", "accuracy (95% CI)", "false yes (95% CI)", "miss",
            "kappa",
            "tp/fp/tn/fn", "errors",
        )
    )  # fmt: skip
    rows = "".join(
        "<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in (family, *cells)) + "</tr>"
        for family, cells in _calibration_rows(result)
    )
    return (
        "<section id='calibration'><h2>Judge calibration</h2>"
        + (f"<p class='family-note'>{e(note)}</p>" if note else "")
        + f"<p>{e(_calibration_intro(result))}. A judge error counts against accuracy and is "
        "neither a yes nor a no in the confusion counts.</p>"
        f"<table class='judge'><tr>{head}</tr>{rows}</table></section>"
    )


def _calibration_intro(result: Mapping[str, Any]) -> str:
    return (
        f"{result['judge']} on {result['n_cases']} labelled cases "
        f"({result.get('labels', 'labels')}; {result['n_errors']} judge errors)"
    )


def _calibration_rows(result: Mapping[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
    """(family or "all", cells) per criterion: overall first, then each family's."""
    tables = [("all", result["criteria"]), *result.get("by_family", {}).items()]
    rows: list[tuple[str, tuple[str, ...]]] = []
    for family, table in tables:
        for criterion, s in table.items():
            c = s["confusion"]
            cells = (
                criterion,
                str(s["n"]),
                _with_ci(s["accuracy"], s.get("accuracy_ci")),
                _with_ci(s["false_yes_rate"], s.get("false_yes_ci")),
                _pct(s["miss_rate"]),
                _num(s["kappa"]),
                f"{c['tp']}/{c['fp']}/{c['tn']}/{c['fn']}",
                str(s.get("errors", 0)),
            )
            rows.append((family, cells))
    return rows


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ci(interval: Sequence[float] | None) -> str:
    """The interval in percent, as [94.0, 98.7]; "-" without one (older calibration files)."""
    return "-" if not interval else f"[{interval[0]:.1%}, {interval[1]:.1%}]".replace("%", "")


def _with_ci(value: float | None, interval: Sequence[float] | None) -> str:
    return _pct(value) if not interval else f"{_pct(value)} {_ci(interval)}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def add_command(commands: Any, judge_options: Any, make_judge: Any) -> None:
    """Add `introspection-bench calibrate` to the CLI's subcommands.

    Args:
        commands: The CLI's subparsers object.
        judge_options: Adds --judge and --judge-url to a parser.
        make_judge: Builds the judge from parsed arguments.

    """
    parser = commands.add_parser(
        "calibrate",
        help="measure a judge on labelled replies: per-criterion accuracy, false-yes and miss "
        "rates, Cohen's kappa and confusion counts (JSON)",
    )
    parser.add_argument(
        "--labels",
        default=str(CORPUS),
        help="labelled JSONL file or directory (default: the shipped corpus, "
        "fixtures/grading/corpus)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="JSON output (default: <cache>/calibrations/<judge>.json, which reports read)",
    )
    parser.add_argument(
        "--by-model",
        action="store_true",
        help="also print one table per source model (the JSON always holds them)",
    )
    judge_options(parser)

    def run(args: Any) -> int:
        from introspection_bench.errors import JudgeError
        from introspection_bench.models import cache_root

        labels = Path(args.labels)
        if not labels.exists():
            raise JudgeError(
                f"--labels {labels}: no such file or directory; pass a JSONL of labelled cases "
                "(fixtures/grading/README.md) or omit it to use the shipped corpus"
            )
        result = calibrate_file(make_judge(args), labels)
        out = Path(args.out) if args.out else default_path(result["judge"], cache_root())
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(format_calibration(result, by_model=args.by_model))
        print(f"calibration written to {out}")
        return 0

    parser.set_defaults(handler=run)
