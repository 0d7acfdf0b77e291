"""Figures of scaling, compression, tuning and serving (chapters 5-8).

Every function returns its Figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "plot_drift",
    "plot_scaling",
    "plot_search_progress",
    "plot_serving",
    "plot_size_accuracy",
    "plot_trials",
]


def plot_scaling(predictions: dict[str, dict], measured: dict | None = None) -> Figure:
    """Predicted speedup and efficiency against the number of workers (chapter 5).

    ``predictions`` maps a label (model and bandwidth) to the output of
    :func:`cnnlearn.distribute.predicted_speedup`; ``measured`` optionally maps a
    label to ``(workers, speedup)`` points measured on this machine. Both axes
    of the speedup panel are logarithmic; the dotted line is perfect scaling.
    """
    fig, (ax_s, ax_e) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, pred in predictions.items():
        ls = "--" if "10 Gb/s" in label else "-"
        (line,) = ax_s.plot(pred["workers"], pred["speedup"], ls=ls, label=label)
        ax_e.plot(pred["workers"], pred["efficiency"], ls=ls, color=line.get_color())
    n = max(max(p["workers"]) for p in predictions.values())
    ax_s.plot([1, n], [1, n], "k:", lw=1, label="perfect")
    for label, (workers, speedup) in (measured or {}).items():
        ax_s.plot(workers, speedup, "o", color="k", ms=6, label=label)
    ax_s.set_xscale("log", base=2)
    ax_s.set_yscale("log", base=2)
    ax_e.set_xscale("log", base=2)
    ax_s.set_xlabel("workers N")
    ax_e.set_xlabel("workers N")
    ax_s.set_ylabel("speedup (images/s vs 1 worker)")
    ax_e.set_ylabel("efficiency = speedup / N")
    ax_e.set_ylim(0, 1.05)
    for ax in (ax_s, ax_e):
        ax.grid(alpha=0.3, which="both")
    ax_s.legend(fontsize=7)
    fig.suptitle("ring all-reduce scaling model (a model, not a measurement)")
    fig.tight_layout()
    return fig


def plot_size_accuracy(
    points: list[dict],
    size_key: str = "gzip_bytes",
    baseline: str | None = "float32",
) -> Figure:
    """Test accuracy against file size, one labelled point per method (chapter 6).

    ``points`` are dicts with ``method``, ``accuracy``, optionally
    ``accuracy_std`` (drawn as an error bar) and ``size_key`` in bytes, e.g.
    :func:`cnnlearn.report.compression.summarize`'s rows. The size axis is
    logarithmic; a dashed line marks the ``baseline`` method's accuracy.
    """
    fig, ax = plt.subplots(figsize=(7, 4.2))
    usable = [p for p in points if size_key in p]
    for p in usable:
        kind = "int8" in p["method"]
        ax.errorbar(
            p[size_key] / 1000,
            100 * p["accuracy"],
            yerr=100 * p.get("accuracy_std", 0.0),
            fmt="s" if kind else "o",
            color="tab:orange" if kind else "tab:blue",
            capsize=3,
        )
        ax.annotate(
            p["method"],
            (p[size_key] / 1000, 100 * p["accuracy"]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=7,
        )
    base = [p for p in usable if p["method"] == baseline]
    if base:
        ax.axhline(100 * base[0]["accuracy"], color="gray", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(f"{size_key.replace('_', ' ')} (KB, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def plot_trials(
    searches: dict[str, list[dict]], param_budget: int | None = None
) -> Figure:
    """Every trained trial of each search: validation error against parameters.

    ``searches`` maps an algorithm to its trial rows
    (:func:`cnnlearn.tune.trials_table`); rows that trained no epoch (rejected
    for the parameter budget) are left out. Both axes are logarithmic, so a
    1 % and a 2 % error are as far apart as 10 % and 20 %. Marker size grows
    with the epochs the trial trained; a dotted line marks ``param_budget``
    (chapter 7).
    """
    fig, axes = plt.subplots(
        1, len(searches), figsize=(4.2 * len(searches), 3.6), sharey=True, squeeze=False
    )
    for i, (ax, (name, rows)) in enumerate(zip(axes.flat, searches.items())):
        rows = [r for r in rows if r["epochs"] and r["val_accuracy"] is not None]
        ax.scatter(
            [r["params"] for r in rows],
            [100 * (1 - r["val_accuracy"]) for r in rows],
            s=[12 * r["epochs"] + 8 for r in rows],
            color=f"C{i}",
            alpha=0.6,
        )
        if param_budget is not None:
            ax.axvline(param_budget, color="gray", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{name} ({len(rows)} trained trials)", fontsize=10)
        ax.set_xlabel("parameters (log scale)")
        ax.grid(alpha=0.3, which="both")
    axes.flat[0].set_ylabel("validation error (%, log scale)")
    fig.tight_layout()
    return fig


def plot_search_progress(searches: dict[str, list[dict]], x: str = "epochs") -> Figure:
    """The best validation error so far as each search spends its budget.

    The horizontal axis is the cumulative ``x`` of the trial rows
    (:func:`cnnlearn.tune.trials_table`): ``"epochs"``, the budget chapter 7
    equalizes, or ``"seconds"``. The error axis is logarithmic.
    """
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for i, (name, rows) in enumerate(searches.items()):
        spent = np.cumsum([r[x] or 0.0 for r in rows])
        best = np.maximum.accumulate([r["val_accuracy"] or 0.0 for r in rows])
        ax.step(spent, 100 * (1 - best), where="post", color=f"C{i}", label=name)
    ax.set_yscale("log")
    ax.set_xlabel(f"{x} spent (cumulative)")
    ax.set_ylabel("best validation error so far (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_drift(
    drift: dict[str, list[float]], phases: list[tuple[int, str]] | None = None
) -> Figure:
    """The input-drift gauges over successive scrapes (chapter 8).

    ``drift`` maps a statistic to its gauge values, one per scrape; ``phases``
    lists ``(first scrape, label)`` of the traffic phases, shaded and labelled.
    """
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for name, values in drift.items():
        ax.plot(np.arange(len(values)), values, "o-", ms=3, label=name)
    if phases:
        n = max(len(v) for v in drift.values())
        edges = [start for start, _ in phases] + [n]
        for i, (start, label) in enumerate(phases):
            ax.axvspan(start - 0.5, edges[i + 1] - 0.5, alpha=0.08 * (i % 2 + 1))
            ax.text(start, ax.get_ylim()[1] * 0.95, label, va="top", fontsize=8)
    ax.set_xlabel("scrape")
    ax.set_ylabel("|live − training| / training std")
    ax.grid(alpha=0.3)
    ax.legend(title="statistic", fontsize=8)
    fig.tight_layout()
    return fig


def plot_serving(results: dict, scenario: str = "single_4_clients") -> Figure:
    """Requests/s and p99 latency per server for one benchmark scenario (chapter 8).

    ``results`` is ``benchmarks/results/serving.json``.
    """
    servers = [k for k, v in results["servers"].items() if scenario in v]
    runs = [results["servers"][k][scenario] for k in servers]
    fig, (ax_rate, ax_p99) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax_rate.barh(servers, [r["requests_per_s"] for r in runs], color="tab:blue")
    ax_rate.set_xlabel("requests/s (higher is better)")
    ax_p99.barh(servers, [r["p99_ms"] for r in runs], color="tab:orange")
    ax_p99.set_xlabel("p99 latency, ms (lower is better)")
    ax_p99.set_yticks([])
    fig.suptitle(scenario.replace("_", " "))
    fig.tight_layout()
    return fig
