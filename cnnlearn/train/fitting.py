"""Training: :func:`fit` and what it returns (chapter 4; the plan, chapter 5).

Plain Keras 3: :func:`fit` compiles with Adam and sparse categorical cross-entropy,
holds out a seeded validation split, wires the usual callbacks (checkpoints,
TensorBoard, early stopping) and trains the way :func:`cnnlearn.compute.plan`
picks for the hardware and the Keras backend (TensorFlow, JAX or PyTorch:
chapter 4's parity table).
"""

from __future__ import annotations

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from cnnlearn import compute, pipeline
from cnnlearn.compute import Plan

__all__ = [
    "LR_SCHEDULES",
    "PLAIN",
    "EpochTimer",
    "EvaluateEachEpoch",
    "OneCycle",
    "TrainResult",
    "fit",
    "smoothed_sparse_crossentropy",
    "split_validation",
]

# The learning-rate schedules :func:`fit` knows (its ``lr_schedule``).
LR_SCHEDULES = ("constant", "cosine", "one_cycle")


# The plan overrides that give plain ``model.fit(numpy)`` in float32: the
# baseline that benchmarks/train_speed.py compares the default plan with.
PLAIN = {
    "batch_scale": 1,
    "pipeline": "numpy",
    "steps_per_execution": 1,
    "precision": "float32",
    "jit_compile": False,
}


class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """One-cycle learning rate (Smith and Topin, 2019), for short runs (chapter 5).

    Rises linearly from ``peak / div_factor`` to ``peak`` over the first
    ``warmup`` fraction of ``total_steps``, then falls along a half cosine to
    ``peak / final_div_factor`` at the last step (the shape of PyTorch's
    ``OneCycleLR`` with its cosine annealing, for the learning rate only).
    """

    def __init__(
        self,
        peak: float,
        total_steps: int,
        warmup: float = 0.25,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
    ):
        if total_steps < 1 or not 0.0 < warmup < 1.0:
            raise ValueError(
                f"one-cycle needs total_steps >= 1 and 0 < warmup < 1, got "
                f"{total_steps} and {warmup}"
            )
        self.peak, self.total_steps, self.warmup = peak, total_steps, warmup
        self.div_factor, self.final_div_factor = div_factor, final_div_factor

    def __call__(self, step):
        ops = keras.ops
        step = ops.cast(step, "float32")
        start, end = self.peak / self.div_factor, self.peak / self.final_div_factor
        rise = max(1.0, self.warmup * self.total_steps)
        fall = max(1.0, self.total_steps - 1 - rise)
        up = start + (self.peak - start) * ops.minimum(step / rise, 1.0)
        t = ops.clip((step - rise) / fall, 0.0, 1.0)
        down = end + (self.peak - end) * 0.5 * (1.0 + ops.cos(np.pi * t))
        return ops.where(step < rise, up, down)

    def get_config(self) -> dict:
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup": self.warmup,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
        }


def smoothed_sparse_crossentropy(label_smoothing: float):
    """Cross-entropy on integer labels with label smoothing (chapter 5).

    Keras' ``SparseCategoricalCrossentropy`` has no ``label_smoothing``; this
    one-hot encodes the labels and calls ``categorical_crossentropy`` with it:
    the target puts ``1 - label_smoothing`` on the right class plus an equal
    share of ``label_smoothing`` on every class.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")

    def loss(y_true, y_pred):
        labels = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        target = keras.ops.one_hot(labels, keras.ops.shape(y_pred)[-1])
        return keras.losses.categorical_crossentropy(
            target, y_pred, label_smoothing=label_smoothing
        )

    loss.__name__ = "smoothed_sparse_crossentropy"
    return loss


class EpochTimer(keras.callbacks.Callback):
    """Adds each epoch's wall-clock seconds to the logs as ``"seconds"``.

    The value lands in ``History.history["seconds"]``, beside loss and accuracy.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["seconds"] = time.perf_counter() - self._start


class EvaluateEachEpoch(keras.callbacks.Callback):
    """Evaluates on held-out ``(x, y)`` after each epoch, outside its time.

    Pass it in :func:`fit`'s ``callbacks``: ``fit`` puts :class:`EpochTimer`
    first, so the timer has stopped before this runs and the evaluation is
    not in ``"seconds"`` (chapter 5's speedrun; ``values`` holds the
    accuracies). With ``stop_at``, training stops after the first epoch whose
    accuracy reaches it.
    """

    def __init__(self, x, y, stop_at: float | None = None, batch_size: int = 1024):
        super().__init__()
        self.x, self.y, self.stop_at, self.batch_size = x, y, stop_at, batch_size
        self.values: list[float] = []

    def on_epoch_end(self, epoch, logs=None):
        _, accuracy = self.model.evaluate(
            self.x, self.y, batch_size=self.batch_size, verbose=0
        )
        self.values.append(float(accuracy))
        if self.stop_at is not None and accuracy >= self.stop_at:
            self.model.stop_training = True


@dataclass
class TrainResult:
    """What :func:`fit` returns: the trained model and its history."""

    model: keras.Model
    history: dict[str, list[float]]
    train_seconds: float
    epochs: int
    batch_size: int
    n_train: int
    n_val: int
    device: str
    plan: Plan | None = None

    @property
    def seconds_per_epoch(self) -> float:
        """Median epoch time, skipping the first epoch (graph tracing) if possible."""
        seconds = self.history["seconds"]
        return float(np.median(seconds[1:] if len(seconds) > 1 else seconds))

    @property
    def ms_per_step(self) -> float:
        """Milliseconds per training step (one batch), from the median epoch."""
        steps = -(-self.n_train // self.batch_size)
        return 1000 * self.seconds_per_epoch / steps


def split_validation(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None]:
    """Hold out a seeded random ``fraction`` of ``(x, y)`` for validation."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return (x, y), None
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = max(1, int(round(len(x) * fraction)))
    val, tr = np.sort(order[:n_val]), np.sort(order[n_val:])
    return (x[tr], y[tr]), (x[val], y[val])


def fit(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 3,
    batch_size: int = 32,
    validation_split: float = 0.1,
    learning_rate: float = 1e-3,
    lr_schedule: str = "constant",
    label_smoothing: float = 0.0,
    seed: int = 0,
    device: str = "auto",
    output_dir: str | Path | None = None,
    checkpoint: bool = False,
    tensorboard: bool = False,
    early_stopping_patience: int | None = None,
    callbacks: list[keras.callbacks.Callback] | None = None,
    verbose: int | str = "auto",
    plan: Plan | dict | None = None,
) -> TrainResult:
    """Compile and train ``model`` on ``(x, y)``, reproducibly.

    Parameters
    ----------
    model
        An uncompiled Keras model, e.g. from :func:`cnnlearn.models.get_model`.
    x, y
        Float images (see :func:`cnnlearn.data.preprocess_images`) and int labels.
    epochs, batch_size
        As in ``Model.fit``.
    validation_split
        Fraction of ``(x, y)`` held out at random (seeded) for validation.
    learning_rate, lr_schedule
        Adam's learning rate for ``batch_size`` (the plan scales it when it
        grows the batch); ``"cosine"`` decays it to 1 % over all steps;
        ``"one_cycle"`` warms up to it and anneals it (:class:`OneCycle`).
    label_smoothing
        Train on smoothed targets (:func:`smoothed_sparse_crossentropy`);
        ``0.0`` is the plain sparse cross-entropy. Whatever it is, the returned
        model is compiled with the plain loss, so evaluation is comparable.
    seed
        Drives ``keras.utils.set_random_seed``: shuffling, dropout, augmentation
        and the validation split. The initial weights were drawn when the model
        was built: build it with ``models.get_model(name, seed=seed)``.
    device
        One of :data:`cnnlearn.config.DEVICES` (``"auto"``, ``"cpu"``,
        ``"gpu"``, ``"tpu"``; see :func:`cnnlearn.compute.resolve_device`). On
        TensorFlow a TPU trains a copy of ``model`` built in TPUStrategy's
        scope; the result holds that copy.
    output_dir
        Where checkpoints (``checkpoints/best.keras``) and TensorBoard logs
        (``logs/``) go when ``checkpoint`` or ``tensorboard`` is set.
    early_stopping_patience
        Stop after this many epochs without a better validation loss and keep
        the best weights. ``None`` trains for all ``epochs``.
    callbacks
        More Keras callbacks.
    verbose
        As in ``Model.fit``.
    plan
        How to train on this hardware: input pipeline, batch size,
        ``steps_per_execution``, precision, XLA (chapter 5). ``None`` lets
        :func:`cnnlearn.compute.plan` choose; a dict overrides some of its
        choices (``{"precision": "float32"}``, ``{"batch_scale": 1}`` to keep
        ``batch_size``); a :class:`Plan` is used as it is, its device and batch
        size included. Whatever the precision used for training, the returned
        model computes in float32 (the variables always are).

    Returns
    -------
    TrainResult
        The model, its per-epoch history (with ``"seconds"`` per epoch), the
        plan, and the sizes and timings of the run.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1: {epochs}, {batch_size}")
    if (checkpoint or tensorboard) and output_dir is None:
        raise ValueError("checkpoint and tensorboard need an output_dir")
    keras.utils.set_random_seed(seed)
    (x_tr, y_tr), val = split_validation(x, y, validation_split, seed)
    plan = _resolve_plan(plan, model, (x_tr, y_tr), device, batch_size)
    steps = -(-len(x_tr) // plan.batch_size)
    distribution = _distribution(plan)
    model = _place_model(model, plan.device, distribution)
    with compute.device_scope(plan.device), _scope(distribution):
        optimizer = _make_optimizer(
            learning_rate * plan.learning_rate_scale, lr_schedule, epochs * steps, plan
        )
        _compile_for_plan(model, optimizer, plan, label_smoothing)
    monitor = "val_loss" if val is not None else "loss"
    cbs = [
        EpochTimer(),
        *(callbacks or []),
        *_callbacks(
            output_dir, monitor, checkpoint, tensorboard, early_stopping_patience
        ),
    ]
    feed, val = _feed(x_tr, y_tr, val, plan, seed)
    cbs = [*feed.pop("callbacks", []), *cbs]  # the batch order's, first
    if verbose:  # on stdout, like Keras' own progress: the chapters show it
        print(f"Training plan:\n{plan}")
    start = time.perf_counter()
    with _scope(distribution):
        history = _fit_on_device(model, feed, val, plan, epochs, cbs, verbose)
    return TrainResult(
        model=model,
        history=history,
        train_seconds=time.perf_counter() - start,
        epochs=len(history["loss"]),
        batch_size=plan.batch_size,
        n_train=len(x_tr),
        n_val=len(x) - len(x_tr),
        device=plan.device,
        plan=plan,
    )


# --- the seams of fit: optimizer, compile, callbacks, input ----------------------


def _resolve_plan(
    plan: Plan | dict | None,
    model: keras.Model,
    data: tuple[np.ndarray, np.ndarray],
    device: str,
    batch_size: int,
) -> Plan:
    """A :class:`Plan` as it is; else :func:`cnnlearn.compute.plan` for ``data``
    with the overrides in ``plan``."""
    if isinstance(plan, Plan):
        return plan
    return compute.plan(model, data, device, batch_size=batch_size, **(plan or {}))


def _make_optimizer(
    learning_rate: float, lr_schedule: str, total_steps: int, plan: Plan
) -> keras.optimizers.Optimizer:
    """Adam at ``learning_rate``: constant, cosine-decayed to 1 % over
    ``total_steps``, or one-cycle; loss-scaled when ``plan`` trains in float16."""
    if lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(
            learning_rate, decay_steps=total_steps, alpha=0.01
        )
    elif lr_schedule == "one_cycle":
        lr = OneCycle(learning_rate, total_steps)
    elif lr_schedule == "constant":
        lr = learning_rate
    else:
        raise ValueError(
            f"unknown lr_schedule {lr_schedule!r}: expected one of {LR_SCHEDULES}"
        )
    optimizer = keras.optimizers.Adam(lr)
    if plan.precision == "mixed_float16":  # keep small gradients from underflowing
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def _compile_for_plan(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    plan: Plan,
    label_smoothing: float = 0.0,
) -> None:
    """Set the plan's precision on ``model`` and compile it for classification
    (label-smoothed if asked) with the plan's ``steps_per_execution`` and XLA
    choice."""
    compute.apply_precision(model, plan.precision)
    loss = (
        smoothed_sparse_crossentropy(label_smoothing)
        if label_smoothing
        else "sparse_categorical_crossentropy"
    )
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=["accuracy"],
        steps_per_execution=plan.steps_per_execution,
        jit_compile=plan.jit_compile,
    )


def _callbacks(
    output_dir: str | Path | None,
    monitor: str,
    checkpoint: bool = False,
    tensorboard: bool = False,
    early_stopping_patience: int | None = None,
) -> list[keras.callbacks.Callback]:
    """The usual Keras callbacks :func:`fit` can switch on: the best model by
    ``monitor`` to ``checkpoints/best.keras``, TensorBoard logs to ``logs/``
    (both under ``output_dir``), and early stopping with the best weights."""
    cbs = []
    if checkpoint:
        path = Path(output_dir) / "checkpoints" / "best.keras"
        path.parent.mkdir(parents=True, exist_ok=True)
        cbs.append(
            keras.callbacks.ModelCheckpoint(path, monitor=monitor, save_best_only=True)
        )
    if tensorboard:
        cbs.append(keras.callbacks.TensorBoard(log_dir=str(Path(output_dir) / "logs")))
    if early_stopping_patience is not None:
        cbs.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor,
                patience=early_stopping_patience,
                restore_best_weights=True,
            )
        )
    return cbs


def _feed(
    x: np.ndarray,
    y: np.ndarray,
    val: tuple[np.ndarray, np.ndarray] | None,
    plan: Plan,
    seed: int = 0,
) -> tuple[dict, object]:
    """The training input as ``Model.fit`` keyword arguments, and the validation
    data, in the plan's pipeline: seeded shuffled ``tf.data`` datasets,
    :class:`~cnnlearn.pipeline.SeededBatches` (any backend), or the arrays with
    the plan's batch size."""
    if plan.pipeline == "batches":
        split = {"multiple_of": plan.devices}  # data parallel: even batches
        batches = pipeline.SeededBatches(x, y, plan.batch_size, seed, **split)
        order = keras.callbacks.LambdaCallback(
            on_epoch_begin=lambda epoch, logs=None: batches.set_epoch(epoch)
        )
        feed = {"x": batches, "shuffle": False, "callbacks": [order]}
        if val is not None:
            val = pipeline.SeededBatches(*val, plan.eval_batch_size, **split)
        return feed, val
    if plan.pipeline != "tf.data":
        return {"x": x, "y": y, "batch_size": plan.batch_size}, val
    feed = {
        "x": pipeline.make_dataset(x, y, plan.batch_size, training=True, seed=seed),
        "shuffle": False,  # the dataset shuffles, seeded
    }
    if val is not None:
        val = pipeline.make_dataset(*val, plan.eval_batch_size)
    return feed, val


def _distribution(plan: Plan):
    """``keras.distribution.DataParallel`` over the plan's devices (JAX), or None."""
    if plan.devices == 1:
        return None
    if plan.backend != "jax":
        raise ValueError(
            f"devices={plan.devices}: keras.distribution runs on JAX only, not on "
            f"{plan.backend} (TensorFlow: cnnlearn.distribute, chapter 5)"
        )
    kind = plan.device[1:4].lower()
    found = keras.distribution.list_devices(kind)
    if len(found) < plan.devices:
        raise ValueError(f"devices={plan.devices}, but JAX sees {len(found)} {kind}")
    return keras.distribution.DataParallel(devices=found[: plan.devices])


def _scope(distribution):
    return distribution.scope() if distribution else contextlib.nullcontext()


def _place_model(model: keras.Model, device: str, distribution=None) -> keras.Model:
    """The model, or its copy with the same weights built where training needs
    its variables: in TPUStrategy's scope on TensorFlow with a TPU (a TPU holds
    only variables created there), replicated over a JAX distribution's devices."""
    on_tf_tpu = device.startswith("/TPU") and keras.config.backend() == "tensorflow"
    if not on_tf_tpu and distribution is None:
        return model
    with compute.device_scope(device), _scope(distribution):
        placed = keras.models.clone_model(model)
        placed.set_weights(model.get_weights())
    return placed


def _fit_on_device(
    model: keras.Model,
    feed: dict,
    val,
    plan: Plan,
    epochs: int,
    callbacks: list[keras.callbacks.Callback],
    verbose: int | str,
) -> dict[str, list[float]]:
    """``model.fit`` on the plan's device; the per-epoch history as floats.

    Whatever happens, the model is left ready for inference afterwards.
    """
    try:
        with compute.device_scope(plan.device):
            history = model.fit(
                **feed,
                epochs=epochs,
                validation_data=val,
                validation_batch_size=plan.eval_batch_size,
                callbacks=callbacks,
                verbose=verbose,
            )
    finally:
        _ready_for_inference(model)
    return {k: [float(v) for v in vs] for k, vs in history.history.items()}


def _ready_for_inference(model: keras.Model) -> None:
    """After training: float32 compute, and one step per call for prediction.

    The variables are float32 under every policy, so switching back loses
    nothing. The model keeps its trained optimizer for further training.
    """
    compute.apply_precision(model, "float32")
    model.compile(
        optimizer=model.optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
