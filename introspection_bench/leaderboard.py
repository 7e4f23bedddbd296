"""Leaderboard: validate submitted runs and build a static, sortable page (no CDN, vanilla JS).

A submission is a run directory (or its summary.json) with `summary.json` and `trials.jsonl`.
Nothing a submission claims is shown as it is: every verdict, rate, interval and p-value is
recomputed from its trials.jsonl by the protocol modules' own `evaluate` with this checkout's
pinned thresholds (suites/thresholds.toml), and the summary's copies are only compared. It is
accepted only when
- summary.json matches the schema, and the run is complete (every test of its configuration
  decided, every trial graded without error);
- its stimuli hash is the pinned `fixtures/paper_stimuli.json` of this package, and it was
  decided under the pinned thresholds version;
- every metric and verdict of the summary equals the recomputed one, and the records carry
  the summary's model, fingerprint, stimuli and judge;
- a deterministic sample of its completions, re-graded by the offline rule judge, agrees with
  its grades within the rule judge's measured error (fixtures/grading);
- the required controls are present (no-injection false positives, random vectors, yes-bias);
- its trial content is not the same as another submission's under another model identity;
- it was graded by the same judge as every other accepted submission;
- a declared (user) protocol is decided by the rule its summary records as data, rebuilt from
  this package's `protocols.rules` (no submitted code runs; a rule recorded only as code is
  rejected), and declared with the same digest as in the other accepted submissions.
Rejected submissions are listed on the page with their reasons; the page shows the recomputed
numbers.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from introspection_bench.submission import (
    REQUIRED_CONTROLS,
    Checks,
    Submission,
    default_checks,
    load_submission,
    record_digests,
)

__all__ = [
    "REQUIRED_CONTROLS",
    "Leaderboard",
    "Submission",
    "Value",
    "build_leaderboard",
    "check_duplicates",
    "check_same_declarations",
    "check_same_judge",
    "leaderboard_values",
    "load_submission",
    "render_page",
]
LEADERBOARD_HTML = "index.html"
LEADERBOARD_JSON = "leaderboard.json"
#: Two submissions whose records are this share identical (of the smaller) are the same run.
DUPLICATE_SHARE = 0.5


@dataclass(frozen=True)
class Value:
    """One leaderboard number with its 95% interval and where it was taken."""

    estimate: float
    low: float
    high: float
    text: str
    """As shown: `5/8 = 62.5% [30.6%, 86.3%] @ L8 s2`."""


# -- validation across submissions -------------------------------------------------------------


def _identity(s: Submission) -> tuple[str, str]:
    assert s.summary is not None  # only called on submissions with a summary (typing only)
    identity = s.summary["identity"]
    return str(identity["model"]), str(identity["model_fingerprint"])


def check_duplicates(submissions: Sequence[Submission]) -> None:
    """Reject every copy of the same trials submitted under different model identities.

    Two submissions are the same run when at least `DUPLICATE_SHARE` of the smaller one's
    records (trial id, seed, prompt, completion, injected norm, extra; not the model name,
    fingerprint or grades) are identical in the other. Submissions of one identity may share
    records (e.g. the same model with another sweep shares its control trials).
    """
    read = [s for s in submissions if s.summary is not None and s.records]
    digests = {id(s): record_digests(s.records) for s in read}
    for i, a in enumerate(read):
        for b in read[i + 1 :]:
            if _identity(a) == _identity(b):
                continue
            shared = len(digests[id(a)] & digests[id(b)])
            smaller = min(len(digests[id(a)]), len(digests[id(b)]))
            if smaller and shared / smaller >= DUPLICATE_SHARE:
                for this, other in ((a, b), (b, a)):
                    model, fingerprint = _identity(other)
                    this.reasons.append(
                        f"same trial content as {other.source} ({shared} of {smaller} records "
                        f"identical), submitted as model {model} (fingerprint "
                        f"{fingerprint[:12]}): one run under two identities"
                    )


def check_same_judge(submissions: Sequence[Submission], judge: str | None = None) -> str | None:
    """Reject accepted submissions graded by another judge than `judge` (default: most common)."""
    judges = Counter(
        s.summary["identity"]["judge"] for s in submissions if s.accepted and s.summary
    )
    if not judges:
        return judge
    chosen = judge or sorted(judges.items(), key=lambda item: (-item[1], item[0]))[0][0]
    for s in submissions:
        if s.accepted and s.summary and s.summary["identity"]["judge"] != chosen:
            s.reasons.append(
                f"graded by {s.summary['identity']['judge']}; this leaderboard uses {chosen}"
            )
    return chosen


def check_same_declarations(submissions: Sequence[Submission]) -> None:
    """Reject accepted submissions that declare a protocol name with another declaration.

    A user's protocol is decided by the rule its summary records (`protocols.recorded`); the
    same name must mean the same experiment on one page, so per name the digest declared by
    most accepted submissions (ties: the smallest digest) wins, and the others are rejected.
    """
    digests: dict[str, Counter[str]] = {}
    for s in submissions:
        if s.accepted and s.summary:
            for name, data in (s.summary.get("declarations") or {}).items():
                digests.setdefault(name, Counter())[str(data.get("digest"))] += 1
    chosen = {
        name: sorted(counts.items(), key=lambda item: (-item[1], item[0]))[0][0]
        for name, counts in digests.items()
    }
    for s in submissions:
        if not (s.accepted and s.summary):
            continue
        for name, data in sorted((s.summary.get("declarations") or {}).items()):
            if str(data.get("digest")) != chosen[name]:
                s.reasons.append(
                    f"declares protocol {name} as {str(data.get('digest'))[:8]}, other "
                    f"submissions as {chosen[name][:8]}: one name, two experiments"
                )


# -- columns -----------------------------------------------------------------------------------


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.1f}%"


def _where(metric: Mapping[str, Any]) -> str:
    parts = [
        f"L{metric['layer']}" if metric["layer"] is not None else "",
        f"s{metric['strength']:g}" if metric["strength"] is not None else "",
    ]
    return " ".join(p for p in parts if p)


def _rate_value(metric: Mapping[str, Any], note: str = "") -> Value:
    interval = metric["interval"]
    where = _where(metric)
    bounds = f"[{_pct(interval['low'])}, {_pct(interval['high'])}]"
    text = f"{metric['k']}/{metric['n']} = {_pct(metric['estimate'])} {bounds}"
    text += (f" @ {where}" if where else "") + note
    return Value(metric["estimate"], interval["low"], interval["high"], text)


def _best(
    metrics: Sequence[Mapping[str, Any]], name: str, condition: str
) -> Mapping[str, Any] | None:
    """Pick the cell with the highest lower bound (then estimate); its Holm p is in params."""
    candidates = [
        m for m in metrics if m["name"] == name and m["condition"] == condition and m.get("n")
    ]
    return max(candidates, key=lambda m: (m["interval"]["low"], m["estimate"]), default=None)


def _find(
    metrics: Sequence[Mapping[str, Any]], name: str, condition: str, layer: Any, strength: Any
) -> Any:
    for m in metrics:
        if (m["name"], m["condition"], m["layer"], m["strength"]) == (
            name,
            condition,
            layer,
            strength,
        ):
            return m
    return None


def _difference(a: Mapping[str, Any], b: Mapping[str, Any], where: str) -> Value:
    from introspection_bench.stats import proportion_difference

    d = proportion_difference(a["k"], a["n"], b["k"], b["n"])
    return Value(
        d.estimate,
        d.low,
        d.high,
        f"{100 * d.estimate:+.1f}% [{100 * d.low:+.1f}%, {100 * d.high:+.1f}%]"
        + (f" @ {where}" if where else ""),
    )


def leaderboard_values(summary: Mapping[str, Any]) -> dict[str, Value]:
    """Compute the row of one accepted submission: column key -> value (absent: not measured)."""
    metrics = summary["metrics"]
    values: dict[str, Value] = {}
    control = _find(metrics, "injected_thought.false_positive", "control", None, None)
    success = _best(metrics, "injected_thought.success", "injected")
    if success is not None:
        p = success["params"].get("p_holm")
        values["success"] = _rate_value(success, f", Holm p={p:.2g}" if p is not None else "")
        if control is not None and control.get("n"):
            values["net"] = _difference(success, control, _where(success))
    if control is not None:
        values["false_positive"] = _rate_value(control)
    naming = _best(metrics, "thought_vs_text.naming", "think")
    if naming is not None:
        values["thought_vs_text"] = _rate_value(naming)
    reduction = _prefill_reduction(metrics)
    if reduction is not None:
        values["prefill"] = reduction
    gap = _best(metrics, "intentional_control.think_minus_dont", "think-dont_think")
    if gap is not None:
        i = gap["interval"]
        values["intentional"] = Value(
            gap["estimate"],
            i["low"],
            i["high"],
            f"{gap['estimate']:+.4f} [{i['low']:+.4f}, {i['high']:+.4f}] @ {_where(gap)}",
        )
    if success is not None:
        injected = _find(
            metrics, "yes_bias.affirmative", "injected", success["layer"], success["strength"]
        )
        none = _find(metrics, "yes_bias.affirmative", "none", None, None)
        if injected is not None and none is not None and injected.get("n") and none.get("n"):
            values["yes_bias"] = _difference(injected, none, _where(injected))
    return values


def _prefill_reduction(metrics: Sequence[Mapping[str, Any]]) -> Value | None:
    """Best cell's apology reduction: min(none, random_word) - matching, Newcombe interval."""
    none = _find(metrics, "prefill.apology", "none", None, None)
    best = None
    for matching in (
        m for m in metrics if m["name"] == "prefill.apology" and m["condition"] == "matching"
    ):
        random_word = _find(
            metrics, "prefill.apology", "random_word", matching["layer"], matching["strength"]
        )
        references = [r for r in (none, random_word) if r is not None and r.get("n")]
        if not references or not matching.get("n"):
            continue
        reference = min(references, key=lambda r: r["estimate"])
        value = _difference(reference, matching, _where(matching))
        if best is None or (value.low, value.estimate) > (best.low, best.estimate):
            best = value
    return best


COLUMNS = (
    ("model", "Model", "text"),
    ("success", "Injected thought: success (best cell)", "num"),
    ("net", "Success net of false positives", "num"),
    ("false_positive", "Control false positives", "num"),
    ("thought_vs_text", "Thought vs text: naming", "num"),
    ("prefill", "Prefill apology reduction", "num"),
    ("intentional", "Intentional control gap (cosine)", "num"),
    ("yes_bias", "Yes-bias (injected - none)", "num"),
    ("config", "Configuration", "text"),
)


# -- page --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Leaderboard:
    """The outcome of one build."""

    accepted: Sequence[Submission]
    rejected: Sequence[Submission]
    judge: str | None
    html_path: Path
    json_path: Path


def build_leaderboard(
    paths: Sequence[Path],
    out_dir: Path,
    *,
    judge: str | None = None,
    checks: Checks | None = None,
) -> Leaderboard:
    """Validate submissions and write `index.html` and `leaderboard.json` into `out_dir`.

    Args:
        paths: Run directories or their summary.json files.
        out_dir: Where the page goes (created).
        judge: The grader every submission must use (default: the most common among valid ones).
        checks: Pinned thresholds, rule judge and its accuracy (default: `default_checks`).

    Returns:
        What was accepted and rejected, and where the page is. Every number shown is
        recomputed from the submission's records (`submission.recompute`).

    """
    checks = checks or default_checks()
    submissions = [load_submission(Path(p), checks) for p in paths]
    check_duplicates(submissions)
    check_same_declarations(submissions)
    chosen = check_same_judge(submissions, judge)
    for s in submissions:
        if s.accepted and s.recomputed is not None:
            s.values = leaderboard_values(s.recomputed)
    accepted = [s for s in submissions if s.accepted]
    rejected = [s for s in submissions if not s.accepted]
    accepted.sort(
        key=lambda s: -s.values["success"].estimate if "success" in s.values else math.inf
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, json_path = out_dir / LEADERBOARD_HTML, out_dir / LEADERBOARD_JSON
    html_path.write_text(render_page(accepted, rejected, chosen), encoding="utf-8")
    json_path.write_text(
        json.dumps(_as_json(accepted, rejected, chosen), indent=2), encoding="utf-8"
    )
    return Leaderboard(accepted, rejected, chosen, html_path, json_path)


def _model_name(s: Submission) -> str:
    assert s.summary is not None  # accepted submissions have one (typing only)
    return str(s.summary["identity"]["model"])


def _config_text(summary: Mapping[str, Any]) -> str:
    c = summary["config"]
    layers = ",".join(f"{x:g}" for x in c["layers"])
    strengths = ",".join(f"{x:g}" for x in c["strengths"])
    return (
        f"{c['profile']}; layers {layers}; strengths {strengths}; dose {c['dose']}; "
        f"{c['vector_method']}; "
        f"{c['trials']} trials/cell; {summary['n_trials']} trials; "
        f"judge {summary['identity']['judge']}"
    )


def _as_json(
    accepted: Sequence[Submission], rejected: Sequence[Submission], judge: str | None
) -> dict[str, Any]:
    return {
        "judge": judge,
        "accepted": [
            {
                "source": s.source,
                "model": _model_name(s),
                "model_fingerprint": s.summary["identity"]["model_fingerprint"],
                "config": s.summary["config"],
                "values": {
                    k: {"estimate": v.estimate, "low": v.low, "high": v.high, "text": v.text}
                    for k, v in s.values.items()
                },
            }
            for s in accepted
            if s.summary is not None
        ],
        "rejected": [{"source": s.source, "reasons": s.reasons} for s in rejected],
    }


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:90em;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.8em 0}
th,td{border:1px solid #ccc;padding:.3em .6em;font-size:.85em;
vertical-align:top;text-align:left}th{background:#f3f3f3}th.sortable{cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
.rejected td{color:#8a1c1c}.small{font-size:.8em;color:#555}
"""
# One click handler; `?sort=<column>&dir=asc|desc` clicks the header on load (for links and tests).
_SORT_JS = """
(function () {
  var table = document.getElementById('board');
  if (!table) { return; }
  var body = table.tBodies[0];
  function key(cell, numeric) {
    var raw = cell.getAttribute('data-value');
    if (!numeric) { return (raw === null ? cell.textContent : raw).toLowerCase(); }
    var x = parseFloat(raw);
    return isNaN(x) ? null : x;
  }
  function sortBy(th) {
    var numeric = th.getAttribute('data-type') === 'num';
    var current = th.getAttribute('aria-sort');
    var first = numeric ? 'descending' : 'ascending';
    var dir = current ? (current === 'descending' ? 'ascending' : 'descending') : first;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) {
      h.removeAttribute('aria-sort');
    });
    th.setAttribute('aria-sort', dir);
    var sign = dir === 'ascending' ? 1 : -1, index = th.cellIndex;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[index], numeric), y = key(b.cells[index], numeric);
      if (x === y) { return 0; }
      if (x === null) { return 1; }
      if (y === null) { return -1; }
      return (x < y ? -1 : 1) * sign;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
    th.classList.add('sortable');
    th.addEventListener('click', function () { sortBy(th); });
  });
  var params = new URLSearchParams(window.location.search);
  var wanted = params.get('sort');
  if (wanted) {
    var th = table.querySelector('th[data-key="' + wanted + '"]');
    if (th) {
      th.click();
      var want = {asc: 'ascending', desc: 'descending'}[params.get('dir')] || null;
      if (want && th.getAttribute('aria-sort') !== want) { th.click(); }
    }
  }
  document.body.setAttribute('data-sorted-by', wanted || '');
})();
"""


def render_page(
    accepted: Sequence[Submission], rejected: Sequence[Submission], judge: str | None
) -> str:
    """Render the page: one sortable row per accepted run, then the rejected ones with reasons."""
    e = html.escape
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>introspection-bench leaderboard</title><style>{_CSS}</style></head><body>",
        "<h1>introspection-bench leaderboard</h1>",
        f"<p class='small'>Graded by <code>{e(str(judge))}</code>. "
        "Rates are k/n with Wilson 95% intervals; "
        'differences use Newcombe intervals. "Best cell" is the sweep cell with the highest '
        "lower bound (its Holm-adjusted p over the sweep is shown): read its rate as "
        "optimistic. Click a header to sort.</p>",
        "<table id='board'><thead><tr>",
    ]
    out += [
        f"<th data-key='{key}' data-type='{kind}'>{e(title)}</th>" for key, title, kind in COLUMNS
    ]
    out.append("</tr></thead><tbody>")
    for s in accepted:
        assert s.summary is not None  # accepted submissions have one (typing only)
        cells = [
            f"<td data-value='{e(_model_name(s))}'>{e(_model_name(s))}<div class='small'>"
            f"{e(s.summary['identity']['model_fingerprint'][:12])}</div></td>"
        ]
        for key, _, _ in COLUMNS[1:-1]:
            value = s.values.get(key)
            if value is None:
                cells.append("<td data-value=''>-</td>")
            else:
                cells.append(f"<td data-value='{value.estimate!r}'>{e(value.text)}</td>")
        cells.append(f"<td>{e(_config_text(s.summary))}</td>")
        out.append(f"<tr class='submission'>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    out.append(f"<h2>Rejected submissions ({len(rejected)})</h2>")
    if rejected:
        out.append(
            "<table id='rejected'><thead><tr><th>submission</th><th>reasons</th></tr></thead>"
            "<tbody>"
        )
        for s in rejected:
            reasons = "".join(f"<li>{e(r)}</li>" for r in s.reasons)
            out.append(
                f"<tr class='rejected'><td>{e(s.source)}</td><td><ul>{reasons}</ul></td></tr>"
            )
        out.append("</tbody></table>")
    else:
        out.append("<p>none</p>")
    out.append(f"<script>{_SORT_JS}</script></body></html>")
    return "\n".join(out)
