"""Seeded batches: the same order on every backend (chapter 4's parity table)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlearn import pipeline


def batches(seq) -> list[tuple[np.ndarray, np.ndarray]]:
    return [seq[i] for i in range(len(seq))]


def test_images_become_floats_with_a_channel_axis():
    x = np.array([[[0, 255]]], np.uint8)
    out = pipeline.images_to_float(x)
    assert out.dtype == np.float32 and out.shape == (1, 1, 2, 1)
    assert out.max() == 1.0
    floats = np.full((2, 3, 3, 1), 0.5, np.float32)
    assert np.array_equal(pipeline.images_to_float(floats), floats)


def test_each_epoch_is_a_new_permutation_fixed_by_the_seed():
    x = np.arange(10, dtype=np.uint8).reshape(10, 1, 1)
    y = np.arange(10)
    a, b = (pipeline.SeededBatches(x, y, 4, seed=3) for _ in range(2))
    epochs = []
    for epoch in (0, 1, 2):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        labels = np.concatenate([yb for _, yb in batches(a)])
        assert np.array_equal(labels, np.concatenate([yb for _, yb in batches(b)]))
        assert sorted(labels) == list(range(10))  # every example once
        epochs.append(labels)
    assert not np.array_equal(epochs[0], epochs[1])
    a.set_epoch(0)
    assert np.array_equal(np.concatenate([yb for _, yb in batches(a)]), epochs[0])
    assert [len(yb) for _, yb in batches(a)] == [4, 4, 2]
    first = batches(a)[0]
    assert np.allclose(first[0][..., 0, 0, 0] * 255, first[1])  # pairs stay paired


def test_without_a_seed_the_order_is_kept():
    x, y = np.zeros((5, 2, 2), np.uint8), np.arange(5)
    seq = pipeline.SeededBatches(x, y, 2)
    seq.set_epoch(4)
    assert np.concatenate([yb for _, yb in batches(seq)]).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(IndexError):
        seq[3]


def test_batches_split_evenly_over_devices():
    x, y = np.zeros((11, 2, 2), np.uint8), np.arange(11)
    seq = pipeline.SeededBatches(x, y, 4, seed=0, multiple_of=2)
    assert [len(yb) for _, yb in batches(seq)] == [4, 4, 2]  # one example dropped
    with pytest.raises(ValueError, match="multiple of 2"):
        pipeline.SeededBatches(x, y, 3, multiple_of=2)
    with pytest.raises(ValueError, match="differ in length"):
        pipeline.SeededBatches(x, y[:3], 4)
