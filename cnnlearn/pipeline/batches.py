"""Batches for any Keras backend: augmentation and seeded batches (chapters 3, 4).

:func:`augmentation` is made of Keras layers, so it runs on TensorFlow, JAX and
PyTorch alike. :class:`SeededBatches` feeds ``Model.fit`` in-memory images in
an order fixed by the seed alone, the same on every backend: the backend
parity table of chapter 4 trains each backend on the same batches.
"""

from __future__ import annotations

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import keras
import numpy as np
from keras import layers

__all__ = ["AUGMENTATIONS", "SeededBatches", "augmentation", "images_to_float"]

AUGMENTATIONS = ("none", "flip", "geometric", "flips")


def augmentation(kind: str = "geometric", seed: int | None = None) -> keras.Sequential:
    """Random image transformations for training, as a Keras model (chapter 3).

    ``kind`` is ``"none"`` (the identity), ``"flip"`` (horizontal mirroring
    alone), ``"geometric"`` (rotations up to ±18°, shifts and zooms up to 10 %,
    new pixels 0) or ``"flips"`` (geometric plus mirroring). Mirroring suits
    Fashion-MNIST, not digits. Layer ``i`` gets
    ``seed + i`` (one seed for all would tie the angle to the shift); two models
    built with the same seed transform a batch identically.
    """
    if kind not in AUGMENTATIONS:
        raise ValueError(
            f"unknown augmentation {kind!r}: expected one of {AUGMENTATIONS}"
        )
    if kind == "none":
        return keras.Sequential([layers.Identity()], name="no_augmentation")

    def s(i: int) -> int | None:
        return None if seed is None else seed + i

    if kind == "flip":
        flip = layers.RandomFlip("horizontal", seed=s(3))
        return keras.Sequential([flip], name="flip_augmentation")
    stack = [
        layers.RandomRotation(0.05, fill_mode="constant", seed=s(0)),
        layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=s(1)),
        layers.RandomZoom(0.1, fill_mode="constant", seed=s(2)),
    ]
    if kind == "flips":
        stack.append(layers.RandomFlip("horizontal", seed=s(3)))
    return keras.Sequential(stack, name=f"{kind}_augmentation")


def images_to_float(images: np.ndarray) -> np.ndarray:
    """Images as the models take them: float32 in [0, 1] with a channel axis
    (uint8 divided by 255, floats kept), as ``batch_to_float`` does in tf.data."""
    images = np.asarray(images)
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    out = images.astype(np.float32) / np.float32(scale)
    return out[..., None] if out.ndim == 3 else out


class SeededBatches(keras.utils.PyDataset):
    """In-memory ``(x, y)`` in batches, shuffled anew each epoch by the seed alone.

    Epoch ``e`` visits the examples in ``numpy.random.default_rng([seed,
    e]).permutation(n)``, on every Keras backend: Keras' own array input
    shuffles with the backend's random generator, so the same seed gives
    TensorFlow, JAX and PyTorch different batches. The epoch is set by
    :meth:`set_epoch`, which :func:`cnnlearn.train.fit` calls from a callback
    (Keras calls a dataset's own ``on_epoch_begin`` a different number of times
    on each backend), and fit passes ``shuffle=False`` (Keras would shuffle the
    batches' order with the backend's generator). Used for the plan's
    ``"batches"`` pipeline (chapter 4).

    Parameters
    ----------
    x, y
        Images (uint8 or floats, with or without a channel axis) and labels.
    batch_size
        Examples per batch; the last batch of an epoch may be smaller.
    seed
        Fixes the order; ``None`` keeps the order of ``x`` (evaluation).
    multiple_of
        Every batch's size is a multiple of this: the data-parallel devices
        (``keras.distribution`` splits a batch evenly), so the last batch
        of an epoch drops up to ``multiple_of - 1`` examples.
    """

    def __init__(
        self, x, y, batch_size: int, seed: int | None = None, multiple_of: int = 1
    ):
        super().__init__()
        x, y = np.asarray(x), np.asarray(y)
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} and {len(y)}")
        if batch_size < 1 or multiple_of < 1 or batch_size % multiple_of:
            raise ValueError(
                f"batch_size {batch_size} must be a positive multiple of {multiple_of}"
            )
        self.x, self.y, self.batch_size, self.seed = x, y, batch_size, seed
        self.n = len(x) - len(x) % multiple_of  # the examples an epoch visits
        self.epoch = None
        self.order = np.arange(len(x))
        self.set_epoch(0)

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Visit the examples in epoch ``epoch``'s order from now on."""
        if self.seed is not None and epoch != self.epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self.order = rng.permutation(len(self.x))
        self.epoch = epoch

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        start = index * self.batch_size
        rows = self.order[start : min(start + self.batch_size, self.n)]
        return images_to_float(self.x[rows]), self.y[rows].astype(np.int64)
