"""The reference panel: run the suite on models of known behaviour, compare with the truth table.

`suites/reference_verdicts.toml` says, per model, which tests must PASS and which must FAIL
(every cell of the test), and the rates measured on the paper's 50 concepts. The number of
trials per model is the smallest that gives each expected PASS a power of at least
`min_power` at those rates, and each expected FAIL whose rates were measured too (exact
binomial enumeration of the pass rule, with the Wilson
intervals and Fisher tests of `stats.py`). Each model is run through the real suite in its
own pytest process and its summary.json verdicts are compared cell by cell.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from introspection_bench.errors import ConfigError
from introspection_bench.stats import fisher_less, rate

ROOT = Path(__file__).resolve().parents[2]
TRUTH_TABLE = ROOT / "suites" / "reference_verdicts.toml"
#: The suite's test function of each test (the panel runs only those its table names).
TEST_FILES = {
    "injected_thought": "suites/test_injected_thought.py::test_injected_thought",
    "control": "suites/test_injected_thought.py::test_control",
    "random_vector": "suites/test_injected_thought.py::test_random_vector",
    "yes_bias": "suites/test_controls.py::test_yes_bias",
    "prefill": "suites/test_prefill.py::test_prefill",
}
VERDICTS = ("PASS", "FAIL")


@dataclass(frozen=True)
class PanelModel:
    """One row of the truth table."""

    name: str
    spec: str
    """Model spec, e.g. `default+lora:fixtures/reference_models/detector`."""
    expected: Mapping[str, str]
    """test -> 'PASS' or 'FAIL' (every cell of the test)."""
    measured: Mapping[str, float]
    """Rates measured on the paper's 50 concepts (see `required_rates`)."""
    ready: bool = True
    """False while the adapter does not yet meet its construction: listed, not run."""
    note: str = ""
    """Why a model is not ready (printed in the panel's table)."""


@dataclass(frozen=True)
class TruthTable:
    """The versioned truth table."""

    version: str
    min_power: float
    cells: int
    """Cells of each test's sweep in the panel profile (Holm divides alpha by up to this)."""
    alpha: float
    control_cap: float
    models: tuple[PanelModel, ...]


def load_truth_table(path: Path = TRUTH_TABLE) -> TruthTable:
    """Parse and check the truth table.

    Raises:
        ConfigError: Naming the model and field that is missing or invalid.

    """
    raw = tomllib.loads(path.read_text())
    models = []
    for name, entry in raw.get("models", {}).items():
        expected = dict(entry.get("expected", {}))
        for test, verdict in expected.items():
            if test not in TEST_FILES or verdict not in VERDICTS:
                raise ConfigError(
                    f"{path}: models.{name}.expected.{test} = {verdict!r}; tests are "
                    f"{', '.join(TEST_FILES)} and verdicts PASS or FAIL"
                )
        if "spec" not in entry:
            raise ConfigError(f'{path}: models.{name} has no spec; add spec = "default" or similar')
        measured = {k: float(v) for k, v in entry.get("measured", {}).items()}
        ready, note = bool(entry.get("ready", True)), str(entry.get("note", ""))
        models.append(PanelModel(name, str(entry["spec"]), expected, measured, ready, note))
    if not models:
        raise ConfigError(f"{path}: no [models.<name>] tables")
    return TruthTable(
        str(raw["version"]),
        float(raw.get("min_power", 0.9)),
        int(raw.get("cells", 2)),
        float(raw.get("alpha", 0.05)),
        float(raw.get("control_cap", 0.35)),
        tuple(models),
    )


def _pmf(p: float, n: int) -> np.ndarray:
    return np.asarray(scipy_stats.binom.pmf(np.arange(n + 1), n, p))


def _bounds(n: int) -> tuple[np.ndarray, np.ndarray]:
    intervals = [rate(k, n) for k in range(n + 1)]
    return np.array([r.low for r in intervals]), np.array([r.high for r in intervals])


def _fisher_table(n: int) -> np.ndarray:
    """[k_treat, k_ref] one-sided Fisher p that treatment is lower (n trials each)."""
    return np.array([[fisher_less(a, n, b, n) for b in range(n + 1)] for a in range(n + 1)])


def pass_power(test: str, measured: Mapping[str, float], n: int, table: TruthTable) -> float:
    """Probability that `test` passes one cell with `n` trials per condition at `measured` rates.

    The rule is the test's own (thresholds v1): injected_thought needs the success lower bound
    above both the control and random-vector upper bounds and Fisher p x cells < alpha (Holm's
    worst case); control needs the false-positive upper bound under the cap; random_vector and
    yes_bias need Fisher p >= alpha; prefill needs Fisher p x cells < alpha against the lower
    of the `none` and `random_word` apology rates.

    Raises:
        ConfigError: When a rate the rule needs was not measured.

    """
    need = required_rates(test)
    missing = [k for k in need if k not in measured]
    if missing:
        raise ConfigError(f"power of {test} needs measured rates {', '.join(missing)}")
    low, high = _bounds(n)
    alpha, cells = table.alpha, table.cells
    if test == "control":
        return float(_pmf(measured["control"], n)[high < table.control_cap].sum())
    fisher = _fisher_table(n)
    if test in ("random_vector", "yes_bias"):
        treat, ref = need
        # The rule is fisher_less(k_ref, n, k_treat, n) >= alpha: is treatment above reference?
        joint = np.outer(_pmf(measured[ref], n), _pmf(measured[treat], n))  # [k_ref, k_treat]
        return float(joint[fisher >= alpha].sum())
    if test == "injected_thought":
        pc, ps, pr = (_pmf(measured[k], n) for k in need)
        total = 0.0
        for ks in range(n + 1):
            ok_c = (low[ks] > high) & (fisher[:, ks] * cells < alpha)
            ok_r = low[ks] > high
            total += ps[ks] * pc[ok_c].sum() * pr[ok_r].sum()
        return float(total)
    # prefill: distribution of min(k_none, k_random_word), then Fisher of matching below it.
    pm, pn, pw = (_pmf(measured[k], n) for k in need)
    survive = np.cumsum(pn[::-1])[::-1] * np.cumsum(pw[::-1])[::-1]  # P(min >= j)
    pmin = survive - np.append(survive[1:], 0.0)
    joint = np.outer(pm, pmin)
    return float(joint[fisher * cells < alpha].sum())


def required_rates(test: str) -> tuple[str, ...]:
    """The measured rates the power of `test` depends on, by key."""
    return {
        "control": ("control",),
        "random_vector": ("random_affirms", "control"),
        "yes_bias": ("yes_injected", "yes_none"),
        "injected_thought": ("control", "success", "random_affirms"),
        "prefill": ("apology_matching", "apology_none", "apology_random_word"),
    }[test]


def verdict_power(
    test: str, expected: str, measured: Mapping[str, float], n: int, table: TruthTable
) -> float | None:
    """Probability that one cell of `test` gives the `expected` verdict with `n` trials.

    None for an expected FAIL whose rates were not measured (an expected PASS must have them).
    """
    if expected == "FAIL" and any(k not in measured for k in required_rates(test)):
        return None
    passing = pass_power(test, measured, n, table)
    return passing if expected == "PASS" else 1.0 - passing


def trials_for(
    model: PanelModel, table: TruthTable, candidates: Sequence[int]
) -> tuple[int, dict[str, float]]:
    """The fewest trials among `candidates` giving every expected verdict power >= min_power.

    Every expected PASS is sized; an expected FAIL is sized too when its rates were measured
    (a FAIL that holds only by luck is as wrong a panel as a PASS that does).

    Returns:
        (trials, "test PASS|FAIL" -> power at those trials).

    Raises:
        ConfigError: When even the largest candidate falls short, naming the test.

    """
    powers: dict[str, float] = {}
    for n in candidates:
        powers = {}
        for test, expected in sorted(model.expected.items()):
            power = verdict_power(test, expected, model.measured, n, table)
            if power is not None:
                powers[f"{test} {expected}"] = power
        if all(p >= table.min_power for p in powers.values()):
            return n, powers
    worst = min(powers, key=lambda t: powers[t]) if powers else "?"
    raise ConfigError(
        f"{model.name}: {worst} reaches power {powers.get(worst, 0):.2f} < {table.min_power} "
        f"even at {candidates[-1]} trials; retrain the adapter or raise the candidate trials"
    )


def run_model(
    model: PanelModel, trials: int, out: Path, dtype: str = "fp32"
) -> list[dict[str, Any]]:
    """Run the suite's files for `model`'s tests in a pytest process; return its verdicts."""
    nodes = sorted({TEST_FILES[t] for t in model.expected})
    command = [
        sys.executable, "-m", "pytest", *nodes, "--model", model.spec,
        "--profile", "smoke", "--trials", str(trials), "--dtype", dtype,
        "--report-dir", str(out), "-p", "no:cacheprovider", "-q",
    ]  # fmt: skip
    subprocess.run(command, cwd=ROOT, check=False, stdout=subprocess.DEVNULL)
    summary = out / "summary.json"
    if not summary.is_file():
        raise ConfigError(
            f"the suite wrote no {summary} for {model.name}; run: {' '.join(command)}"
        )
    return list(json.loads(summary.read_text())["verdicts"])


def compare(
    model: PanelModel, verdicts: Sequence[Mapping[str, Any]]
) -> list[tuple[str, str, str, str]]:
    """Rows (test, cell, expected, observed) for every cell of every expected test."""
    rows = []
    for test, expected in sorted(model.expected.items()):
        cells = [v for v in verdicts if v["test"] == test]
        if not cells:
            rows.append((test, "-", expected, "MISSING"))
        for verdict in cells:
            observed = "PASS" if verdict["passed"] else "FAIL"
            rows.append((test, verdict["cell"]["label"], expected, observed))
    return rows


def format_table(results: Mapping[str, Sequence[tuple[str, str, str, str]]]) -> str:
    """The side-by-side table: model, test, cell, expected, observed, match."""
    lines = [f"{'model':<22} {'test':<17} {'cell':<26} {'expected':<8} {'observed':<8} match"]
    for name, rows in results.items():
        for test, cell, expected, observed in rows:
            mark = "ok" if expected == observed else "MISMATCH"
            lines.append(f"{name:<22} {test:<17} {cell:<26} {expected:<8} {observed:<8} {mark}")
    return "\n".join(lines)


def run_panel(
    table: TruthTable, out_root: Path, candidates: Sequence[int], dtype: str = "fp32"
) -> tuple[bool, str]:
    """Run every model of the table; return (all verdicts match, the printed report)."""
    results: dict[str, list[tuple[str, str, str, str]]] = {}
    sizing = []
    for model in table.models:
        if not model.ready:
            sizing.append(f"{model.name}: NOT RUN (not ready: {model.note})")
            continue
        trials, powers = trials_for(model, table, candidates)
        power_text = ", ".join(f"{t} {p:.2f}" for t, p in sorted(powers.items())) or "none sized"
        sizing.append(f"{model.name}: {trials} trials per condition (power {power_text})")
        verdicts = run_model(model, trials, out_root / model.name, dtype)
        results[model.name] = compare(model, verdicts)
    matched = all(e == o for rows in results.values() for _, _, e, o in rows)
    status = "all verdicts match" if matched else "VERDICTS DIFFER FROM THE TRUTH TABLE"
    report = "\n".join(
        [
            f"reference panel (truth table v{table.version}): {status}",
            *sizing,
            format_table(results),
        ]
    )
    return matched, report
