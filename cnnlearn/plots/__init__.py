"""Figures for the chapters (matplotlib). Every function returns its Figure.

``cnnlearn.plots.data`` (chapters 1-3), ``training`` (chapters 2 and 4),
``systems`` (chapters 5-8) and ``apps`` (chapter 9); every figure is also
importable from here, as ``plots.plot_history``.
"""

from cnnlearn.plots.apps import (
    plot_face_predictions,
    plot_ranking,
    plot_recommendation,
    plot_roc,
)
from cnnlearn.plots.data import plot_class_balance, plot_pixel_histograms, plot_samples
from cnnlearn.plots.systems import (
    plot_drift,
    plot_scaling,
    plot_search_progress,
    plot_serving,
    plot_size_accuracy,
    plot_trials,
)
from cnnlearn.plots.training import (
    plot_accuracy_vs_seconds,
    plot_benchmark_curves,
    plot_confusion_matrix,
    plot_histories,
    plot_history,
    plot_maps,
    plot_misclassified,
)

__all__ = [
    "plot_accuracy_vs_seconds",
    "plot_benchmark_curves",
    "plot_class_balance",
    "plot_confusion_matrix",
    "plot_drift",
    "plot_face_predictions",
    "plot_histories",
    "plot_history",
    "plot_maps",
    "plot_misclassified",
    "plot_pixel_histograms",
    "plot_ranking",
    "plot_recommendation",
    "plot_roc",
    "plot_samples",
    "plot_scaling",
    "plot_search_progress",
    "plot_serving",
    "plot_size_accuracy",
    "plot_trials",
]
