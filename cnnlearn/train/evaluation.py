"""Evaluation beyond ``model.evaluate``: per-class report and confusion matrix."""

from __future__ import annotations

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
from dataclasses import dataclass, field

import keras
import numpy as np

__all__ = ["Evaluation", "evaluate"]


@dataclass
class Evaluation:
    """What :func:`evaluate` returns. ``report()`` is its JSON-ready summary."""

    accuracy: float
    loss: float
    confusion_matrix: np.ndarray
    per_class: list[dict]
    y_pred: np.ndarray = field(repr=False)
    probabilities: np.ndarray = field(repr=False)

    def report(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "loss": self.loss,
            "per_class": self.per_class,
            "confusion_matrix": self.confusion_matrix.tolist(),
        }


def evaluate(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    class_names: list[str] | None = None,
    batch_size: int = 1024,
) -> Evaluation:
    """Accuracy, cross-entropy, per-class precision/recall/F1 and confusion matrix.

    ``confusion_matrix[i, j]`` counts images of true class ``i`` predicted as
    ``j``. The loss is the mean sparse categorical cross-entropy, with the
    probabilities clipped at 1e-7 as Keras does.
    """
    y = np.asarray(y).astype(np.int64)
    probs = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    k = probs.shape[-1]
    if y.min() < 0 or y.max() >= k:
        raise ValueError(f"labels must be in [0, {k}), found [{y.min()}, {y.max()}]")
    y_pred = probs.argmax(axis=-1)
    cm = np.bincount(y * k + y_pred, minlength=k * k).reshape(k, k)
    loss = -np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)))
    names = class_names or [str(i) for i in range(k)]
    per_class = []
    for i in range(k):
        tp, predicted, support = cm[i, i], cm[:, i].sum(), cm[i, :].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
        per_class.append(
            {
                "class": names[i],
                "precision": float(precision),
                "recall": float(recall),
                "f1": float(f1),
                "support": int(support),
            }
        )
    return Evaluation(
        accuracy=float(np.mean(y_pred == y)),
        loss=float(loss),
        confusion_matrix=cm,
        per_class=per_class,
        y_pred=y_pred,
        probabilities=probs,
    )
