"""Figures of training and evaluation (chapters 2 and 4).

Every function returns its Figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cnnlearn.plots._grid import image_grid

__all__ = [
    "plot_accuracy_vs_seconds",
    "plot_benchmark_curves",
    "plot_confusion_matrix",
    "plot_histories",
    "plot_history",
    "plot_maps",
    "plot_misclassified",
]


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
    fig, axes = image_grid(len(wrong), min(cols, len(wrong)))

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


def plot_accuracy_vs_seconds(
    curves: dict[str, tuple[list[float], list[float]]], target: float = 0.99
) -> Figure:
    """Test accuracy against training seconds, one line per run, with the
    ``target`` accuracy dashed (chapter 5's speedrun;
    :func:`cnnlearn.report.speed.speedrun_curves` gives ``curves``)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, (seconds, accuracy) in curves.items():
        style = "o-" if label.startswith("keras-io") else ".-"
        ax.plot(seconds, [100 * a for a in accuracy], style, label=label)
    ax.axhline(100 * target, color="grey", linestyle=":", label=f"{target:.1%} target")
    ax.set(xlabel="training seconds", ylabel="test accuracy (%)", ylim=(97, 99.6))
    ax.legend(fontsize=7)
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
    fig, axes = image_grid(n, min(cols, n), size)
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
