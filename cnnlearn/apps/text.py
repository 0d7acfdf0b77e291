"""Text classification: SMS spam with Kim's sentence CNN (chapter 9).

The article's snippet pads the raw words of ``'This is a good book.'`` and feeds
them to a model. A network cannot read words: text has to become integer ids
from a vocabulary learned on the training set first (``TextVectorization``:
lower-case, strip punctuation, split, look up, pad). :func:`predict_text` does
exactly that, with the vectorizer that was adapted on the training texts.
"""

from __future__ import annotations

from dataclasses import dataclass

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import keras
import numpy as np

from cnnlearn import models
from cnnlearn.apps.fitting import FitResult, fit_ids
from cnnlearn.data.sms import SMS_LABELS, Messages

__all__ = [
    "TextClassifier",
    "binary_metrics",
    "make_vectorizer",
    "predict_text",
    "train_text_cnn",
]


def make_vectorizer(
    texts, max_tokens: int = 10_000, sequence_length: int = 64
) -> keras.layers.TextVectorization:
    """A ``TextVectorization`` layer adapted on ``texts`` (the training set only).

    Lower-cases, strips punctuation, splits on whitespace, maps each word to its
    id in the vocabulary (0 = padding, 1 = unknown) and pads or truncates to
    ``sequence_length`` ids.
    """
    vectorizer = keras.layers.TextVectorization(
        max_tokens=max_tokens, output_sequence_length=sequence_length
    )
    vectorizer.adapt(np.asarray(texts, dtype=str))
    return vectorizer


@dataclass
class TextClassifier:
    """A vectorizer and the model that reads its ids: raw strings in, labels out."""

    vectorizer: keras.layers.TextVectorization
    model: keras.Model
    labels: tuple[str, ...] = SMS_LABELS
    result: FitResult | None = None

    def ids(self, texts) -> np.ndarray:
        """Token ids of ``texts``, as the model sees them."""
        return np.asarray(self.vectorizer(np.asarray(texts, dtype=str)))

    def probabilities(self, texts, batch_size: int = 1024) -> np.ndarray:
        """Class probabilities ``(N, 2)``; direct model calls, batch by batch."""
        ids = self.ids(texts)
        batches = [
            np.asarray(self.model(ids[i : i + batch_size], training=False))
            for i in range(0, len(ids), batch_size)
        ]
        return np.concatenate(batches) if batches else np.zeros((0, len(self.labels)))


def train_text_cnn(
    train_messages: Messages,
    epochs: int = 5,
    batch_size: int = 32,
    max_tokens: int = 10_000,
    sequence_length: int = 64,
    learning_rate: float = 1e-3,
    seed: int = 0,
    device: str = "auto",
    verbose: int | str = 0,
) -> TextClassifier:
    """Adapt a vectorizer and train :func:`cnnlearn.models.kim_text_cnn`.

    Only ``train_messages`` are seen: the vocabulary too is learned from them,
    so nothing of the test split leaks in. Used in chapter 9.
    """
    keras.utils.set_random_seed(seed)
    vectorizer = make_vectorizer(train_messages.texts, max_tokens, sequence_length)
    x = np.asarray(vectorizer(np.asarray(train_messages.texts, dtype=str)))
    model = models.kim_text_cnn(
        vectorizer.vocabulary_size(), sequence_length, num_classes=len(SMS_LABELS)
    )
    result = fit_ids(
        model,
        x,
        train_messages.labels,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        device=device,
        metrics=("accuracy",),
        verbose=verbose,
    )
    return TextClassifier(vectorizer, model, SMS_LABELS, result)


def predict_text(classifier: TextClassifier, texts) -> list[dict]:
    """Label raw strings: ``[{"text", "label", "p_spam"}, ...]``.

    A single string is accepted too. The text goes through the same vectorizer
    as the training set; words it never saw map to the unknown id 1.
    """
    if isinstance(texts, str):
        texts = [texts]
    probabilities = classifier.probabilities(list(texts))
    return [
        {
            "text": text,
            "label": classifier.labels[int(p.argmax())],
            "p_spam": float(p[-1]),
        }
        for text, p in zip(texts, probabilities)
    ]


def binary_metrics(y_true, y_pred, positive: int = 1) -> dict[str, float | int]:
    """Precision, recall, F1 and accuracy for the ``positive`` class (spam).

    Precision = TP / (TP + FP), recall = TP / (TP + FN), F1 their harmonic
    mean; 0 where a denominator is 0. Counts are included.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"shapes differ: {y_true.shape} and {y_pred.shape}")
    tp = int(np.sum((y_pred == positive) & (y_true == positive)))
    fp = int(np.sum((y_pred == positive) & (y_true != positive)))
    fn = int(np.sum((y_pred != positive) & (y_true == positive)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": float(np.mean(y_true == y_pred)),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": int(len(y_true) - tp - fp - fn),
    }
