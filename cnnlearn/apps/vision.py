"""Vision applications: product classification, face identification (chapter 9).

The article's face snippet loads a model file that does not exist and calls
``cv2.imread → resize → predict``. Here the model is trained on the AT&T faces
(:func:`train_faces`), and :func:`predict_image` takes a real image file through
exactly the preprocessing used in training: grayscale uint8, resized to the
model's input size, scaled to [0, 1].
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import keras
import numpy as np
import tensorflow as tf

from cnnlearn import models, train
from cnnlearn.data.faces import Faces, read_pgm, split_per_subject
from cnnlearn.data.load import DataError, preprocess_images

__all__ = [
    "FaceRun",
    "Prediction",
    "embeddings",
    "load_image",
    "predict_image",
    "train_faces",
    "verification_scores",
]


@dataclass
class FaceRun:
    """A trained face model with its split and held-out evaluation."""

    result: train.TrainResult
    train_index: np.ndarray
    test_index: np.ndarray
    evaluation: train.Evaluation

    @property
    def model(self) -> keras.Model:
        return self.result.model


def train_faces(
    faces: Faces,
    n_train: int = 7,
    epochs: int = 60,
    batch_size: int = 16,
    learning_rate: float = 2e-3,
    augment: bool = True,
    seed: int = 0,
    device: str = "auto",
    verbose: int | str = 0,
) -> FaceRun:
    """Train :func:`cnnlearn.models.face_cnn` on ``n_train`` images per subject.

    The other images of every subject are the test set (3 per subject for AT&T
    faces): identification accuracy on faces the model never saw. Adam with a
    cosine schedule, no validation hold-out (70 images per class would be too
    few to spare). Used in chapter 9.
    """
    train_index, test_index = split_per_subject(faces.labels, n_train, seed)
    x = preprocess_images(faces.images)
    num_classes = int(faces.labels.max()) + 1
    keras.utils.set_random_seed(seed)
    model = models.face_cnn(x.shape[1:], num_classes, augment=augment)
    result = train.fit(
        model,
        x[train_index],
        faces.labels[train_index],
        epochs=epochs,
        batch_size=batch_size,
        validation_split=0.0,
        learning_rate=learning_rate,
        lr_schedule="cosine",
        seed=seed,
        device=device,
        verbose=verbose,
    )
    evaluation = train.evaluate(result.model, x[test_index], faces.labels[test_index])
    return FaceRun(result, train_index, test_index, evaluation)


def embeddings(model: keras.Model, x: np.ndarray, layer: str = "embedding"):
    """L2-normalized outputs of ``layer`` (the face CNN's 64-d embedding)."""
    features = keras.Model(model.inputs, model.get_layer(layer).output)
    e = np.asarray(features.predict(x, batch_size=256, verbose=0), dtype=np.float64)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def verification_scores(
    embedded: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity and same-person flag of every pair of distinct images.

    The verification view ("are these two photos the same person?"): a
    threshold on the similarity decides; sweeping it gives the ROC curve
    (``sklearn.metrics.roc_curve(same, similarity)``).
    """
    i, j = np.triu_indices(len(labels), k=1)
    similarity = np.sum(embedded[i] * embedded[j], axis=1)
    return similarity, (labels[i] == labels[j]).astype(np.int64)


def load_image(path: str | os.PathLike, size: tuple[int, int]) -> np.ndarray:
    """Read an image file as a ``(1, H, W, 1)`` float32 batch in [0, 1].

    PGM goes through :func:`cnnlearn.data.read_pgm`; PNG, JPEG, BMP and GIF
    through ``tf.io.decode_image``. Color becomes grayscale, and an image of
    another size is resized (area-averaging) to ``size = (H, W)``. Then the
    training preprocessing: :func:`cnnlearn.data.preprocess_images`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    if path.suffix.lower() in (".pgm", ".pnm") or path.read_bytes()[:2] in (
        b"P5",
        b"P2",
    ):
        image = read_pgm(path)[..., np.newaxis]
    else:
        try:
            decoded = tf.io.decode_image(path.read_bytes(), expand_animations=False)
        except tf.errors.InvalidArgumentError as exc:
            raise DataError(f"{path}: not a readable image ({exc.message})") from None
        image = decoded.numpy()
        if image.shape[-1] in (2, 4):  # drop the alpha channel
            image = image[..., :-1]
        if image.shape[-1] == 3:
            image = np.round(tf.image.rgb_to_grayscale(image).numpy()).astype(np.uint8)
    if image.shape[:2] != tuple(size):
        resized = tf.image.resize(image, size, method="area", antialias=True)
        image = np.clip(np.round(resized.numpy()), 0, 255).astype(np.uint8)
    return preprocess_images(image[np.newaxis])


@dataclass
class Prediction:
    """The top class of one input and the probabilities of all classes."""

    label: int
    name: str
    probability: float
    probabilities: np.ndarray


def predict_image(
    path: str | os.PathLike,
    model: keras.Model,
    class_names: list[str] | None = None,
) -> Prediction:
    """Classify one image file with ``model``, preprocessed as in training.

    The article's ``cv2.imread → resize → predict``, done correctly: grayscale,
    the model's own input size, uint8 scaled to [0, 1]. Used in chapter 9.
    """
    height, width = model.input_shape[1:3]
    # A direct call: one image needs no predict loop (nor its retracing).
    probabilities = np.asarray(
        model(load_image(path, (height, width)), training=False)
    )[0]
    label = int(probabilities.argmax())
    name = class_names[label] if class_names else str(label)
    return Prediction(label, name, float(probabilities[label]), probabilities)
