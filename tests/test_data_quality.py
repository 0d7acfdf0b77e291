from __future__ import annotations

import numpy as np
import pytest

from cnnlearn import data


@pytest.fixture(scope="module")
def digits(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    return x_train[:2000].copy(), y_train[:2000].copy(), x_test[:500].copy()


def test_real_data_validates_clean(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert data.validate_images(x_train, y_train).ok
    assert str(data.validate_images(x_test, y_test)) == "10,000 rows: no problems found"


@pytest.mark.parametrize(
    ("corrupt", "message", "row"),
    [
        (lambda x, y: (x.__setitem__((3, 5, 5), np.nan), y), "NaN or infinite", 3),
        (lambda x, y: (x.__setitem__((7, 0, 0), 300.0), y), "outside [0, 255]", 7),
        (lambda x, y: (x.__setitem__((8, 1, 1), -1.0), y), "outside [0, 255]", 8),
        (lambda x, y: (x, y.__setitem__(9, 10)), "labels outside 0..9", 9),
        (lambda x, y: (x, y.__setitem__(4, 2.5)), "non-integer labels", 4),
    ],
)
def test_validation_reports_each_problem(digits, corrupt, message, row):
    x, y = digits[0][:50].astype(np.float64), digits[1][:50].astype(np.float64)
    corrupt(x, y)
    report = data.validate_images(x, y)
    assert not report.ok and message in str(report)
    assert report.bad_rows.tolist() == [row]


def test_validation_shape_and_length(digits):
    x, y = digits[0][:10], digits[1][:10]
    assert "expected (28, 28)" in data.validate_images(x[:, :27], y).problems[0]
    assert "10 images but 9 labels" in data.validate_images(x, y[:9]).problems[0]


def test_exact_duplicates_within_and_across(digits):
    x, _, x_test = digits
    x = x[:100].copy()
    x[50], x[70] = x[3], x[3]
    assert [g.tolist() for g in data.find_duplicates(x)] == [[3, 50, 70]]
    assert data.find_cross_duplicates(x, np.stack([x_test[0], x[10]])) == [(10, 1)]


def test_near_duplicates_survive_brightness_but_not_other_digits(digits):
    x, _, x_test = digits
    dimmer = (x[:5].astype(np.float32) * 0.8).astype(np.uint8)
    pairs = data.find_near_duplicates(x[:200], dimmer, chunk=2)
    assert sorted((i, j) for i, j, _ in pairs) == [(k, k) for k in range(5)]
    assert all(s > 0.99 for *_, s in pairs)
    assert data.find_near_duplicates(x[:200], x_test[:50], threshold=0.999) == []


def test_clean_drops_and_logs_without_touching_inputs(digits):
    x, y, x_test = digits
    x, y = x[:100].astype(np.float64), y[:100].astype(np.int64)
    x[5, 0, 0] = np.nan
    x[6] = x[1]
    x[7] = x_test[0]
    before = x.copy()
    x_out, y_out, log = data.clean(x, y, exclude=x_test)
    assert (log["invalid"], log["repeated"], log["leaking"]) == (1, 1, 1)
    assert log["rows_out"] == len(x_out) == len(y_out) == 97
    np.testing.assert_array_equal(x, before)


def test_standardization_statistics_come_from_the_train_split(mnist):
    (x_train, _), (x_test, _) = mnist
    mean, std = data.standardization_stats(x_train)
    assert mean == pytest.approx(0.1307, abs=1e-4) and std == pytest.approx(
        0.3081, abs=1e-4
    )
    assert (mean, std) != data.standardization_stats(x_test)
    layer = data.normalization_layer(x_train)
    z = np.asarray(layer(data.preprocess_images(x_train[:5000])))
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    z_test = np.asarray(layer(data.preprocess_images(x_test)))
    assert (
        abs(z_test.mean() - (data.standardization_stats(x_test)[0] - mean) / std) < 1e-4
    )


def test_describe_real_mnist(mnist):
    (x_train, y_train), _ = mnist
    summary = data.describe(x_train, y_train)
    assert summary["n"] == 60_000 and summary["image_shape"] == (28, 28)
    assert sum(summary["class_counts"]) == 60_000
    assert summary["class_counts"][1] == max(summary["class_counts"])  # ones
    assert 1.1 < summary["imbalance"] < 1.3
    assert abs(summary["pixel_mean"] - 0.1307) < 1e-4
    assert 0.75 < summary["background"] < 0.85


def test_describe_rejects_mismatched_or_bad_labels():
    x = np.zeros((4, 28, 28), np.uint8)
    with pytest.raises(ValueError, match="as many labels"):
        data.describe(x, np.zeros(3, int))
    with pytest.raises(ValueError, match="labels must be in"):
        data.describe(x, np.array([0, 1, 2, 10]))
