"""Runs on disk: train, evaluate and save a run directory (``cnnlearn train``).

:func:`save_run` writes a run's files (``model.keras``, ``metrics.json``,
``history.json``) atomically; :func:`run_training` and :func:`evaluate_saved` are the
``cnnlearn train`` and ``cnnlearn evaluate`` verbs as functions (chapter 4).
"""

from __future__ import annotations

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import keras

from cnnlearn import data, models
from cnnlearn._io import atomic_path, check_output_dir, write_json
from cnnlearn.compute import resolve_device
from cnnlearn.config import RunConfig, load_data
from cnnlearn.train.evaluation import Evaluation, evaluate
from cnnlearn.train.fitting import TrainResult, fit

__all__ = ["evaluate_saved", "run_training", "save_run", "versions"]


def versions() -> dict[str, str]:
    """Versions of the software a run used, for its ``metrics.json``."""
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
    config: RunConfig | None = None,
    **info,
) -> dict:
    """Write ``model.keras``, ``metrics.json`` and ``history.json`` atomically.

    ``metrics.json`` holds test_accuracy, test_loss, epochs, batch_size, params,
    train_seconds and seconds_per_epoch, the data sizes, the device, the
    software versions, the per-class report and the confusion matrix, plus any
    keyword arguments given here (model name, dataset, seed, ...). A run's
    ``config`` adds its model, dataset, data_fraction and seed, and all of it
    under ``"config"``. Returns the metrics.
    """
    if config is not None:
        info = {
            "model": config.model,
            "dataset": config.dataset,
            "data_fraction": config.data_fraction,
            "seed": config.seed,
            "config": config.to_dict(),
            **info,
        }
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


def run_training(
    config: RunConfig,
    *,
    output_dir: str | Path,
    checkpoint: bool = False,
    tensorboard: bool = False,
    early_stopping_patience: int | None = None,
    verbose: int | str = 1,
) -> dict:
    """Load data, train a registered model, evaluate it on the test set, save all.

    This is ``cnnlearn train`` as a function (chapter 4).

    Parameters
    ----------
    config
        Which model on which data (:func:`cnnlearn.config.load_data`), the seed,
        the validation split, the device and the training-plan overrides
        (``config.plan``, see :func:`fit`). ``epochs``, ``batch_size`` and the
        learning rate default to the model's :class:`~cnnlearn.models.ModelSpec`.
    output_dir
        Gets ``model.keras``, ``metrics.json`` and ``history.json``
        (:func:`save_run`), and the checkpoints and logs asked for.
    checkpoint, tensorboard, early_stopping_patience, verbose
        As in :func:`fit`.

    Returns
    -------
    dict
        The ``metrics.json`` content, with the run's ``config`` (its epochs and
        batch size resolved).
    """
    config = config.resolved()  # an unknown model fails here,
    check_output_dir(output_dir)
    resolve_device(config.device)  # a missing device here: before loading data
    spec = models.get_spec(config.model)
    run = load_data(config)
    result = fit(
        models.get_model(config.model, seed=config.seed),
        run.x_train,
        run.y_train,
        epochs=config.epochs,
        batch_size=config.batch_size,
        validation_split=config.validation_split,
        learning_rate=spec.learning_rate,
        lr_schedule=spec.lr_schedule,
        seed=config.seed,
        device=config.device,
        output_dir=output_dir,
        checkpoint=checkpoint,
        tensorboard=tensorboard,
        early_stopping_patience=early_stopping_patience,
        verbose=verbose,
        plan=config.plan,
    )
    evaluation = evaluate(result.model, run.x_test, run.y_test, run.class_names)
    return save_run(output_dir, result, evaluation, config)


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
