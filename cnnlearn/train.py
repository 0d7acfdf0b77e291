"""Training and evaluation (chapter 4).

Plain Keras 3: :func:`fit` compiles with Adam and sparse categorical cross-entropy,
holds out a seeded validation split, and wires the usual callbacks (checkpoints,
TensorBoard, early stopping); :func:`evaluate` adds what ``model.evaluate`` lacks,
a per-class report and the confusion matrix; :func:`save_run` writes the run's
files (``model.keras``, ``metrics.json``, ``history.json``) atomically.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import keras
import numpy as np

from cnnlearn import compute
from cnnlearn._io import atomic_path, write_json
from cnnlearn.compute import Plan, plan, resolve_device

__all__ = [
    "PLAIN",
    "EpochTimer",
    "Evaluation",
    "Plan",
    "TrainResult",
    "distributed_fit",
    "evaluate",
    "evaluate_saved",
    "fit",
    "plan",
    "resolve_device",
    "run",
    "save_run",
    "split_validation",
    "versions",
]


# The plan overrides that give plain ``model.fit(numpy)`` in float32: the
# baseline that benchmarks/train_speed.py compares the default plan with.
PLAIN = {
    "batch_scale": 1,
    "pipeline": "numpy",
    "steps_per_execution": 1,
    "precision": "float32",
    "jit_compile": False,
}


class EpochTimer(keras.callbacks.Callback):
    """Adds each epoch's wall-clock seconds to the logs as ``"seconds"``.

    The value lands in ``History.history["seconds"]``, beside loss and accuracy.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["seconds"] = time.perf_counter() - self._start


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
        grows the batch); ``"cosine"`` decays it to 1 % over all steps.
    seed
        Drives ``keras.utils.set_random_seed``: shuffling, dropout, augmentation
        and the validation split. The initial weights were drawn when the model
        was built: build it with ``models.get_model(name, seed=seed)``.
    device
        ``"auto"``, ``"cpu"`` or ``"gpu"`` (see :func:`resolve_device`).
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
        :func:`plan` choose; a dict overrides some of its choices
        (``{"precision": "float32"}``, ``{"batch_scale": 1}`` to keep
        ``batch_size``); a :class:`Plan` is used as it is, its device and batch
        size included.
        Whatever the precision used for training, the returned model computes
        in float32 (the variables always are).

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
    if not isinstance(plan, Plan):
        plan = compute.plan(
            model, (x_tr, y_tr), device, batch_size=batch_size, **(plan or {})
        )
    batch_size = plan.batch_size
    learning_rate *= plan.learning_rate_scale
    steps = -(-len(x_tr) // batch_size)
    if lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(
            learning_rate, decay_steps=epochs * steps, alpha=0.01
        )
    elif lr_schedule == "constant":
        lr = learning_rate
    else:
        raise ValueError(f"unknown lr_schedule {lr_schedule!r}: constant or cosine")
    optimizer = keras.optimizers.Adam(lr)
    if plan.precision == "mixed_float16":  # keep small gradients from underflowing
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    compute.set_precision(model, plan.precision)
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=plan.steps_per_execution,
        jit_compile=plan.jit_compile,
    )
    cbs = [EpochTimer(), *(callbacks or [])]
    monitor = "val_loss" if val is not None else "loss"
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
    if plan.pipeline == "tf.data":
        from cnnlearn import pipeline

        feed = {
            "x": pipeline.make_dataset(
                x_tr, y_tr, batch_size, training=True, seed=seed
            ),
            "shuffle": False,  # the dataset shuffles, seeded
        }
        if val is not None:
            val = pipeline.make_dataset(*val, plan.eval_batch_size)
    else:
        feed = {"x": x_tr, "y": y_tr, "batch_size": batch_size}
    if verbose:
        print(f"Training plan:\n{plan}")
    start = time.perf_counter()
    try:
        with compute.device_scope(plan.device):
            history = model.fit(
                **feed,
                epochs=epochs,
                validation_data=val,
                validation_batch_size=plan.eval_batch_size,
                callbacks=cbs,
                verbose=verbose,
            )
    finally:
        _ready_for_inference(model)
    train_seconds = time.perf_counter() - start
    hist = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    return TrainResult(
        model=model,
        history=hist,
        train_seconds=train_seconds,
        epochs=len(hist["loss"]),
        batch_size=batch_size,
        n_train=len(x_tr),
        n_val=len(x) - len(x_tr),
        device=plan.device,
        plan=plan,
    )


def distributed_fit(model, dataset, strategy=None, epochs: int = 1, **kwargs):
    """Train under any ``tf.distribute`` strategy with a custom loop (chapter 5).

    Keras 3's ``Model.fit`` fails under ``MultiWorkerMirroredStrategy``
    (keras-team/keras#20585); this is :func:`cnnlearn.distribute.distributed_fit`,
    which builds in the strategy's scope, steps with ``strategy.run``, and
    checkpoints and resumes. See it for the arguments.
    """
    from cnnlearn.distribute import distributed_fit as fit_under_strategy

    return fit_under_strategy(model, dataset, strategy, epochs=epochs, **kwargs)


def _ready_for_inference(model: keras.Model) -> None:
    """After training: float32 compute, and one step per call for prediction.

    The variables are float32 under every policy, so switching back loses
    nothing. The model keeps its trained optimizer for further training.
    """
    compute.set_precision(model, "float32")
    model.compile(
        optimizer=model.optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


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


def versions() -> dict[str, str]:
    """Versions of the software a run used, for its ``metrics.json``."""
    from importlib.metadata import PackageNotFoundError, version

    found = {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.config.backend(),
    }
    for package in ("tensorflow", "jax", "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def save_run(
    output_dir: str | Path,
    result: TrainResult,
    evaluation: Evaluation,
    **info,
) -> dict:
    """Write ``model.keras``, ``metrics.json`` and ``history.json`` atomically.

    ``metrics.json`` holds test_accuracy, test_loss, epochs, batch_size, params,
    train_seconds and seconds_per_epoch, the data sizes, the device, the
    software versions, the per-class report and the confusion matrix, plus any
    keyword arguments given here (model name, dataset, seed, ...). Returns it.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "model.keras") as tmp:
        result.model.save(tmp)
    metrics = {
        **info,
        "test_accuracy": evaluation.accuracy,
        "test_loss": evaluation.loss,
        "epochs": result.epochs,
        "batch_size": result.batch_size,
        "params": int(result.model.count_params()),
        "train_seconds": result.train_seconds,
        "seconds_per_epoch": result.seconds_per_epoch,
        "ms_per_step": result.ms_per_step,
        "n_train": result.n_train,
        "n_val": result.n_val,
        "n_test": int(evaluation.confusion_matrix.sum()),
        "device": result.device,
        "plan": result.plan.to_dict() if result.plan else None,
        "versions": versions(),
        "per_class": evaluation.per_class,
        "confusion_matrix": evaluation.confusion_matrix.tolist(),
    }
    write_json(out / "metrics.json", metrics)
    write_json(out / "history.json", result.history)
    return metrics


def run(
    model: str = "seed",
    dataset: str = "mnist",
    *,
    output_dir: str | Path,
    epochs: int | None = None,
    batch_size: int | None = None,
    data_dir: str | Path | None = None,
    data_fraction: float = 1.0,
    seed: int = 0,
    **fit_kwargs,
) -> dict:
    """Load data, train a registered model, evaluate it on the test set, save all.

    This is ``cnnlearn train`` as a function. ``epochs``, ``batch_size`` and the
    learning rate default to the model's :class:`~cnnlearn.models.ModelSpec`.
    Returns the ``metrics.json`` content.
    """
    from cnnlearn import data, models

    spec = models.get_spec(model)
    resolve_device(fit_kwargs.get("device", "auto"))  # fail before loading data
    (x_train, y_train), (x_test, y_test) = data.load_dataset(dataset, data_dir)
    x_train, y_train = data.take_fraction(x_train, y_train, data_fraction, seed)
    fit_kwargs.setdefault("learning_rate", spec.learning_rate)
    fit_kwargs.setdefault("lr_schedule", spec.lr_schedule)
    result = fit(
        models.get_model(model, seed=seed),
        data.preprocess_images(x_train),
        y_train,
        epochs=epochs or spec.epochs,
        batch_size=batch_size or spec.batch_size,
        seed=seed,
        output_dir=output_dir,
        **fit_kwargs,
    )
    evaluation = evaluate(
        result.model, data.preprocess_images(x_test), y_test, data.CLASS_NAMES[dataset]
    )
    return save_run(
        output_dir,
        result,
        evaluation,
        model=model,
        dataset=dataset,
        data_fraction=data_fraction,
        seed=seed,
    )


def evaluate_saved(
    model_path: str | Path,
    dataset: str = "mnist",
    data_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
) -> dict:
    """Evaluate a saved ``.keras`` model on a test set; write ``evaluation.json``.

    The report goes to ``output_dir``, by default the model's own directory.
    This is ``cnnlearn evaluate`` as a function; returns the report.
    """
    from cnnlearn import data

    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"model file not found: {model_path}")
    loaded = keras.models.load_model(model_path)
    _, (x_test, y_test) = data.load_dataset(dataset, data_dir)
    evaluation = evaluate(
        loaded, data.preprocess_images(x_test), y_test, data.CLASS_NAMES[dataset]
    )
    report = {"model": str(model_path), "dataset": dataset, **evaluation.report()}
    out = Path(output_dir) if output_dir is not None else model_path.parent
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "evaluation.json", report)
    return report
