"""The report's plots as PNG bytes (matplotlib's Agg canvas, no pyplot global state).

Every function takes plain summary / record data and returns PNG bytes, or None when the run
has nothing to plot (e.g. a heatmap for a one-layer sweep).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from introspection_bench.records import TrialRecord

Metric = Mapping[str, Any]
_DPI = 96
_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    return buffer.getvalue()


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def plot_rates_by_strength(metrics: Sequence[Metric], protocol: str) -> bytes | None:
    """Rates of one protocol against strength: one line per metric/condition and layer.

    Metrics without a cell (shared controls) are drawn as a horizontal line with their interval
    as a band. Error bars are the metrics' 95% intervals.

    Args:
        metrics: Flat summary metrics (any protocol; others are ignored).
        protocol: The protocol to plot.

    Returns:
        PNG bytes, or None when the protocol has no rate with a strength.

    """
    rates = [m for m in metrics if m["protocol"] == protocol and m.get("k") is not None]
    swept = [m for m in rates if m["strength"] is not None and _finite(m["estimate"])]
    if not swept:
        return None
    figure = Figure(figsize=(6.4, 3.8))
    axes = figure.add_subplot()
    series: dict[tuple[str, str, Any], list[Metric]] = {}
    for metric in swept:
        series.setdefault((metric["name"], metric["condition"], metric["layer"]), []).append(metric)
    layers = {layer for _, _, layer in series}
    colors = iter(_PALETTE * 4)
    for (name, condition, layer), points in sorted(series.items(), key=lambda item: str(item[0])):
        points = sorted(points, key=lambda m: m["strength"])
        xs = [m["strength"] for m in points]
        ys = [m["estimate"] for m in points]
        errors = [
            [max(0.0, m["estimate"] - m["interval"]["low"]) for m in points],
            [max(0.0, m["interval"]["high"] - m["estimate"]) for m in points],
        ]
        label = f"{name.split('.', 1)[1]} [{condition}]" + (f" L{layer}" if len(layers) > 1 else "")
        axes.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=label, color=next(colors))
    for metric in rates:
        if metric["strength"] is None and _finite(metric["estimate"]):
            color = next(colors)
            label = f"{metric['name'].split('.', 1)[1]} [{metric['condition']}] (shared, 95% band)"
            axes.axhline(metric["estimate"], linestyle="--", linewidth=1, color=color, label=label)
            axes.axhspan(
                metric["interval"]["low"], metric["interval"]["high"], alpha=0.12, color=color
            )
    axes.set_xlabel("injection strength")
    axes.set_ylabel("rate (95% interval)")
    axes.set_ylim(-0.02, 1.02)
    axes.set_title(f"{protocol}: rates by strength")
    axes.legend(fontsize=7, loc="best")
    axes.grid(alpha=0.3)
    return _png(figure)


def plot_rate_heatmap(metrics: Sequence[Metric], name: str, condition: str) -> bytes | None:
    """Layer x strength heatmap of one rate, cells annotated with k/n.

    Args:
        metrics: Flat summary metrics.
        name: Metric name, e.g. `injected_thought.success`.
        condition: Its condition, e.g. `injected`.

    Returns:
        PNG bytes, or None unless the metric was measured at several layers.

    """
    cells = [
        m
        for m in metrics
        if m["name"] == name
        and m["condition"] == condition
        and m["layer"] is not None
        and m["strength"] is not None
    ]
    layers = sorted({m["layer"] for m in cells})
    strengths = sorted({m["strength"] for m in cells})
    if len(layers) < 2:
        return None
    grid = [[math.nan] * len(strengths) for _ in layers]
    figure = Figure(figsize=(1.2 * len(strengths) + 2.5, 0.5 * len(layers) + 2))
    axes = figure.add_subplot()
    for metric in cells:
        row, column = layers.index(metric["layer"]), strengths.index(metric["strength"])
        grid[row][column] = metric["estimate"]
        axes.text(column, row, f"{metric['k']}/{metric['n']}", ha="center", va="center", fontsize=8)
    image = axes.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto", origin="lower")
    axes.set_xticks(range(len(strengths)), [f"{s:g}" for s in strengths])
    axes.set_yticks(range(len(layers)), [str(layer) for layer in layers])
    axes.set_xlabel("injection strength")
    axes.set_ylabel("layer")
    axes.set_title(f"{name} [{condition}]")
    figure.colorbar(image, ax=axes, label="rate")
    return _png(figure)


def plot_cosine_by_layer(
    records: Sequence[TrialRecord], measured_layers: Sequence[int] = ()
) -> bytes | None:
    """Plot the mean cosine with the concept vector by layer (intentional_control records).

    Lines: think, dont_think, the incentive variants, and the control-word baseline.

    Args:
        records: Trial records (only intentional_control ones with cosines are used).
        measured_layers: Layers the verdicts were taken at (marked with vertical lines).

    Returns:
        PNG bytes, or None when no record carries cosines.

    """
    rows = [
        r
        for r in records
        if r.protocol == "intentional_control" and r.error is None and "cosine_word" in r.extra
    ]
    if not rows:
        return None
    layers = list(rows[0].extra.get("layers") or range(len(rows[0].extra["cosine_word"])))
    by_condition: dict[str, list[Sequence[float]]] = {}
    for record in rows:
        by_condition.setdefault(record.condition, []).append(record.extra["cosine_word"])
    baseline = [
        record.extra["cosine_baseline"] for record in rows if "cosine_baseline" in record.extra
    ]
    figure = Figure(figsize=(6.4, 3.8))
    axes = figure.add_subplot()
    main = ("think", "dont_think")
    for condition in sorted(by_condition, key=lambda c: (c not in main, c)):
        width = 2.0 if condition in main else 0.8
        axes.plot(layers, _mean_rows(by_condition[condition]), linewidth=width, label=condition)
    if baseline:
        axes.plot(
            layers,
            _mean_rows(baseline),
            linestyle="--",
            color="black",
            label="baseline (control words)",
        )
    for layer in measured_layers:
        axes.axvline(layer, color="grey", linestyle=":", linewidth=1)
    axes.set_xlabel("layer")
    axes.set_ylabel("mean cosine with concept vector")
    axes.set_title("intentional_control: cosine by layer")
    axes.legend(fontsize=7, loc="best")
    axes.grid(alpha=0.3)
    return _png(figure)


def _mean_rows(rows: Sequence[Sequence[float]]) -> list[float]:
    return [sum(column) / len(column) for column in zip(*rows, strict=True)]
