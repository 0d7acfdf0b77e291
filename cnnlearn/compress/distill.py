"""Knowledge distillation (chapter 6).

A small *student* learns from the hard labels and from a trained *teacher*'s
softened outputs (Hinton, Vinyals & Dean, 2015)::

    L = alpha * CE(y, p_s) + (1 - alpha) * T² * KL(softmax(z_t/T) || softmax(z_s/T))

``z`` are logits; a temperature ``T > 1`` flattens the teacher's distribution so
that the student also sees which wrong digits the teacher finds plausible. The
``T²`` keeps the soft term's gradients on the scale of the hard term's.
:class:`Distiller` trains with that loss; :func:`student_cnn` builds the small
student this book uses (about 1/36 of the strong CNN's parameters).
"""

from __future__ import annotations

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import keras
import numpy as np
from keras import layers, ops

__all__ = ["Distiller", "distillation_loss", "soft_targets", "student_cnn"]

_TINY = 1e-30  # floor before log: float32 softmax outputs can underflow to 0


def _logits(values, from_logits: bool):
    """Logits from logits or from probabilities (``log p`` differs from the logits
    by a per-row constant, which the softmax ignores)."""
    if from_logits:
        return values
    return ops.log(ops.maximum(values, _TINY))


def distillation_loss(
    y_true,
    student_output,
    teacher_output,
    temperature: float = 4.0,
    alpha: float = 0.1,
    from_logits: bool = False,
):
    """The distillation loss above, averaged over the batch.

    Parameters
    ----------
    y_true
        Integer class labels, shape ``(N,)`` or ``(N, 1)``.
    student_output, teacher_output
        Probabilities (the book's models end in a softmax) or logits when
        ``from_logits``.
    temperature
        ``T``; 1 means no softening.
    alpha
        Weight of the hard-label cross-entropy; ``1 - alpha`` weighs the
        teacher's soft targets.
    """
    if temperature <= 0 or not 0.0 <= alpha <= 1.0:
        raise ValueError(
            f"need temperature > 0 and alpha in [0, 1], got {temperature}, {alpha}"
        )
    z_s = _logits(ops.convert_to_tensor(student_output, "float32"), from_logits)
    z_t = _logits(ops.convert_to_tensor(teacher_output, "float32"), from_logits)
    labels = ops.reshape(ops.cast(ops.convert_to_tensor(y_true), "int32"), (-1,))
    hard = keras.losses.sparse_categorical_crossentropy(labels, z_s, from_logits=True)
    log_p_t = ops.log_softmax(z_t / temperature, axis=-1)
    log_p_s = ops.log_softmax(z_s / temperature, axis=-1)
    kl = ops.sum(ops.exp(log_p_t) * (log_p_t - log_p_s), axis=-1)
    return ops.mean(alpha * hard + (1.0 - alpha) * temperature**2 * kl)


class Distiller(keras.Model):
    """Train ``student`` on ``teacher``'s softened outputs plus the hard labels.

    Compile and fit it like any model (``cnnlearn.train.fit`` works: the loss it
    compiles with is replaced by :func:`distillation_loss`); the accuracy
    metric and predictions are the student's. The teacher is frozen and runs
    in inference mode. Afterwards, use ``distiller.student`` on its own.

    Parameters
    ----------
    student, teacher
        Keras models with the same output shape. ``teacher=None`` trains on
        the teacher's outputs computed once beforehand: fit on
        ``y = soft_targets(teacher, x, labels)`` (offline distillation, the
        same loss at the cost of one teacher pass instead of one per epoch;
        valid when the inputs are not augmented).
    temperature, alpha, from_logits
        As in :func:`distillation_loss`.

    Used in chapter 6.
    """

    def __init__(
        self,
        student: keras.Model,
        teacher: keras.Model,
        temperature: float = 4.0,
        alpha: float = 0.1,
        from_logits: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if teacher is not None and (
            tuple(student.output_shape) != tuple(teacher.output_shape)
        ):
            raise ValueError(
                f"student and teacher outputs differ: {student.output_shape} vs "
                f"{teacher.output_shape}"
            )
        distillation_loss(
            np.zeros(1), np.ones((1, 2)) / 2, np.ones((1, 2)) / 2, temperature, alpha
        )  # fmt: skip  (validates the knobs)
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.from_logits = from_logits
        if student.built and (teacher is None or teacher.built):
            self.built = True

    def call(self, x, training=False):
        return self.student(x, training=training)

    def _split(self, y):
        if self.teacher is not None:
            return y, None
        y = ops.convert_to_tensor(y, "float32")  # soft_targets(): [label, outputs]
        return ops.cast(y[:, 0], "int32"), y[:, 1:]

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        labels, teacher_pred = self._split(y)
        if teacher_pred is None:
            teacher_pred = self.teacher(x, training=False)
        return distillation_loss(
            labels, y_pred, teacher_pred, self.temperature, self.alpha, self.from_logits
        )

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        labels, _ = self._split(y)
        return super().compute_metrics(x, labels, y_pred, sample_weight)


def soft_targets(
    teacher: keras.Model, x: np.ndarray, labels: np.ndarray, batch_size: int = 1024
) -> np.ndarray:
    """``[label, teacher outputs...]`` per image, for ``Distiller(student, None)``.

    The labels travel in column 0 (as floats) so that the targets stay one
    array, which ``cnnlearn.train.fit`` can split and shuffle like labels.
    """
    outputs = np.asarray(teacher.predict(x, batch_size=batch_size, verbose=0))
    labels = np.asarray(labels).reshape(-1, 1).astype(np.float32)
    if len(labels) != len(outputs):
        raise ValueError(f"{len(labels)} labels for {len(outputs)} images")
    return np.concatenate([labels, outputs.astype(np.float32)], axis=1)


def student_cnn(
    input_shape: tuple[int, int, int] = (28, 28, 1),
    num_classes: int = 10,
    filters: tuple[int, int] = (16, 32),
) -> keras.Sequential:
    """A small two-block CNN for distillation: 12,810 parameters by default.

    Conv2D(16, 3×3, ReLU) → MaxPool → Conv2D(32, 3×3, ReLU) → MaxPool → Flatten
    → Dense(softmax). With the defaults it is 1/36 of the strong CNN (459k) and
    1/4 of the seed CNN.
    """
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv2D(filters[0], 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(filters[1], 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="student_cnn",
    )
