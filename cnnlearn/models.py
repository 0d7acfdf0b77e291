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

__all__ = [
    "MODELS",
    "ModelSpec",
    "caser",
    "face_cnn",
    "get_model",
    "get_spec",
    "keras_io_convnet",
    "kim_text_cnn",
    "lenet5",
    "prepend",
    "seed_cnn",
    "speedrun_cnn",
    "strong_cnn",
    "wide_bn_cnn",
]

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


def _digit_augmentation() -> list[layers.Layer]:
    # The strong CNN's augmentation: small rotations, shifts and zooms.
    return [
        layers.RandomRotation(0.04, fill_mode="constant"),
        layers.RandomTranslation(0.1, 0.1, fill_mode="constant"),
        layers.RandomZoom(0.1, fill_mode="constant"),
    ]


def wide_bn_cnn(
    input_shape: InputShape = (28, 28, 1),
    num_classes: int = 10,
    augment: bool = True,
):
    """The strong CNN's recipe, wider where it is cheap: the 99.6 % CNN (chapter 5).

    Augmentation as in :func:`strong_cnn` (training only), then 3×3
    convolutions with batch norm and ReLU: 32 filters at 28×28, max pooling,
    48 and 48 at 14×14, max pooling, 128 at 7×7, max pooling to 3×3, then
    Dense(256) with batch norm, ReLU and dropout, and the softmax. The
    filters grow where the maps are small, so it costs about as many FLOPs per
    image as the strong CNN; the dense layer reads 3×3×128 features instead of
    7×7×64.

    The recipe (see :data:`MODELS`): batch 128, Adam at 3e-3 with a cosine
    decay over a fixed 10 epochs, label smoothing 0.1 (the speedrun's ablation
    in chapter 5 measures what it buys), no checkpoint chosen by test accuracy. It
    trains in the precision :func:`cnnlearn.compute.plan` picks (bfloat16 on
    a CPU with native bfloat16 units). ``benchmarks/best_cnn.py`` trains it
    over three seeds beside the strong CNN and writes the measured accuracies
    and times to ``benchmarks/results/best_cnn.json``.
    """
    return keras.Sequential(
        [
            keras.Input(input_shape),
            *(_digit_augmentation() if augment else []),
            *_conv_bn_relu(32),
            layers.MaxPooling2D(2),
            *_conv_bn_relu(48),
            *_conv_bn_relu(48),
            layers.MaxPooling2D(2),
            *_conv_bn_relu(128),
            layers.MaxPooling2D(2),
            layers.Dropout(0.2),
            layers.Flatten(),
            layers.Dense(256, use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.Dropout(0.3),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="wide_bn_cnn",
    )


def speedrun_cnn(
    input_shape: InputShape = (28, 28, 1),
    num_classes: int = 10,
    batch_norm: bool = True,
):
    """A small CNN for the 99 % speedrun (速通, chapter 5), batch norm optional.

    Two 3×3 convolutions with ReLU (32 filters at 28×28, max pooling, 64 at
    14×14, max pooling), Dense(128) with ReLU, then the softmax. With
    ``batch_norm`` (the default) each hidden layer has batch norm, momentum
    0.9 so that its statistics settle within the few hundred steps of a short
    run; without it, biased layers. No dropout and no augmentation:
    regularizers for long runs, which a two-epoch run has little use for. The
    recipe (see :data:`MODELS`): batch 256, a one-cycle learning rate peaking
    at 1e-2, label smoothing 0.1, in the precision :func:`cnnlearn.compute.plan`
    picks. ``benchmarks/speedrun.py`` chooses on a validation split (never the
    test set) whether to keep batch norm, the input pipeline and the number of
    epochs, times the result against keras-io's ``mnist_convnet``
    (:func:`keras_io_convnet`) and measures what each ingredient buys.
    """
    block = _conv_bn_relu_fast if batch_norm else _conv_relu
    hidden = (
        [
            layers.Dense(128, use_bias=False),
            layers.BatchNormalization(momentum=0.9),
            layers.ReLU(),
        ]
        if batch_norm
        else [layers.Dense(128, activation="relu")]
    )
    return keras.Sequential(
        [
            keras.Input(input_shape),
            *block(32),
            layers.MaxPooling2D(2),
            *block(64),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            *hidden,
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="speedrun_cnn",
    )


def keras_io_convnet(input_shape: InputShape = (28, 28, 1), num_classes: int = 10):
    """keras-io's ``mnist_convnet`` example, layer for layer (34,826 parameters).

    Conv2D(32, 3×3, ReLU) → MaxPool(2) → Conv2D(64, 3×3, ReLU) → MaxPool(2) →
    Flatten → Dropout(0.5) → Dense(10, softmax), as in keras-io's
    ``examples/vision/mnist_convnet.py``, which trains it with Adam at batch
    128 for 15 epochs. The speedrun's baseline (chapter 5).
    """
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="keras_io_convnet",
    )


def _conv_relu(filters: int) -> list[layers.Layer]:
    return [layers.Conv2D(filters, 3, padding="same", activation="relu")]


def _conv_bn_relu_fast(filters: int) -> list[layers.Layer]:
    # Batch-norm statistics that settle within a few hundred steps (small data).
    return [
        layers.Conv2D(filters, 3, padding="same", use_bias=False),
        layers.BatchNormalization(momentum=0.9),
        layers.ReLU(),
    ]


def face_cnn(
    input_shape: InputShape = (112, 92, 1),
    num_classes: int = 40,
    embedding_dim: int = 64,
    augment: bool = True,
):
    """A small CNN that identifies the 40 AT&T subjects (chapter 9).

    Augmentation (small shifts, rotations, zooms, horizontal flips; training
    only), 2×2 average pooling to 56×46 (cheap, and enough detail for 40
    people), four 3×3 convolutions with batch norm and ReLU (32, 64, 128, 128
    filters; max pooling after the first three; batch-norm momentum 0.9, as
    there are only 18 steps per epoch), global average pooling, then a
    64-d layer named ``"embedding"`` and the softmax over subjects. The
    embedding is what the verification view compares (distances between faces).
    """
    augmentation = (
        [
            layers.RandomFlip("horizontal"),
            layers.RandomTranslation(0.05, 0.05, fill_mode="nearest"),
            layers.RandomRotation(0.03, fill_mode="nearest"),
            layers.RandomZoom(0.08, fill_mode="nearest"),
        ]
        if augment
        else []
    )
    return keras.Sequential(
        [
            keras.Input(input_shape),
            *augmentation,
            layers.AveragePooling2D(2, name="downsample"),
            *_conv_bn_relu_fast(32),
            layers.MaxPooling2D(2),
            *_conv_bn_relu_fast(64),
            layers.MaxPooling2D(2),
            *_conv_bn_relu_fast(128),
            layers.MaxPooling2D(2),
            *_conv_bn_relu_fast(128),
            layers.GlobalAveragePooling2D(),
            layers.Dropout(0.3),
            layers.Dense(embedding_dim, name="embedding"),
            layers.ReLU(),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="face_cnn",
    )


def kim_text_cnn(
    vocab_size: int,
    sequence_length: int,
    num_classes: int = 2,
    embedding_dim: int = 64,
    widths: tuple[int, ...] = (3, 4, 5),
    filters: int = 64,
    dropout: float = 0.5,
):
    """Kim (2014)'s sentence CNN on token ids (chapter 9).

    Embedding → one Conv1D per width in ``widths`` (``filters`` each, ReLU), run
    in parallel over the same embedded sentence → global max pooling over time
    (the strongest n-gram detector response wherever it occurs) → concatenate →
    dropout → softmax. Input: ``(batch, sequence_length)`` int ids from a
    ``TextVectorization`` layer (0 = padding, 1 = out of vocabulary). The
    original uses pre-trained word2vec vectors; here the embedding is learned.
    """
    tokens = keras.Input((sequence_length,), dtype="int64", name="tokens")
    embedded = layers.Embedding(vocab_size, embedding_dim, name="embedding")(tokens)
    pooled = [
        layers.GlobalMaxPooling1D(name=f"max_over_time_{w}")(
            layers.Conv1D(filters, w, activation="relu", name=f"conv_{w}")(embedded)
        )
        for w in widths
    ]
    features = layers.Concatenate()(pooled) if len(pooled) > 1 else pooled[0]
    features = layers.Dropout(dropout)(features)
    outputs = layers.Dense(num_classes, activation="softmax")(features)
    return keras.Model(tokens, outputs, name="kim_text_cnn")


def caser(
    n_users: int,
    n_items: int,
    window: int = 5,
    dim: int = 50,
    n_horizontal: int = 16,
    n_vertical: int = 4,
    dropout: float = 0.5,
):
    """Caser (Tang and Wang, 2018): convolutions over the last ``window`` items.

    The ``window`` most recent items are embedded into an ``window × dim``
    "image". *Horizontal* filters of heights 1..``window`` span the full
    embedding width and are max-pooled over time: they detect union-level and
    skip patterns of several items. *Vertical* filters of shape ``window × 1``
    take weighted sums of the item embeddings (point-level patterns). Both go
    through a fully connected layer, are concatenated with the user's embedding
    (long-term taste) and scored against every item. Inputs ``users`` (ids
    ``0..n_users-1``) and ``items`` (``window`` ids, 0 = padding); output: a
    softmax over ids ``0..n_items`` (0 is never a target). The paper trains with
    sampled negatives and a sigmoid loss; with a few hundred items a full
    softmax is simpler and exact.
    """
    users = keras.Input((), dtype="int64", name="users")
    items = keras.Input((window,), dtype="int64", name="items")
    embedded = layers.Embedding(n_items + 1, dim, name="item_embedding")(items)
    horizontal = [
        layers.GlobalMaxPooling1D()(
            layers.Conv1D(n_horizontal, h, activation="relu", name=f"horizontal_{h}")(
                embedded
            )
        )
        for h in range(1, window + 1)
    ]
    image = layers.Reshape((window, dim, 1))(embedded)
    vertical = layers.Conv2D(n_vertical, (window, 1), name="vertical")(image)
    features = layers.Concatenate()([*horizontal, layers.Flatten()(vertical)])
    features = layers.Dropout(dropout)(features)
    z = layers.Dense(dim, activation="relu", name="sequence_features")(features)
    user = layers.Embedding(n_users, dim, name="user_embedding")(users)
    scores = layers.Dense(n_items + 1, activation="softmax", name="scores")(
        layers.Concatenate()([z, user])
    )
    return keras.Model({"users": users, "items": items}, scores, name="caser")


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
    """A model builder and the training defaults that go with it.

    ``lr_schedule`` and ``label_smoothing`` are :func:`cnnlearn.train.fit`'s
    options of the same names (chapters 4 and 5).
    """

    build: Callable[..., keras.Model]
    description: str
    epochs: int
    batch_size: int
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"  # or "cosine", "one_cycle"
    label_smoothing: float = 0.0


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
    "wide_bn": ModelSpec(
        wide_bn_cnn,
        "wider BN + augmentation CNN, cosine, label smoothing (the 99.6 % recipe)",
        epochs=10,
        batch_size=128,
        learning_rate=3e-3,
        lr_schedule="cosine",
        label_smoothing=0.1,
    ),
    "speedrun": ModelSpec(
        speedrun_cnn,
        "small CNN, one-cycle, label smoothing (the 99 % speedrun)",
        epochs=2,
        batch_size=256,
        learning_rate=1e-2,
        lr_schedule="one_cycle",
        label_smoothing=0.1,
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
