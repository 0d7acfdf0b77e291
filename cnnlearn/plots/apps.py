"""Figures of the applications (chapter 9).

Every function returns its Figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cnnlearn.plots._grid import image_grid

__all__ = ["plot_face_predictions", "plot_ranking", "plot_recommendation", "plot_roc"]


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
    fig, axes = image_grid(n, min(cols, n), size=1.6)
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
