"""The book's CNNs, as plain Keras 3 models (chapter 4).

``get_model(name)`` builds a fresh, uncompiled model; ``get_spec(name)`` also tells
the training defaults (epochs, batch size, learning rate and schedule) that go with
it, which ``cnnlearn.train`` and the ``cnnlearn train`` CLI use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import keras
from keras import layers

__all__ = ["MODELS", "ModelSpec", "get_model", "get_spec", "lenet5", "prepend"]
__all__ += ["seed_cnn"]
__all__ += ["strong_cnn"]

InputShape = tuple[int, int, int]


def seed_cnn(input_shape: InputShape = (28, 28, 1), num_classes: int = 10):
    """The source article's model, layer for layer (54,410 parameters on MNIST).

    Conv2D(32, 3×3, ReLU) → MaxPool(2×2) → Flatten → Dense(10, softmax).
    """
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="seed_cnn",
    )


def lenet5(input_shape: InputShape = (28, 28, 1), num_classes: int = 10):
    """LeNet-5 (LeCun et al., 1998) for 28×28 inputs (61,706 parameters).

    C1 uses ``padding="same"`` so the 28×28 digits stand in for the paper's padded
    32×32 ones; subsampling is average pooling as in the paper. ReLU replaces the
    scaled tanh and a softmax the RBF output layer, as in most modern re-creations.
    """
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv2D(6, 5, padding="same", activation="relu", name="c1"),
            layers.AveragePooling2D(2, name="s2"),
            layers.Conv2D(16, 5, activation="relu", name="c3"),
            layers.AveragePooling2D(2, name="s4"),
            layers.Flatten(),
            layers.Dense(120, activation="relu", name="c5"),
            layers.Dense(84, activation="relu", name="f6"),
            layers.Dense(num_classes, activation="softmax", name="output"),
        ],
        name="lenet5",
    )


def _conv_bn_relu(filters: int) -> list[layers.Layer]:
    return [
        layers.Conv2D(filters, 3, padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.ReLU(),
    ]


def strong_cnn(
    input_shape: InputShape = (28, 28, 1),
    num_classes: int = 10,
    augment: bool = True,
):
    """A small VGG-style CNN with batch norm, dropout and augmentation.

    A 3×3 convolution with 32 filters, max pooling, two 3×3 convolutions with 64
    filters, max pooling, then Dense(128) and the softmax; every convolution is
    followed by batch norm and ReLU. The augmentation layers
    (small rotations, shifts and zooms) are active only while training, so the
    saved model predicts on plain images. Trained with a cosine learning-rate
    schedule (see :data:`MODELS`) it passes 99.4 % on MNIST; the measured run is
    in ``benchmarks/results/train_mnist.json``.
    """
    augmentation = (
        [
            layers.RandomRotation(0.04, fill_mode="constant"),
            layers.RandomTranslation(0.1, 0.1, fill_mode="constant"),
            layers.RandomZoom(0.1, fill_mode="constant"),
        ]
        if augment
        else []
    )
    return keras.Sequential(
        [
            keras.Input(input_shape),
            *augmentation,
            *_conv_bn_relu(32),
            layers.MaxPooling2D(2),
            *_conv_bn_relu(64),
            *_conv_bn_relu(64),
            layers.MaxPooling2D(2),
            layers.Dropout(0.2),
            layers.Flatten(),
            layers.Dense(128, use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.Dropout(0.3),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="strong_cnn",
    )


def prepend(layer: layers.Layer, model: keras.Model) -> keras.Sequential:
    """``model`` with ``layer`` in front, e.g. augmentation or standardization.

    The new model shares ``model``'s layers (and weights) and is saved with
    ``layer`` inside, so preprocessing travels with the model (chapter 3).
    """
    return keras.Sequential(
        [keras.Input(model.input_shape[1:]), layer, *model.layers],
        name=f"{model.name}_with_{layer.name}",
    )


@dataclass(frozen=True)
class ModelSpec:
    """A model builder and the training defaults that go with it."""

    build: Callable[..., keras.Model]
    description: str
    epochs: int
    batch_size: int
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"  # or "cosine"


MODELS: dict[str, ModelSpec] = {
    "seed": ModelSpec(seed_cnn, "the source article's CNN", epochs=3, batch_size=32),
    "lenet5": ModelSpec(lenet5, "LeNet-5 (1998)", epochs=5, batch_size=128),
    "strong": ModelSpec(
        strong_cnn,
        "BN + augmentation CNN",
        epochs=15,
        batch_size=128,
        learning_rate=2e-3,
        lr_schedule="cosine",
    ),
}


def get_spec(name: str) -> ModelSpec:
    """Return the :class:`ModelSpec` registered as ``name``."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}: expected one of {sorted(MODELS)}"
        ) from None


def get_model(name: str, seed: int | None = None, **kwargs) -> keras.Model:
    """Build a fresh model by registry name (``"seed"``, ``"lenet5"``, ``"strong"``).

    With ``seed``, ``keras.utils.set_random_seed(seed)`` runs first, so the
    initial weights are reproducible (``train.fit`` seeds only what happens
    after the model exists). Other keyword arguments go to the builder, e.g.
    ``input_shape`` or ``num_classes``.
    """
    spec = get_spec(name)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    return spec.build(**kwargs)
