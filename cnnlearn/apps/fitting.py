"""A plain compile-and-fit for the chapter 9 models whose inputs are not images.

Token ids (text) and user/item ids (recommendation) go to ``Model.fit`` as
NumPy arrays, as they are; ``cnnlearn.train.fit`` is for image classifiers.
"""

from __future__ import annotations

from dataclasses import dataclass

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import keras
import tensorflow as tf

from cnnlearn import compute, train

__all__ = ["FitResult", "fit_ids"]


@dataclass
class FitResult:
    """Per-epoch history (with ``"seconds"``) and the total training time."""

    history: dict[str, list[float]]
    train_seconds: float
    n_examples: int


def fit_ids(
    model: keras.Model,
    x,
    y,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    device: str = "auto",
    metrics: tuple[str, ...] = (),
    verbose: int | str = 0,
) -> FitResult:
    """Adam + sparse categorical cross-entropy, seeded, on ``device`` (chapter 9).

    ``x`` is what the model takes (an array of ids, or a dict of them by input
    name) and ``y`` the integer targets; ``Model.fit`` gets them as they are,
    shuffled each epoch. The history gains ``"seconds"`` per epoch
    (:class:`~cnnlearn.train.EpochTimer`).
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1: {epochs}, {batch_size}")
    keras.utils.set_random_seed(seed)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=list(metrics),
    )
    with tf.device(compute.resolve_device(device)):
        fitted = model.fit(
            x,
            y,
            epochs=epochs,
            batch_size=batch_size,
            shuffle=True,
            callbacks=[train.EpochTimer()],
            verbose=verbose,
        )
    history = {k: [float(v) for v in vs] for k, vs in fitted.history.items()}
    return FitResult(history, float(sum(history["seconds"])), len(y))
