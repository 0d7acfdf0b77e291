"""Figures of the data sets (chapters 1-3).

Every function returns its Figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cnnlearn.plots._grid import image_grid

__all__ = ["plot_class_balance", "plot_pixel_histograms", "plot_samples"]


def plot_samples(
    x: np.ndarray,
    y: np.ndarray,
    n: int = 25,
    cols: int = 10,
    class_names: list[str] | None = None,
) -> Figure:
    """A grid of the first ``n`` images with their labels (chapters 3 and 4)."""
    n = min(n, len(x))
    fig, axes = image_grid(n, min(cols, n))
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
