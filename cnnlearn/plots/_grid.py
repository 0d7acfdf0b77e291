"""The grid of small image panels that several figures share."""

from __future__ import annotations

import matplotlib.pyplot as plt


def image_grid(n: int, cols: int, size: float = 1.2):
    """A figure of ``n`` panels in rows of ``cols``, axes off; returns the figure
    and a flat iterator over the panels (``size`` inches each)."""
    rows = -(-n // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * size, rows * size * 1.15), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes.flat
