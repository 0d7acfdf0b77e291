"""Runs on disk: train, evaluate and save a run directory (``cnnlearn train``).

:func:`save_run` writes a run's files (``model.keras``, ``metrics.json``,
``history.json``) atomically; :func:`run` and :func:`evaluate_saved` are the
``cnnlearn train`` and ``cnnlearn evaluate`` verbs as functions (chapter 4).
"""

from __future__ import annotations

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import platform
from pathlib import Path

import keras

from cnnlearn._io import atomic_path, write_json
from cnnlearn.compute import resolve_device
from cnnlearn.train.evaluation import Evaluation, evaluate
from cnnlearn.train.fitting import TrainResult, fit

__all__ = ["evaluate_saved", "run", "save_run", "versions"]


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
