"""Figures for the chapters (matplotlib). Every function returns its Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "plot_benchmark_curves",
    "plot_class_balance",
    "plot_confusion_matrix",
    "plot_histories",
    "plot_history",
    "plot_maps",
    "plot_misclassified",
    "plot_pixel_histograms",
    "plot_samples",
    "plot_size_accuracy",
]
__all__ += ["plot_search_progress", "plot_trials"]
__all__ += ["plot_face_predictions", "plot_ranking", "plot_recommendation", "plot_roc"]
__all__ += ["plot_drift", "plot_serving"]
__all__ += ["plot_scaling"]


def _image_grid(n: int, cols: int, size: float = 1.2):
    rows = -(-n // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * size, rows * size * 1.15), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes.flat


def plot_samples(
    x: np.ndarray,
    y: np.ndarray,
    n: int = 25,
    cols: int = 10,
    class_names: list[str] | None = None,
) -> Figure:
    """A grid of the first ``n`` images with their labels (chapters 3 and 4)."""
    n = min(n, len(x))
    fig, axes = _image_grid(n, min(cols, n))
    for ax, image, label in zip(axes, x[:n], y[:n]):
        ax.imshow(np.squeeze(image), cmap="gray_r")
        ax.set_title(class_names[label] if class_names else str(label), fontsize=9)
    fig.tight_layout()
    return fig


def plot_class_balance(
    counts: dict[str, list[int]], class_names: dict[str, list[str]] | None = None
) -> Figure:
    """Images per class, one panel per data set (chapter 3).

    ``counts`` maps a data set's name to its per-class counts, as in
    ``data.describe(x, y)["class_counts"]``; a dashed line marks a perfectly
    balanced set.
    """
    fig, axes = plt.subplots(
        1, len(counts), figsize=(5 * len(counts), 3.2), squeeze=False
    )
    for ax, (name, values) in zip(axes.flat, counts.items()):
        values = np.asarray(values)
        ticks = np.arange(len(values))
        ax.bar(ticks, values, color="tab:blue")
        ax.axhline(values.mean(), color="k", ls="--", lw=1, label="balanced")
        labels = (class_names or {}).get(name) or [str(t) for t in ticks]
        ax.set_xticks(ticks, labels, rotation=45 if len(labels[0]) > 2 else 0)
        ax.set_title(name)
        ax.set_ylabel("images")
        ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def plot_pixel_histograms(images: dict[str, np.ndarray]) -> Figure:
    """Histograms of the 0–255 pixel values of each data set, log scale (chapter 3)."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    bins = np.arange(257) - 0.5
    for name, x in images.items():
        share = np.bincount(np.asarray(x, np.uint8).ravel(), minlength=256) / x.size
        ax.stairs(share, bins, label=name, lw=1.5)
    ax.set_yscale("log")
    ax.set_xlabel("pixel value")
    ax.set_ylabel("share of pixels")
    ax.set_xlim(-1, 256)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_history(history: dict[str, list[float]]) -> Figure:
    """Loss and accuracy per epoch, training and validation side by side."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
    epochs = np.arange(1, len(history["loss"]) + 1)
    for ax, metric in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.plot(epochs, history[metric], "o-", label=f"training {metric}")
        if f"val_{metric}" in history:
            val = history[f"val_{metric}"]
            ax.plot(epochs, val, "s--", label=f"validation {metric}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def plot_confusion_matrix(
    cm: np.ndarray, class_names: list[str] | None = None, normalize: bool = False
) -> Figure:
    """A confusion matrix heat map; rows are true classes, columns predictions.

    With ``normalize=True`` each row is divided by its total (recall per class).
    The diagonal dominates any decent model, so the colour scale is logarithmic
    to make the few confusions visible.
    """
    cm = np.asarray(cm, dtype=float)
    k = cm.shape[0]
    shown = cm / cm.sum(axis=1, keepdims=True).clip(min=1) if normalize else cm
    names = class_names or [str(i) for i in range(k)]
    fig, ax = plt.subplots(figsize=(0.55 * k + 2, 0.55 * k + 1.5))
    image = ax.imshow(np.log1p(cm), cmap="Blues")
    for i in range(k):
        for j in range(k):
            text = f"{shown[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
            dark = image.norm(np.log1p(cm[i, j])) > 0.6
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=7,
                color="white" if dark else "black",
            )
    ax.set_xticks(range(k), names, rotation=45 if max(map(len, names)) > 2 else 0)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.tight_layout()
    return fig


def plot_misclassified(
    x: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    probabilities: np.ndarray | None = None,
    n: int = 20,
    cols: int = 10,
    class_names: list[str] | None = None,
) -> Figure:
    """The first ``n`` misclassified images, titled "true → predicted (p)".

    With ``probabilities`` the most confident mistakes come first, which are
    the most instructive (often a wrong label or a truly ambiguous digit).
    """
    wrong = np.flatnonzero(np.asarray(y_true) != np.asarray(y_pred))
    if probabilities is not None:
        wrong = wrong[np.argsort(-probabilities[wrong].max(axis=-1), kind="stable")]
    wrong = wrong[:n]
    if len(wrong) == 0:
        raise ValueError("no misclassified images to show")
    fig, axes = _image_grid(len(wrong), min(cols, len(wrong)))

    def name(c):
        return class_names[c] if class_names else str(c)

    for ax, i in zip(axes, wrong):
        ax.imshow(np.squeeze(x[i]), cmap="gray_r")
        title = f"{name(y_true[i])}→{name(y_pred[i])}"
        if probabilities is not None:
            title += f"\n({probabilities[i].max():.2f})"
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


def plot_benchmark_curves(results: dict) -> Figure:
    """Training and test accuracy per epoch for each run of a training benchmark.

    ``results`` is ``benchmarks/results/train_mnist.json`` as loaded by
    :func:`cnnlearn.report.load_benchmark` (chapter 4).
    """
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, (name, run) in enumerate(results["runs"].items()):
        epochs = np.arange(1, len(run["test_accuracy"]) + 1)
        color = f"C{i}"
        ax.plot(epochs, run["test_accuracy"], "o-", color=color, label=f"{name} test")
        ax.plot(epochs, run["train_accuracy"], ":", color=color, label=f"{name} train")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0.95, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="lower right")
    fig.tight_layout()
    return fig


def plot_maps(
    maps: np.ndarray,
    titles: list[str] | None = None,
    cols: int = 8,
    cmap: str = "gray",
    size: float = 1.2,
    symmetric: bool = False,
) -> Figure:
    """Show the channels of an ``(H, W, C)`` array side by side (chapter 2).

    Works for feature maps (one image's activations) and for first-layer
    filters, whose kernel ``w[:, :, 0, :]`` has this shape. Each panel is
    scaled on its own, so weak and strong channels are equally visible; with
    ``symmetric=True`` its range is ``[-m, m]``, so a diverging colour map puts
    zero at its centre.
    """
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"expected maps of shape (H, W, C), got {maps.shape}")
    n = maps.shape[-1]
    fig, axes = _image_grid(n, min(cols, n), size)
    for i, ax in enumerate(axes):
        if i >= n:
            break
        m = np.abs(maps[..., i]).max() if symmetric else None
        ax.imshow(maps[..., i], cmap=cmap, vmin=-m if m else None, vmax=m)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig


def plot_histories(
    histories: dict[str, dict[str, list[float]]],
    metrics: tuple[str, ...] = ("val_loss", "val_accuracy"),
) -> Figure:
    """Several runs' curves on shared axes, one panel per metric (chapter 3)."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.5))
    for ax, metric in zip(np.atleast_1d(axes), metrics):
        for label, history in histories.items():
            epochs = np.arange(1, len(history[metric]) + 1)
            ax.plot(epochs, history[metric], "o-", label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric.replace("_", " "))
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        ax.legend()
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
    :func:`cnnlearn.compress.results.summarize`'s rows. The size axis is
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


def plot_face_predictions(
    images: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray | None = None,
    n: int = 12,
    cols: int = 6,
) -> Figure:
    """Faces titled with their subject (chapter 9).

    With ``predicted``, titles read "true → predicted" and errors are red.
    """
    n = min(n, len(images))
    guesses = labels if predicted is None else predicted
    fig, axes = _image_grid(n, min(cols, n), size=1.6)
    for ax, image, label, guess in zip(axes, images[:n], labels[:n], guesses[:n]):
        ax.imshow(np.squeeze(image), cmap="gray", vmin=0, vmax=255)
        title = f"s{int(label) + 1}"
        if predicted is not None:
            title += f" → s{int(guess) + 1}"
        color = "k" if int(label) == int(guess) else "tab:red"
        ax.set_title(title, fontsize=9, color=color)
    fig.tight_layout()
    return fig


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray, float]]) -> Figure:
    """ROC curves ``name -> (false positive rate, true positive rate, AUC)``.

    Chapter 9: face verification by embedding similarity.
    """
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, lw=2, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="chance")
    ax.set_xlabel("false positive rate (different people accepted)")
    ax.set_ylabel("true positive rate (same person accepted)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def plot_ranking(methods: dict[str, dict[str, float]], k: int = 10) -> Figure:
    """HitRate@k and NDCG@k per method, side by side (chapter 9)."""
    names = list(methods)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(1.4 * len(names) + 2, 3.2))
    for offset, metric in ((-0.2, f"hr@{k}"), (0.2, f"ndcg@{k}")):
        values = [methods[m][metric] for m in names]
        bars = ax.bar(x + offset, values, width=0.4, label=metric)
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_recommendation(
    recent: np.ndarray,
    recommended: list[tuple[int, float]],
    category: np.ndarray,
    target: int | None = None,
) -> Figure:
    """One user's recent items and top-k recommendations, colored by category.

    Bars are the predicted probabilities; the held-out next item, when given,
    is outlined (chapter 9).
    """
    colors = plt.get_cmap("tab20")
    fig, (ax_hist, ax_rec) = plt.subplots(
        1, 2, figsize=(10, 3.2), gridspec_kw={"width_ratios": [1, 2]}
    )
    recent = np.asarray(recent)
    ax_hist.bar(
        np.arange(len(recent)),
        np.ones(len(recent)),
        color=[colors(category[i] % 20) for i in recent],
    )
    ax_hist.set_xticks(np.arange(len(recent)), [str(i) for i in recent])
    ax_hist.set_yticks([])
    ax_hist.set_title("recent items (oldest first)")
    items = [i for i, _ in recommended]
    bars = ax_rec.bar(
        np.arange(len(items)),
        [p for _, p in recommended],
        color=[colors(category[i] % 20) for i in items],
    )
    for bar, item in zip(bars, items):
        if item == target:
            bar.set_edgecolor("k")
            bar.set_linewidth(2.5)
    ax_rec.set_xticks(np.arange(len(items)), [str(i) for i in items])
    ax_rec.set_ylabel("predicted probability")
    ax_rec.set_title("top recommendations (outlined: the held-out next item)")
    for ax in (ax_hist, ax_rec):
        ax.set_xlabel("item id (color: category)")
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
