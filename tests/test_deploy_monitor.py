"""cnnlearn.deploy.monitor: per-image statistics and the drift gauge."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlearn import data
from cnnlearn.deploy.monitor import (
    STATISTICS,
    DriftMonitor,
    alert_fires,
    image_statistics,
    training_statistics,
)


def test_image_statistics_by_hand():
    x = np.zeros((2, 28, 28, 1), np.float32)
    x[1] = 1.0
    x[0, 10:14, 10:14] = 1.0  # 16 ink pixels in the centre, none on the border
    stats = image_statistics(x)
    assert stats.shape == (2, len(STATISTICS))
    mean, std, ink, border = stats[0]
    assert mean == pytest.approx(16 / 784) and ink == pytest.approx(16 / 784)
    assert border == 0.0 and std > 0
    np.testing.assert_allclose(stats[1], [1.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(image_statistics(x[..., 0]), stats)  # (N, H, W)


def test_image_statistics_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"expected images \(N, H, W\[, C\]\)"):
        image_statistics(np.zeros((28, 28)))


@pytest.fixture(scope="module")
def real(mnist):
    (x_train, _), (x_test, _) = mnist
    return data.preprocess_images(x_train[:5000]), data.preprocess_images(x_test[:2000])


def test_real_test_images_do_not_drift_but_inverted_and_shifted_do(real):
    x_train, x_test = real
    reference = training_statistics(x_train)
    assert set(reference) == set(STATISTICS)
    monitor = DriftMonitor(reference, window=1000)
    assert monitor.drift() == dict.fromkeys(STATISTICS, 0.0) and monitor.count == 0
    monitor.update(x_test)
    assert monitor.count == 1000
    assert max(monitor.drift().values()) < 0.5  # same distribution
    monitor.update(1.0 - x_test)  # inverted: white background
    inverted = monitor.drift()
    assert inverted["mean"] > 3 and inverted["ink"] > 3
    monitor.reset()
    monitor.update(np.roll(x_test, 12, axis=2))  # digits pushed to the edge
    assert monitor.drift()["border"] > 3


def test_window_keeps_only_the_latest_images():
    reference = {s: {"mean": 0.0, "std": 1.0} for s in STATISTICS}
    monitor = DriftMonitor(reference, window=5)
    for value in (0.0, 1.0):  # 3 zeros, then 3 ones, wrapping around the ring
        monitor.update(np.full((3, 28, 28), value, np.float32))
    assert monitor.count == 5
    assert monitor.live_means()["mean"] == pytest.approx(3 / 5)
    monitor.update(np.full((7, 28, 28), 0.5, np.float32))  # more than the window
    assert monitor.live_means()["mean"] == pytest.approx(0.5)


def test_bad_reference_and_window():
    with pytest.raises(ValueError, match="lack"):
        DriftMonitor({"mean": {"mean": 0, "std": 1}})
    reference = {s: {"mean": 0.0, "std": 1.0} for s in STATISTICS}
    with pytest.raises(ValueError, match="window"):
        DriftMonitor(reference, window=0)
    with pytest.raises(ValueError, match="at least 2 images"):
        training_statistics(np.zeros((1, 28, 28)))


def test_uint8_images_count_as_scaled_floats():
    x = (np.arange(2 * 28 * 28) % 256).astype(np.uint8).reshape(2, 28, 28)
    np.testing.assert_allclose(
        image_statistics(x), image_statistics(x / np.float32(255)), atol=1e-6
    )


def test_queued_batches_are_counted_when_asked():
    reference = {s: {"mean": 0.5, "std": 0.1} for s in STATISTICS}
    monitor = DriftMonitor(reference, window=10)
    for _ in range(30):  # 60 images: more than two windows, so it flushes itself
        monitor.update(np.zeros((2, 28, 28), np.uint8))
    monitor.update(np.full((4, 28, 28, 1), 0.5, np.float32))
    assert monitor.count == 10
    assert monitor.live_means()["mean"] == pytest.approx(0.4 * 0.5)
    assert monitor.drift()["mean"] == pytest.approx(abs(0.2 - 0.5) / 0.1)


def test_drift_and_serving_plots():
    from cnnlearn import plots

    fig = plots.plot_drift({"mean": [0, 5, 0], "ink": [0, 4, 1]}, [(0, "a"), (1, "b")])
    assert len(fig.axes[0].lines) == 2 and len(fig.axes[0].patches) == 2
    run = {"requests_per_s": 10.0, "p99_ms": 2.0}
    results = {"servers": {"naive": {"s": run}, "ours": {"s": run, "t": run}}}
    fig = plots.plot_serving(results, "s")
    assert [len(ax.patches) for ax in fig.axes] == [2, 2]


def test_alert_fires_only_after_the_condition_held_long_enough():
    times = [0, 10, 20, 30, 40, 50]
    values = [0.5, 4, 5, 4, 0.5, 4]  # above 3 from t=10 to t=30, again at t=50
    assert alert_fires(times, values, 3.0)  # no `for`: the first value above fires
    assert alert_fires(times, values, 3.0, for_seconds=20)  # held 10..30
    assert not alert_fires(times, values, 3.0, for_seconds=21)
    assert not alert_fires(times, values, 5.0)  # strictly above the threshold
    # a dip below the threshold restarts the clock
    assert not alert_fires([0, 10, 20, 30], [4, 4, 1, 4], 3.0, for_seconds=15)
    assert not alert_fires([], [], 3.0)


def test_alert_fires_rejects_bad_input():
    with pytest.raises(ValueError, match="2 times but 1 values"):
        alert_fires([0, 1], [4], 3.0)
    with pytest.raises(ValueError, match="non-decreasing"):
        alert_fires([1, 0], [4, 4], 3.0)
    with pytest.raises(ValueError, match="for_seconds"):
        alert_fires([0], [4], 3.0, for_seconds=-1)
