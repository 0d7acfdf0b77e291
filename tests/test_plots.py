from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from cnnlearn import plots

RNG = np.random.default_rng(0)
X = RNG.integers(0, 256, (30, 28, 28), dtype=np.uint8)
Y = RNG.integers(0, 10, 30)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def images_shown(fig: Figure) -> int:
    return sum(len(ax.images) for ax in fig.axes)


def test_samples_grid_titles_with_class_names():
    names = [f"c{i}" for i in range(10)]
    fig = plots.plot_samples(X, Y, n=12, cols=5, class_names=names)
    assert images_shown(fig) == 12 and len(fig.axes) == 15  # 3 rows of 5
    assert fig.axes[0].get_title() == names[Y[0]]


def test_history_has_training_and_validation_curves():
    history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.6, 0.8]}
    history["val_accuracy"] = [0.5, 0.7]
    loss_ax, acc_ax = plots.plot_history(history).axes
    assert len(loss_ax.lines) == 2 and len(acc_ax.lines) == 2
    np.testing.assert_array_equal(acc_ax.lines[1].get_ydata(), [0.5, 0.7])


def test_confusion_matrix_annotates_every_cell():
    cm = np.array([[5, 1], [0, 4]])
    ax = plots.plot_confusion_matrix(cm).axes[0]
    assert [t.get_text() for t in ax.texts] == ["5", "1", "0", "4"]
    ax = plots.plot_confusion_matrix(cm, normalize=True).axes[0]
    assert [t.get_text() for t in ax.texts][:2] == ["0.83", "0.17"]


def test_misclassified_orders_by_confidence():
    y_true = np.array([0, 1, 2, 3])
    y_pred = np.array([0, 2, 3, 1])
    probs = np.full((4, 4), 0.1)
    probs[1, 2], probs[2, 3], probs[3, 1] = 0.5, 0.9, 0.7
    fig = plots.plot_misclassified(X[:4], y_true, y_pred, probs)
    assert images_shown(fig) == 3
    assert fig.axes[0].get_title() == "2→3\n(0.90)"
    with pytest.raises(ValueError, match="no misclassified"):
        plots.plot_misclassified(X[:4], y_true, y_true)


def test_benchmark_curves_one_pair_per_run():
    run = {"test_accuracy": [0.98, 0.985], "train_accuracy": [0.97, 0.99]}
    ax = plots.plot_benchmark_curves({"runs": {"a": run, "b": run}}).axes[0]
    assert len(ax.lines) == 4


def test_maps_one_panel_per_channel():
    maps = RNG.random((5, 5, 6))
    fig = plots.plot_maps(maps, titles=[f"f{i}" for i in range(6)], cols=4)
    assert images_shown(fig) == 6 and len(fig.axes) == 8
    assert fig.axes[5].get_title() == "f5"
    np.testing.assert_array_equal(fig.axes[2].images[0].get_array(), maps[..., 2])
    with pytest.raises(ValueError, match="expected maps"):
        plots.plot_maps(maps[..., 0])


def test_maps_symmetric_range_centres_zero():
    maps = np.stack([np.array([[-1.0, 3.0], [0.0, 1.0]])] * 2, axis=-1)
    fig = plots.plot_maps(maps, symmetric=True)
    assert fig.axes[0].images[0].get_clim() == (-3.0, 3.0)


def test_histories_one_line_per_run_and_panel_per_metric():
    runs = {"a": {"val_loss": [1.0, 0.5], "val_accuracy": [0.5, 0.7]}}
    runs["b"] = {"val_loss": [0.9, 0.4], "val_accuracy": [0.6, 0.8]}
    axes = plots.plot_histories(runs).axes
    assert len(axes) == 2 and all(len(ax.lines) == 2 for ax in axes)
    np.testing.assert_array_equal(axes[1].lines[1].get_ydata(), [0.6, 0.8])


def test_class_balance_one_panel_per_data_set_with_names():
    counts = {"a": [5, 3, 2], "b": [1, 1, 8]}
    fig = plots.plot_class_balance(counts, class_names={"b": ["x", "y", "z"]})
    assert len(fig.axes) == 2
    heights = [p.get_height() for p in fig.axes[1].patches]
    assert heights == [1, 1, 8]
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == ["x", "y", "z"]


def test_pixel_histograms_sum_to_one():
    fig = plots.plot_pixel_histograms({"x": X, "all zero": np.zeros_like(X)})
    (ax,) = fig.axes
    first, second = (np.asarray(p.get_data().values) for p in ax.patches)
    assert np.isclose(first.sum(), 1.0) and second[0] == 1.0


def test_accuracy_against_seconds_draws_each_run_and_the_target():
    curves = {"keras-io mnist_convnet": ([5.0, 10.0], [0.985, 0.991]),
              "speedrun, seed 0": ([2.0, 4.0], [0.987, 0.992])}  # fmt: skip
    ax = plots.plot_accuracy_vs_seconds(curves).axes[0]
    lines = [line.get_label() for line in ax.get_lines()]
    assert lines == [*curves, "99.0% target"]
    assert ax.get_lines()[0].get_ydata()[1] == pytest.approx(99.1)


def test_log_scale_figures_find_their_fonts(caplog):
    """Log-scale tick labels are mathtext, which falls back to matplotlib's own
    STIX fonts: a font cache without them makes each such figure warn on stderr
    (and nbval then fails the chapter's cell). conftest gives the session a cache
    of its own; this fails first, with the reason, if fonts still go missing."""
    fig = plots.plot_pixel_histograms({"x": X})
    with caplog.at_level("WARNING", logger="matplotlib.font_manager"):
        fig.savefig(io.BytesIO(), format="png")
    assert not caplog.records, [r.getMessage() for r in caplog.records]
