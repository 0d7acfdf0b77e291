"""In-memory arrays to ``tf.data`` batches: :func:`make_dataset` (chapter 3).

TensorFlow's own: on another Keras backend, :class:`cnnlearn.pipeline.SeededBatches`
feeds ``Model.fit`` instead.
"""

from __future__ import annotations

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import keras
import numpy as np

from cnnlearn._tf import require_tensorflow
from cnnlearn.pipeline.batches import augmentation

tf = require_tensorflow("tf.data pipelines")

__all__ = [
    "batch_to_float",
    "finish_pipeline",
    "make_dataset",
]

AUTOTUNE = tf.data.AUTOTUNE


def batch_to_float(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """A batch as the models take it: float32 images in [0, 1] with a channel axis
    (uint8 divided by 255, floats kept) and int64 labels (chapter 3)."""
    scale = 255.0 if images.dtype == tf.uint8 else 1.0
    images = tf.cast(images, tf.float32) / scale
    if images.shape.rank == 3:
        images = images[..., tf.newaxis]
    return images, tf.cast(labels, tf.int64)


def finish_pipeline(
    ds: tf.data.Dataset,
    training: bool,
    augment: str | keras.Layer,
    seed: int | None,
    prefetch: bool,
) -> tf.data.Dataset:
    """The end both pipelines share: augment, fix determinism, prefetch (ch. 3).

    Augments only when ``training`` (``augment`` as in :func:`make_dataset`);
    the order is deterministic when seeded or not training.
    """
    if training and not (isinstance(augment, str) and augment == "none"):
        aug = augmentation(augment, seed) if isinstance(augment, str) else augment
        # Keras' random layers keep their seed state in a variable: parallel
        # calls would race for it, so a seeded pipeline augments one batch at a
        # time (each batch's ops still use every core).
        ds = ds.map(
            lambda x, y: (aug(x, training=True), y),
            num_parallel_calls=None if seed is not None else AUTOTUNE,
        )
    options = tf.data.Options()
    options.deterministic = seed is not None or not training
    ds = ds.with_options(options)
    return ds.prefetch(AUTOTUNE) if prefetch else ds


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int = 32,
    training: bool = False,
    augment: str | keras.Layer = "none",
    cache: bool = True,
    prefetch: bool = True,
    seed: int | None = None,
    shuffle_buffer: int | None = None,
) -> tf.data.Dataset:
    """A ``tf.data`` pipeline over in-memory arrays (chapter 3).

    cache → shuffle (training) → batch → uint8 to float32 / 255 and a channel
    axis → augmentation (training) → prefetch. The images stay uint8 in memory:
    the conversion happens per batch, inside the pipeline.

    Parameters
    ----------
    x, y
        Images, uint8 ``(N, H, W)`` or ``(N, H, W, C)`` or scaled floats; labels.
    training
        Shuffle (anew each epoch) and augment; ``False`` keeps the order of ``x``
        and never augments, whatever ``augment`` says.
    augment
        An :data:`AUGMENTATIONS` name for :func:`augmentation`, or a Keras layer.
    seed
        Seeds shuffle and augmentation and makes the batches reproducible. A
        seeded pipeline augments one batch at a time (Keras' random layers keep
        their state in a variable that parallel calls would race for).
    shuffle_buffer
        By default ``len(x)``: a perfect shuffle.
    """
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} and {len(y)}")
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"expected uint8 or float images, found dtype {x.dtype}")
    if x.ndim not in (3, 4):
        raise ValueError(f"expected images (N, H, W) or (N, H, W, C), got {x.shape}")
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(
            shuffle_buffer or len(x), seed=seed, reshuffle_each_iteration=True
        )
    ds = ds.batch(batch_size).map(batch_to_float, num_parallel_calls=AUTOTUNE)
    return finish_pipeline(ds, training, augment, seed, prefetch)
