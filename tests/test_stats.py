"""Tests of introspection_bench.stats against published values, properties and error paths."""

from __future__ import annotations

import ast
import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats
from statsmodels.stats.proportion import proportion_confint

from introspection_bench import stats
from introspection_bench.errors import ConfigError

PROPERTY = settings(max_examples=60, deadline=None)


def _width(low: float, high: float) -> float:
    return high - low


# --- published values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.2775),  # Newcombe (1998), Stat Med 17:857, Table I
        (5, 10, 0.2366, 0.7634),
        (81, 263, 0.2553, 0.3662),
        (10, 10, 0.7225, 1.0),
    ],
)
def test_wilson_matches_published_intervals(k: int, n: int, low: float, high: float) -> None:
    result = stats.rate(k, n)
    assert result.low == pytest.approx(low, abs=5e-5)
    assert result.high == pytest.approx(high, abs=5e-5)
    assert result.estimate == pytest.approx(k / n)
    assert (result.method, result.n_clusters, result.design_effect) == ("wilson", None, 1.0)


def test_describe_formats_count_rate_and_interval() -> None:
    assert stats.rate(12, 50).describe() == "12/50 = 24.0% [14.3%, 37.4%]"


def test_empty_rate_is_nan_with_full_interval() -> None:
    result = stats.rate(0, 0)
    assert math.isnan(result.estimate)
    assert (result.low, result.high) == (0.0, 1.0)
    assert result.describe() == "0/0 = n/a [0.0%, 100.0%]"
    assert result.to_dict()["estimate"] is None


def test_to_dict_is_strict_json_in_field_order() -> None:
    result = stats.clustered_rate([True, False, True, True], ["a", "a", "b", "b"])
    as_dict = result.to_dict()
    assert list(as_dict) == [f.name for f in dataclasses.fields(stats.Rate)]
    assert json.loads(json.dumps(as_dict, allow_nan=False)) == as_dict


def test_rate_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.rate(1, 2).k = 2  # type: ignore[misc]


def test_smaller_alpha_gives_wider_interval() -> None:
    assert _width(*_bounds(stats.rate(5, 20, alpha=0.01))) > _width(*_bounds(stats.rate(5, 20)))


def _bounds(result: stats.Rate) -> tuple[float, float]:
    return result.low, result.high


def test_binomial_above_matches_hand_computed_tail() -> None:
    # P(X >= 7), X ~ Bin(10, 0.5) = (C(10,7)+C(10,8)+C(10,9)+C(10,10)) / 2^10 = 176/1024.
    assert stats.binomial_above(7, 10, 0.5) == pytest.approx(176 / 1024)
    assert stats.binomial_above(0, 10, 0.3) == pytest.approx(1.0)


def test_fisher_less_matches_lady_tasting_tea() -> None:
    # Fisher (1935): 8 cups, 4 of each; one-sided p for 3 correct is 17/70.
    assert stats.fisher_less(1, 4, 3, 4) == pytest.approx(17 / 70)
    assert stats.fisher_less(3, 4, 1, 4) == pytest.approx(69 / 70)
    assert stats.fisher_less(0, 4, 4, 4) == pytest.approx(1 / 70)


@pytest.mark.parametrize(
    ("counts", "low", "high"),
    [
        ((56, 70, 48, 80), 0.0524, 0.3339),  # Newcombe (1998), Stat Med 17:873, Table II, method 10
        ((9, 10, 3, 10), 0.1705, 0.8090),
        ((0, 10, 0, 20), -0.1611, 0.2775),
    ],
)
def test_newcombe_matches_published_intervals(
    counts: tuple[int, int, int, int], low: float, high: float
) -> None:
    result = stats.proportion_difference(*counts)
    k1, n1, k2, n2 = counts
    assert result.estimate == pytest.approx(k1 / n1 - k2 / n2)
    assert result.low == pytest.approx(low, abs=5e-5)
    assert result.high == pytest.approx(high, abs=5e-5)
    assert result.method == "newcombe"


def test_difference_p_value_agrees_with_chi_square() -> None:
    result = stats.proportion_difference(56, 70, 48, 80)
    table = [[56, 14], [48, 32]]
    chi2_p = scipy_stats.chi2_contingency(table, correction=False).pvalue
    # The Miettinen-Nurminen score test is Pearson's chi-square up to a factor N/(N-1).
    assert result.p_value == pytest.approx(chi2_p, rel=0.05)
    assert result.p_value < 0.05 and result.low > 0


@pytest.mark.parametrize("counts", [(0, 10, 0, 20), (10, 10, 20, 20), (3, 6, 5, 10)])
def test_difference_of_equal_rates_has_p_value_one(counts: tuple[int, int, int, int]) -> None:
    assert stats.proportion_difference(*counts).p_value == 1.0


def test_holm_matches_hand_worked_example() -> None:
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> monotone 0.06.
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert stats.holm([]) == []


def test_trials_for_power_matches_arcsine_formula() -> None:
    h = 2 * math.asin(math.sqrt(0.5)) - 2 * math.asin(math.sqrt(0.4))
    z = scipy_stats.norm.ppf(0.95) + scipy_stats.norm.ppf(0.8)
    expected = math.ceil(2 * (z / h) ** 2)
    assert stats.trials_for_power(0.4, 0.5) == expected == 305
    assert stats.trials_for_power(0.5, 0.4) == expected
    assert stats.trials_for_power(0.1, 0.5) < expected
    assert stats.trials_for_power(0.4, 0.5, power=0.9) > expected


# --- clustered rates ------------------------------------------------------------------------


def test_perfectly_clustered_rate_counts_each_cluster_once() -> None:
    successes = [True] * 10 + [False] * 10
    clusters = [c for c in "abcd" for _ in range(5)]
    result = stats.clustered_rate(successes, clusters)
    assert result.design_effect == pytest.approx(5.0)
    assert (result.k, result.n, result.n_clusters, result.estimate) == (10, 20, 4, 0.5)
    assert _bounds(result) == pytest.approx(_bounds(stats.rate(2, 4)))
    assert result.method == "wilson-clustered"


def test_clustered_icc_matches_one_way_anova_f() -> None:
    groups = [[1, 1, 1, 0], [0, 0, 1], [1, 1], [0, 0, 0, 0, 1], [1, 0, 1]]
    successes = [bool(v) for g in groups for v in g]
    clusters = [i for i, g in enumerate(groups) for _ in g]
    n, g = len(successes), len(groups)
    f_stat = scipy_stats.f_oneway(*[np.asarray(x, dtype=float) for x in groups]).statistic
    n0 = (n - sum(len(x) ** 2 for x in groups) / n) / (g - 1)
    icc = max(0.0, (f_stat - 1) / (f_stat + n0 - 1))
    result = stats.clustered_rate(successes, clusters)
    assert result.design_effect == pytest.approx(1 + (n / g - 1) * icc)


def test_negative_icc_is_clipped_to_no_widening() -> None:
    # Every cluster is half successes: between-cluster variance is zero, ICC estimate < 0.
    successes = [True, False] * 4
    clusters = [c for c in "abcd" for _ in range(2)]
    result = stats.clustered_rate(successes, clusters)
    assert result.design_effect == 1.0
    assert _bounds(result) == pytest.approx(_bounds(stats.rate(4, 8)))


def test_single_cluster_counts_as_one_effective_trial() -> None:
    result = stats.clustered_rate([True, True, False, True], ["x"] * 4)
    assert result.design_effect == pytest.approx(4.0)
    assert _bounds(result) == pytest.approx(proportion_confint(0.75, 1.0, method="wilson"))


def test_constant_outcomes_are_not_widened() -> None:
    result = stats.clustered_rate([True] * 6, ["a", "a", "b", "b", "c", "c"])
    assert result.design_effect == 1.0
    assert _bounds(result) == pytest.approx(_bounds(stats.rate(6, 6)))


def test_empty_clustered_rate() -> None:
    result = stats.clustered_rate([], [])
    assert math.isnan(result.estimate)
    assert (result.low, result.high, result.n_clusters) == (0.0, 1.0, 0)


# --- bootstrap ------------------------------------------------------------------------------


def test_bootstrap_is_close_to_normal_theory_for_a_large_sample() -> None:
    values = np.arange(200, dtype=float)
    result = stats.bootstrap_mean(values.tolist(), n_resamples=4000)
    half = 1.96 * values.std(ddof=1) / math.sqrt(len(values))
    assert result.estimate == pytest.approx(99.5)
    assert result.low == pytest.approx(99.5 - half, rel=0.02)
    assert result.high == pytest.approx(99.5 + half, rel=0.02)
    assert (result.method, result.n_resamples) == ("percentile", 4000)


def test_constant_values_give_a_point_interval() -> None:
    result = stats.bootstrap_mean([0.25] * 5, n_resamples=100)
    assert (result.low, result.estimate, result.high) == (0.25, 0.25, 0.25)


def test_clustered_bootstrap_ignores_duplicates_within_clusters() -> None:
    base = [0.1, 0.9, 0.4, 0.7, 0.2, 0.6]
    single = stats.bootstrap_mean(base, clusters=list(range(6)), n_resamples=500)
    copied = [v for v in base for _ in range(10)]
    labels = [i for i in range(6) for _ in range(10)]
    clustered = stats.bootstrap_mean(copied, clusters=labels, n_resamples=500)
    naive = stats.bootstrap_mean(copied, n_resamples=500)
    assert _bounds_i(clustered) == pytest.approx(_bounds_i(single))
    assert clustered.method == "percentile-clustered"
    assert _width(*_bounds_i(naive)) < 0.6 * _width(*_bounds_i(clustered))


def _bounds_i(result: stats.Interval) -> tuple[float, float]:
    return result.low, result.high


def test_bootstrap_leaves_global_rng_alone_and_depends_on_seed() -> None:
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    values = [0.1, 0.5, 0.9, 0.3, 0.8, 0.2]
    first = stats.bootstrap_mean(values, n_resamples=200, seed=1)
    assert np.array_equal(np.random.get_state()[1], before)
    assert first != stats.bootstrap_mean(values, n_resamples=200, seed=2)


# --- properties -----------------------------------------------------------------------------

counts = st.integers(min_value=0, max_value=5000).flatmap(
    lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n))
)
alphas = st.floats(min_value=0.001, max_value=0.5)


@PROPERTY
@given(counts, alphas)
def test_rate_interval_contains_estimate(kn: tuple[int, int], alpha: float) -> None:
    k, n = kn
    result = stats.rate(k, n, alpha=alpha)
    assert 0.0 <= result.low <= result.high <= 1.0
    if n:
        assert result.low <= result.estimate <= result.high


@PROPERTY
@given(counts.filter(lambda kn: kn[1] > 0), st.integers(min_value=2, max_value=20))
def test_interval_narrows_as_n_grows(kn: tuple[int, int], factor: int) -> None:
    k, n = kn
    small, large = stats.rate(k, n), stats.rate(k * factor, n * factor)
    assert _width(*_bounds(large)) < _width(*_bounds(small))


trials = st.lists(st.tuples(st.booleans(), st.integers(min_value=0, max_value=6)), max_size=60)


@PROPERTY
@given(trials)
def test_clustered_interval_never_narrower(pairs: list[tuple[bool, int]]) -> None:
    successes = [s for s, _ in pairs]
    result = stats.clustered_rate(successes, [c for _, c in pairs])
    plain = stats.rate(sum(successes), len(successes))
    assert result.design_effect >= 1.0
    assert result.low <= plain.low + 1e-12 and result.high >= plain.high - 1e-12
    assert 0.0 <= result.low <= result.high <= 1.0


@PROPERTY
@given(st.lists(st.booleans(), min_size=1, max_size=60))
def test_singleton_clusters_equal_plain_rate(successes: list[bool]) -> None:
    result = stats.clustered_rate(successes, list(range(len(successes))))
    assert _bounds(result) == _bounds(stats.rate(sum(successes), len(successes)))
    assert result.design_effect == 1.0


@PROPERTY
@given(counts.filter(lambda kn: kn[1] > 0), counts.filter(lambda kn: kn[1] > 0))
def test_difference_is_well_formed(first: tuple[int, int], second: tuple[int, int]) -> None:
    result = stats.proportion_difference(*first, *second)
    assert -1.0 <= result.low <= result.estimate <= result.high <= 1.0
    assert 0.0 <= result.p_value <= 1.0


@PROPERTY
@given(st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=12))
def test_holm_never_lowers_and_keeps_order(p_values: list[float]) -> None:
    adjusted = stats.holm(p_values)
    assert all(p <= a <= 1.0 for p, a in zip(p_values, adjusted, strict=True))
    ranked = sorted(zip(p_values, adjusted, strict=True))
    assert all(a1 <= a2 for (_, a1), (_, a2) in zip(ranked, ranked[1:], strict=False))


@PROPERTY
@given(counts.filter(lambda kn: 0 < kn[0] < kn[1]), st.floats(min_value=0.0, max_value=1.0))
def test_binomial_above_falls_as_k_rises(kn: tuple[int, int], p0: float) -> None:
    k, n = kn
    assert 0.0 <= stats.binomial_above(k + 1, n, p0) <= stats.binomial_above(k, n, p0) <= 1.0


@PROPERTY
@given(
    st.lists(st.floats(min_value=-1e3, max_value=1e3), min_size=2, max_size=30),
    st.integers(min_value=0, max_value=2**32),
    st.booleans(),
)
def test_bootstrap_is_deterministic_for_a_seed(
    values: list[float], seed: int, grouped: bool
) -> None:
    clusters = [i // 2 for i in range(len(values))] if grouped and len(values) > 2 else None
    first = stats.bootstrap_mean(values, clusters=clusters, n_resamples=50, seed=seed)
    again = stats.bootstrap_mean(values, clusters=clusters, n_resamples=50, seed=seed)
    assert first == again
    assert first.low <= first.high


# --- error paths ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: stats.rate(6, 5), "k=6"),
        (lambda: stats.rate(-1, 5), "k=-1"),
        (lambda: stats.rate(1, -5), "n=-5"),
        (lambda: stats.rate(1.5, 3), "k=1.5"),
        (lambda: stats.rate(True, 3), "k=True"),
        (lambda: stats.rate(1, 2, alpha=0.0), "alpha=0.0"),
        (lambda: stats.rate(1, 2, alpha=1.5), "alpha=1.5"),
        (lambda: stats.rate(1, 2, alpha=float("nan")), "alpha=nan"),
        (lambda: stats.rate(1, 2, alpha="0.05"), "alpha='0.05'"),
        (lambda: stats.clustered_rate([True, False], ["a"]), "len(successes)=2"),
        (lambda: stats.clustered_rate([True, 2], ["a", "b"]), "2"),
        (lambda: stats.clustered_rate(["yes"], ["a"]), "'yes'"),
        (lambda: stats.clustered_rate([True], [["a"]]), "unhashable"),
        (lambda: stats.clustered_rate([True], ["a"], alpha=2), "alpha=2"),
        (lambda: stats.binomial_above(0, 0, 0.5), "n=0"),
        (lambda: stats.binomial_above(3, 10, 1.5), "p0=1.5"),
        (lambda: stats.binomial_above(11, 10, 0.5), "k=11"),
        (lambda: stats.fisher_less(1, 4, 0, 0), "n_ref=0"),
        (lambda: stats.fisher_less(5, 4, 1, 4), "k_treat=5"),
        (lambda: stats.proportion_difference(1, 0, 1, 2), "k1=1"),
        (lambda: stats.proportion_difference(1, 2, 0, 0), "n2=0"),
        (lambda: stats.proportion_difference(1, 2, 1, 2, alpha=-0.1), "alpha=-0.1"),
        (lambda: stats.bootstrap_mean([]), "len(values)=0"),
        (lambda: stats.bootstrap_mean([1.0]), "len(values)=1"),
        (lambda: stats.bootstrap_mean([1.0, float("nan")]), "nan"),
        (lambda: stats.bootstrap_mean([1.0, float("inf")]), "inf"),
        (lambda: stats.bootstrap_mean(["a", "b"]), "'a'"),
        (lambda: stats.bootstrap_mean([1.0, 2.0], clusters=["a"]), "len(clusters)=1"),
        (lambda: stats.bootstrap_mean([1.0, 2.0], clusters=["a", "a"]), "1 distinct"),
        (lambda: stats.bootstrap_mean([1.0, 2.0], n_resamples=0), "n_resamples=0"),
        (lambda: stats.bootstrap_mean([1.0, 2.0], n_resamples=2.5), "n_resamples=2.5"),
        (lambda: stats.bootstrap_mean([1.0, 2.0], seed=1.5), "seed=1.5"),
        (lambda: stats.bootstrap_mean([1.0, 2.0], alpha=1), "alpha=1"),
        (lambda: stats.holm([0.1, 1.2]), "p_values[1]=1.2"),
        (lambda: stats.holm([float("nan")]), "p_values[0]=nan"),
        (lambda: stats.holm(["0.1"]), "p_values[0]='0.1'"),
        (lambda: stats.trials_for_power(0.3, 0.3), "0.3"),
        (lambda: stats.trials_for_power(-0.1, 0.3), "p_control=-0.1"),
        (lambda: stats.trials_for_power(0.1, 1.3), "p_treatment=1.3"),
        (lambda: stats.trials_for_power(0.1, 0.3, power=1.0), "power=1.0"),
        (lambda: stats.trials_for_power(0.1, 0.3, alpha=0), "alpha=0"),
    ],
)
def test_bad_inputs_raise_config_error_naming_the_value(
    call: Callable[[], object], needle: str
) -> None:
    with pytest.raises(ConfigError) as info:
        call()
    assert needle in str(info.value)


def test_stats_module_imports_neither_torch_nor_pytest() -> None:
    tree = ast.parse(Path(stats.__file__).read_text())
    roots = {
        alias.name.split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, ast.Import)
        for alias in n.names
    }
    roots |= {
        n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
    }
    assert not roots & {"torch", "pytest"}
    assert {"scipy", "statsmodels"} <= roots


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=12))
def test_holm_equals_statsmodels(p_values):
    from statsmodels.stats.multitest import multipletests

    expected = multipletests(p_values, method="holm")[1]
    assert stats.holm(p_values) == pytest.approx(list(expected), abs=1e-12)
