"""Rates, intervals and tests behind every verdict (DESIGN.md, "Statistics").

Formulas come from scipy and statsmodels; the one hand-written estimator is the one-way ANOVA
intra-cluster correlation behind Kish's design effect (``clustered_rate``), which neither library
offers for binary data. Bootstraps use a seeded ``numpy.random.Generator``, never the global RNG.
"""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats as scipy_stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportion_effectsize,
    test_proportions_2indep,
)

from introspection_bench.errors import ConfigError


@dataclass(frozen=True)
class Rate:
    """A success rate k/n with its confidence interval."""

    k: int
    """Number of successes."""
    n: int
    """Number of trials."""
    estimate: float
    """Point estimate k/n; ``nan`` when n == 0."""
    low: float
    """Lower bound of the interval, in [0, 1]."""
    high: float
    """Upper bound of the interval, in [0, 1]."""
    method: str
    """Interval method: ``"wilson"`` or ``"wilson-clustered"``."""
    n_clusters: int | None
    """Number of distinct clusters (concepts) for a clustered rate; None when unclustered."""
    design_effect: float
    """Kish design effect the interval was widened by; 1.0 when unclustered."""

    def describe(self) -> str:
        """Render the rate for humans.

        Returns:
            A string like ``"12/50 = 24.0% [14.3%, 37.4%]"``; the estimate reads ``n/a`` when
            n == 0.

        """
        estimate = "n/a" if self.n == 0 else f"{self.estimate:.1%}"
        return f"{self.k}/{self.n} = {estimate} [{self.low:.1%}, {self.high:.1%}]"

    def to_dict(self) -> dict[str, Any]:
        """Serialise to plain JSON types.

        Returns:
            A dict with the fields in declaration order; a ``nan`` estimate becomes None so
            the result is strict JSON.

        """
        fields = asdict(self)
        fields["estimate"] = None if math.isnan(self.estimate) else self.estimate
        return fields


@dataclass(frozen=True)
class Difference:
    """A difference of two rates, rate1 - rate2, with interval and two-sided p-value."""

    estimate: float
    """Point estimate k1/n1 - k2/n2, in [-1, 1]."""
    low: float
    """Lower bound of the Newcombe interval."""
    high: float
    """Upper bound of the Newcombe interval."""
    p_value: float
    """Two-sided p-value of the score test that the rates are equal."""
    method: str
    """Interval method; always ``"newcombe"``."""


@dataclass(frozen=True)
class Interval:
    """A mean with a bootstrap confidence interval."""

    estimate: float
    """Sample mean of all values."""
    low: float
    """Lower percentile bound."""
    high: float
    """Upper percentile bound."""
    method: str
    """``"percentile"`` or ``"percentile-clustered"`` (whole clusters resampled)."""
    n_resamples: int
    """Number of bootstrap resamples drawn."""


def _check_number(value: float, name: str, *, open_interval: bool, example: str) -> float:
    """Return value as a float, or raise ConfigError unless it lies in (0, 1) or [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ConfigError(f"{name}={value!r} is not a number; pass a float such as {example}.")
    inside = 0.0 < value < 1.0 if open_interval else 0.0 <= value <= 1.0
    if not inside:
        bounds = "(0, 1)" if open_interval else "[0, 1]"
        raise ConfigError(f"{name}={value!r} is outside {bounds}; pass e.g. {example}.")
    return float(value)


def _check_alpha(alpha: float, name: str = "alpha", example: str = "0.05") -> float:
    """Return alpha as a float, or raise ConfigError unless 0 < alpha < 1."""
    return _check_number(alpha, name, open_interval=True, example=example)


def _check_probability(p: float, name: str) -> float:
    """Return p as a float, or raise ConfigError unless 0 <= p <= 1."""
    return _check_number(p, name, open_interval=False, example="0.5")


def _check_counts(k: int, n: int, *, allow_empty: bool, label: str = "") -> tuple[int, int]:
    """Validate a success count k out of n trials and return them as ints."""
    ints: list[int] = []
    for name, value in ((f"k{label}", k), (f"n{label}", n)):
        try:
            if isinstance(value, bool):
                raise TypeError
            ints.append(operator.index(value))
        except TypeError:
            raise ConfigError(f"{name}={value!r} is not an integer; pass a whole count.") from None
    k_int, n_int = ints
    if n_int < 0 or k_int < 0:
        raise ConfigError(f"k{label}={k_int}, n{label}={n_int}: counts must be >= 0.")
    if k_int > n_int:
        raise ConfigError(f"k{label}={k_int} > n{label}={n_int}; successes cannot exceed trials.")
    if n_int == 0 and not allow_empty:
        raise ConfigError(f"n{label}=0: this test needs at least one trial; run trials first.")
    return k_int, n_int


def _wilson(k: float, n: float, alpha: float) -> tuple[float, float]:
    """Wilson score interval for k of n (both may be fractional effective counts)."""
    if n == 0:
        return 0.0, 1.0
    low, high = proportion_confint(k, n, alpha=alpha, method="wilson")
    p_hat = k / n
    return float(min(max(low, 0.0), p_hat)), float(max(min(high, 1.0), p_hat))


def rate(k: int, n: int, alpha: float = 0.05) -> Rate:
    """Rate k/n with a Wilson score interval.

    Args:
        k: Number of successes, 0 <= k <= n.
        n: Number of trials, n >= 0.
        alpha: Two-sided error rate; the interval has coverage 1 - alpha.

    Returns:
        A Rate with method ``"wilson"``. n == 0 gives estimate ``nan`` and interval (0, 1).

    Raises:
        ConfigError: If k or n is not a non-negative integer, k > n, or alpha is not in (0, 1).

    """
    k, n = _check_counts(k, n, allow_empty=True)
    alpha = _check_alpha(alpha)
    low, high = _wilson(k, n, alpha)
    estimate = k / n if n else math.nan
    return Rate(k, n, estimate, low, high, "wilson", None, 1.0)


def _encode_clusters(clusters: Sequence[Hashable]) -> NDArray[np.int64]:
    """Map cluster labels to integer codes 0..g-1 in order of first appearance."""
    codes: dict[Hashable, int] = {}
    try:
        return np.array([codes.setdefault(c, len(codes)) for c in clusters], dtype=np.int64)
    except TypeError as exc:
        raise ConfigError(f"clusters contain an unhashable label ({exc}); use str ids.") from None


def _anova_icc(y: NDArray[np.float64], labels: NDArray[np.int64]) -> float:
    """One-way ANOVA intra-cluster correlation in [0, 1]; one cluster of >1 trial gives 1."""
    sizes = np.bincount(labels).astype(float)
    n_obs, n_groups = len(y), len(sizes)
    if n_groups == 1:
        return 1.0 if n_obs > 1 else 0.0
    if n_groups == n_obs:
        return 0.0
    means = np.bincount(labels, weights=y) / sizes
    ms_between = float(np.sum(sizes * (means - y.mean()) ** 2)) / (n_groups - 1)
    ms_within = float(np.sum((y - means[labels]) ** 2)) / (n_obs - n_groups)
    n0 = (n_obs - float(np.sum(sizes**2)) / n_obs) / (n_groups - 1)
    denominator = ms_between + (n0 - 1.0) * ms_within
    if denominator <= 0.0:
        return 0.0
    return min(1.0, max(0.0, (ms_between - ms_within) / denominator))


def clustered_rate(
    successes: Sequence[bool], clusters: Sequence[Hashable], alpha: float = 0.05
) -> Rate:
    """Rate of successes with a Wilson interval widened for trials that repeat concepts.

    The intra-cluster correlation ``icc`` is the one-way ANOVA estimator clipped at 0; the
    design effect is ``deff = 1 + (m_bar - 1) * icc`` with ``m_bar = n / n_clusters`` (Kish,
    *Survey Sampling*, 1965, sec. 5.4); the interval is Wilson on the effective counts
    ``(k / deff, n / deff)``. All-singleton clusters give deff == 1, i.e. ``rate(k, n)``'s
    interval. One cluster of several trials gets icc = 1 (effective n = 1): conservative,
    since independence cannot be checked. Constant outcomes give icc = 0.

    Args:
        successes: One bool (or 0/1) per trial.
        clusters: One hashable cluster label (e.g. concept) per trial, same length.
        alpha: Two-sided error rate; the interval has coverage 1 - alpha.

    Returns:
        A Rate with method ``"wilson-clustered"``, raw k and n, the number of clusters and
        the design effect used. No trials give estimate ``nan`` and interval (0, 1).

    Raises:
        ConfigError: If lengths differ, an outcome is not bool/0/1, a label is unhashable,
            or alpha is not in (0, 1).

    """
    alpha = _check_alpha(alpha)
    if len(successes) != len(clusters):
        raise ConfigError(
            f"len(successes)={len(successes)} != len(clusters)={len(clusters)}; "
            "pass one cluster label per trial."
        )
    bad = [s for s in successes if isinstance(s, str) or s not in (0, 1)]
    if bad:
        raise ConfigError(f"successes contain {bad[0]!r}; pass bools (or 0/1) only.")
    labels = _encode_clusters(clusters)
    y = np.asarray([bool(s) for s in successes], dtype=float)
    n, k = len(y), int(y.sum())
    if n == 0:
        return Rate(0, 0, math.nan, 0.0, 1.0, "wilson-clustered", 0, 1.0)
    n_clusters = int(labels.max()) + 1
    deff = 1.0 + (n / n_clusters - 1.0) * _anova_icc(y, labels)
    low, high = _wilson(k / deff, n / deff, alpha)
    return Rate(k, n, k / n, low, high, "wilson-clustered", n_clusters, deff)


def binomial_above(k: int, n: int, p0: float) -> float:
    """One-sided exact binomial p-value that the true rate exceeds p0.

    Args:
        k: Number of successes, 0 <= k <= n.
        n: Number of trials, n >= 1.
        p0: Rate under the null hypothesis, in [0, 1].

    Returns:
        P(X >= k) for X ~ Binomial(n, p0) (``scipy.stats.binomtest``, alternative="greater").

    Raises:
        ConfigError: If the counts are invalid, n == 0, or p0 is outside [0, 1].

    """
    k, n = _check_counts(k, n, allow_empty=False)
    p0 = _check_probability(p0, "p0")
    return float(scipy_stats.binomtest(k, n, p0, alternative="greater").pvalue)


def fisher_less(k_treat: int, n_treat: int, k_ref: int, n_ref: int) -> float:
    """One-sided Fisher exact p-value that the treatment rate is lower than the reference rate.

    Args:
        k_treat: Successes in the treatment group.
        n_treat: Trials in the treatment group, >= 1.
        k_ref: Successes in the reference group.
        n_ref: Trials in the reference group, >= 1.

    Returns:
        The p-value of ``scipy.stats.fisher_exact`` with alternative="less" on the table
        ``[[k_treat, n_treat - k_treat], [k_ref, n_ref - k_ref]]``.

    Raises:
        ConfigError: If either pair of counts is invalid or either group has no trials.

    """
    k_treat, n_treat = _check_counts(k_treat, n_treat, allow_empty=False, label="_treat")
    k_ref, n_ref = _check_counts(k_ref, n_ref, allow_empty=False, label="_ref")
    table = [[k_treat, n_treat - k_treat], [k_ref, n_ref - k_ref]]
    p_value = scipy_stats.fisher_exact(table, alternative="less").pvalue
    return float(min(1.0, p_value))


def proportion_difference(k1: int, n1: int, k2: int, n2: int, alpha: float = 0.05) -> Difference:
    """Difference of two independent rates, k1/n1 - k2/n2.

    The interval is Newcombe's hybrid score interval (``confint_proportions_2indep``,
    method="newcomb"); the p-value is the two-sided Miettinen-Nurminen score test
    (``test_proportions_2indep``, method="score"). When the two rates are equal (including
    0/n vs 0/m, where the score test is undefined) the p-value is 1.0.

    Args:
        k1: Successes in group 1.
        n1: Trials in group 1, >= 1.
        k2: Successes in group 2.
        n2: Trials in group 2, >= 1.
        alpha: Two-sided error rate; the interval has coverage 1 - alpha.

    Returns:
        A Difference with method ``"newcombe"``.

    Raises:
        ConfigError: If counts are invalid, a group has no trials, or alpha is not in (0, 1).

    """
    k1, n1 = _check_counts(k1, n1, allow_empty=False, label="1")
    k2, n2 = _check_counts(k2, n2, allow_empty=False, label="2")
    alpha = _check_alpha(alpha)
    estimate = k1 / n1 - k2 / n2
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # statsmodels at 0/n and n/n
        low, high = confint_proportions_2indep(
            k1, n1, k2, n2, method="newcomb", compare="diff", alpha=alpha
        )
        p_value = 1.0
        if k1 * n2 != k2 * n1:
            p_value = float(test_proportions_2indep(k1, n1, k2, n2, method="score").pvalue)
    low = min(max(float(low), -1.0), estimate)
    high = max(min(float(high), 1.0), estimate)
    return Difference(estimate, low, high, min(1.0, max(0.0, p_value)), "newcombe")


def _check_values(values: Sequence[float]) -> NDArray[np.float64]:
    """Return values as a finite 1-D float array, or raise ConfigError."""
    try:
        x = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"values must be numbers ({exc}); pass a list of floats.") from None
    if x.ndim != 1:
        raise ConfigError(f"values has shape {x.shape}; pass a flat sequence of floats.")
    if not np.all(np.isfinite(x)):
        bad = x[~np.isfinite(x)][0]
        raise ConfigError(f"values contain {bad!r}; drop or fix non-finite values first.")
    return x


def _cluster_percentiles(
    x: NDArray[np.float64],
    clusters: Sequence[Hashable],
    alpha: float,
    n_resamples: int,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Percentile interval of the mean, resampling whole clusters with replacement."""
    if len(clusters) != len(x):
        raise ConfigError(
            f"len(clusters)={len(clusters)} != len(values)={len(x)}; "
            "pass one cluster label per value."
        )
    labels = _encode_clusters(clusters)
    sums = np.bincount(labels, weights=x)
    sizes = np.bincount(labels).astype(float)
    n_groups = len(sizes)
    if n_groups < 2:
        raise ConfigError(
            f"clusters has {n_groups} distinct label(s); a clustered bootstrap needs >= 2."
        )
    picks = rng.integers(0, n_groups, size=(n_resamples, n_groups))
    means = sums[picks].sum(axis=1) / sizes[picks].sum(axis=1)
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def _plain_percentiles(
    x: NDArray[np.float64], alpha: float, n_resamples: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile interval of the mean by ``scipy.stats.bootstrap``."""
    if len(x) < 2:
        raise ConfigError(f"len(values)={len(x)}; a bootstrap needs at least 2 values.")
    result = scipy_stats.bootstrap(
        (x,),
        np.mean,
        n_resamples=n_resamples,
        batch=256,
        vectorized=True,
        confidence_level=1.0 - alpha,
        method="percentile",
        rng=rng,
    )
    low, high = sorted(map(float, result.confidence_interval))  # scipy may swap them by 1 ulp
    return low, high


def bootstrap_mean(
    values: Sequence[float],
    clusters: Sequence[Hashable] | None = None,
    alpha: float = 0.05,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of the mean, optionally resampling whole clusters.

    Without clusters this is ``scipy.stats.bootstrap(method="percentile")``. With clusters
    (e.g. word/sentence pairs) each resample draws as many clusters as there are, with
    replacement, and takes the mean of all their values. Same inputs and seed give the same
    interval; the global RNG is never touched.

    Args:
        values: The per-trial values, finite, at least 2 (unclustered).
        clusters: Optional cluster label per value, at least 2 distinct labels.
        alpha: Two-sided error rate; the interval has coverage 1 - alpha.
        n_resamples: Number of bootstrap resamples, >= 1.
        seed: Seed of the ``numpy.random.Generator``.

    Returns:
        An Interval with method ``"percentile"`` or ``"percentile-clustered"``.

    Raises:
        ConfigError: On non-finite or too few values, mismatched cluster labels, a bad alpha,
            n_resamples < 1 or a non-integer seed.

    """
    alpha = _check_alpha(alpha)
    x = _check_values(values)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)):
        raise ConfigError(f"n_resamples={n_resamples!r} is not an integer; pass e.g. 2000.")
    if n_resamples < 1:
        raise ConfigError(f"n_resamples={n_resamples!r} < 1; pass e.g. 2000.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed={seed!r} is not an integer; pass e.g. 0.")
    rng = np.random.default_rng(seed)
    if clusters is None:
        low, high = _plain_percentiles(x, alpha, int(n_resamples), rng)
        return Interval(float(x.mean()), low, high, "percentile", int(n_resamples))
    low, high = _cluster_percentiles(x, clusters, alpha, int(n_resamples), rng)
    return Interval(float(x.mean()), low, high, "percentile-clustered", int(n_resamples))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values.

    These are the values of statsmodels' ``multipletests(method="holm")``, computed here with
    numpy: statsmodels' ``multipletests`` runs a full ``gc.collect()`` on every call
    (0.04-0.12 s), which every verdict of a sweep would pay. A test checks that both give the
    same values.

    Args:
        p_values: Raw p-values, each in [0, 1]; may be empty.

    Returns:
        Adjusted p-values in the input order (empty for empty input).

    Raises:
        ConfigError: If a p-value is not a number in [0, 1].

    """
    checked = [_check_probability(p, f"p_values[{i}]") for i, p in enumerate(p_values)]
    if not checked:
        return []
    p = np.asarray(checked, dtype=float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order]).clip(max=1.0)
    adjusted = np.empty(m)
    adjusted[order] = stepped
    return [float(x) for x in adjusted]


def trials_for_power(
    p_control: float, p_treatment: float, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Trials per group for a one-sided two-proportion test to reach the given power.

    Uses Cohen's h (``proportion_effectsize``) and ``NormalIndPower`` with equal group sizes
    and alternative="larger". The effect size is taken in absolute value, so the answer is
    the same whichever of the two rates is higher.

    Args:
        p_control: Rate expected in the control group, in [0, 1].
        p_treatment: Rate expected in the treatment group, in [0, 1], != p_control.
        alpha: One-sided significance level, in (0, 1).
        power: Desired power, in (0, 1).

    Returns:
        The per-group number of trials, rounded up.

    Raises:
        ConfigError: If a rate is outside [0, 1], the rates are equal, or alpha or power is
            outside (0, 1).

    """
    p_control = _check_probability(p_control, "p_control")
    p_treatment = _check_probability(p_treatment, "p_treatment")
    alpha = _check_alpha(alpha)
    power = _check_alpha(power, "power", "0.8")
    if p_control == p_treatment:
        raise ConfigError(
            f"p_control == p_treatment == {p_control!r}: no difference to detect; "
            "pass the smallest effect you care about."
        )
    effect = abs(float(proportion_effectsize(p_treatment, p_control)))
    nobs = NormalIndPower().solve_power(
        effect_size=effect, alpha=alpha, power=power, ratio=1.0, alternative="larger"
    )
    return math.ceil(float(nobs))
